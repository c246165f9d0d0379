//! SVG charts (filled in below).
