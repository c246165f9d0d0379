//! One small SVG writer for the charts of the xtask reports: a canvas with a white
//! background, then rectangles, lines and text placed in pixels. Coordinates are
//! written with one decimal, text is escaped; the charts decide the layout.

use std::fmt::Write as _;

/// An SVG document being written.
#[derive(Debug, Clone)]
pub struct Svg {
    out: String,
}

impl Svg {
    /// A `width` × `height` canvas in `font_size` sans-serif, on white.
    pub fn new(width: f64, height: f64, font_size: u32) -> Svg {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="{font_size}">"#
        );
        let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
        Svg { out }
    }

    /// A filled rectangle, with a tooltip when `title` is given.
    pub fn rect(
        &mut self,
        x: f64,
        y: f64,
        width: f64,
        height: f64,
        fill: &str,
        title: Option<&str>,
    ) {
        let _ = write!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{height:.1}" fill="{fill}""#
        );
        match title {
            Some(title) => {
                let _ = writeln!(self.out, "><title>{}</title></rect>", escape(title));
            }
            None => self.out.push_str("/>\n"),
        }
    }

    /// A one-pixel line.
    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}"/>"#
        );
    }

    /// Text at (`x`, `y`) (its baseline), with any further attributes written as given
    /// (`text-anchor="end"`, `fill="#555"`, `font-weight="bold"`, ...).
    pub fn text(&mut self, x: f64, y: f64, attributes: &str, text: &str) {
        let space = if attributes.is_empty() { "" } else { " " };
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}"{space}{attributes}>{}</text>"#,
            escape(text)
        );
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// `text` with `&`, `<` and `>` escaped for XML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_small_chart() {
        let mut svg = Svg::new(100.0, 50.0, 11);
        svg.rect(1.0, 2.0, 3.0, 4.0, "#123456", Some("a < b"));
        svg.rect(0.0, 0.0, 1.0, 1.0, "red", None);
        svg.line((0.0, 1.0), (2.0, 3.0), "#ddd");
        svg.text(5.0, 6.0, r#"text-anchor="end""#, "R&D");
        svg.text(5.0, 7.0, "", "plain");
        let out = svg.finish();
        assert!(
            out.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="100" height="50""#)
        );
        assert!(out.ends_with("</svg>\n"));
        assert!(out.contains(
            r##"<rect x="1.0" y="2.0" width="3.0" height="4.0" fill="#123456"><title>a &lt; b</title></rect>"##
        ));
        assert!(out.contains(r#"<rect x="0.0" y="0.0" width="1.0" height="1.0" fill="red"/>"#));
        assert!(out.contains(r##"<line x1="0.0" y1="1.0" x2="2.0" y2="3.0" stroke="#ddd"/>"##));
        assert!(out.contains(r#"<text x="5.0" y="6.0" text-anchor="end">R&amp;D</text>"#));
        assert!(out.contains(r#"<text x="5.0" y="7.0">plain</text>"#));
        assert_eq!(out.matches("<rect x=").count(), 2);
    }
}
