//! The results: a Markdown table, JSON, and an SVG chart.

use std::fmt::Write as _;

use serde_json::json;
use wire_kit::svg::Svg;

use super::{Headers, Measurement, Options};

/// A whole comparison.
pub struct Run {
    pub options: Options,
    pub rate: f64,
    pub symbols: usize,
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub results: Vec<Measurement>,
}

/// One row of the table.
pub struct Row {
    pub label: &'static str,
    pub name: &'static str,
    pub delivered: u64,
    pub published: u64,
    /// Bytes per delivered update after setup, server to client and back.
    pub down: f64,
    pub up: f64,
    /// Setup bytes per connection (both directions).
    pub setup: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// IP bytes per delivered update that crossed the emulated link, everything
    /// included (TCP handshakes and ACKs, retransmissions, setup), if there was one.
    pub wire_down: Option<f64>,
    pub wire_up: Option<f64>,
    /// Retransmitted or lost share: packets the link dropped over packets offered.
    pub wire_loss_pct: Option<f64>,
    pub bunched: u64,
    pub cpu_us: f64,
    pub cpu_pct: f64,
    pub requests_per_s: f64,
    pub missed: u64,
    pub duplicated: u64,
    pub errors: usize,
    pub extensions: Option<String>,
}

impl Measurement {
    pub fn row(&self) -> Row {
        let delivered = self.delivered();
        let per = |bytes: u64| bytes as f64 / delivered.max(1) as f64;
        let sum = |f: fn(&super::Tally) -> u64| self.tallies.iter().map(f).sum::<u64>();
        let mut latencies: Vec<u32> = self
            .tallies
            .iter()
            .flat_map(|t| t.latencies_us.iter().copied())
            .collect();
        latencies.sort_unstable();
        let percentile = |p: f64| match latencies.len() {
            0 => f64::NAN,
            n => f64::from(latencies[((n - 1) as f64 * p).round() as usize]) / 1000.0,
        };
        let wall = self.wall.as_secs_f64();
        Row {
            label: self.transport.label(),
            name: self.transport.name(),
            delivered,
            published: self.published,
            down: per(sum(|t| t.down - t.setup_down)),
            up: per(sum(|t| t.up - t.setup_up)),
            setup: (sum(|t| t.setup_up + t.setup_down) as f64)
                / (sum(|t| t.connections).max(1) as f64),
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
            max_ms: percentile(1.0),
            wire_down: self.wire.map(|(_, down)| per(down.bytes_out)),
            wire_up: self.wire.map(|(up, _)| per(up.bytes_out)),
            wire_loss_pct: self.wire.map(|(up, down)| {
                let dropped = up.lost + up.queue_drops + down.lost + down.queue_drops;
                dropped as f64 * 100.0 / (up.packets_in + down.packets_in).max(1) as f64
            }),
            bunched: self.bunched(),
            cpu_us: self.cpu_ms * 1000.0 / delivered.max(1) as f64,
            cpu_pct: self.cpu_ms / 10.0 / wall,
            requests_per_s: sum(|t| t.requests) as f64 / wall,
            missed: self.missed(),
            duplicated: self.duplicated(),
            errors: self.errors().len(),
            extensions: self.tallies.iter().find_map(|t| t.extensions.clone()),
        }
    }
}

/// The machine: CPU model and how many CPUs.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

impl Run {
    /// The least time an update can take over the link: the one-way delay less the
    /// jitter (zero without a link).
    pub fn one_way_floor(&self) -> std::time::Duration {
        self.options
            .profile
            .as_ref()
            .map_or(Default::default(), |p| {
                let shape = p.shape();
                shape.delay.saturating_sub(shape.jitter)
            })
    }

    fn link(&self) -> String {
        self.options
            .profile
            .as_ref()
            .map_or_else(String::new, |p| format!(" {}", p.args()))
    }

    fn command(&self) -> String {
        let o = &self.options;
        let transports: Vec<&str> = o.transports.iter().map(|t| t.name()).collect();
        let headers = match o.headers {
            Headers::Browser => "browser",
            Headers::Minimal => "minimal",
        };
        format!(
            "cargo xtask seed-compare{}{} --clients {} --rate {} --symbols {} --poll-interval {} \
             --duration {} --headers {headers} --transports {}",
            self.link(),
            if o.chat { " --chat" } else { "" },
            o.clients,
            self.rate,
            self.symbols,
            o.poll_interval.as_secs_f64(),
            o.duration.as_secs_f64(),
            transports.join(",")
        )
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n`{}`", self.command());
        if let Some(p) = &self.options.profile {
            let _ = writeln!(out, "\nLink: {} ({}).", p.name, p.summary());
        }
        let _ = writeln!(
            out,
            "\nMachine: {}; load average before {}, after {}.\n",
            self.machine, self.load_before, self.load_after
        );
        let wire = self.results.iter().any(|m| m.wire.is_some());
        if wire {
            out.push_str(
                "| transport | delivered / published×clients | wire ↓ B/update | wire ↑ B/update | \
                 link drops | socket ↓ B/update | socket ↑ B/update | latency p50 | p99 | max | \
                 bunched | server CPU/update | missed | dup |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
        } else {
            out.push_str(
                "| transport | delivered / published×clients | ↓ B/update | ↑ B/update | setup B/conn | \
                 latency p50 | p99 | server CPU/update | server CPU | requests/s | missed | dup |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
        }
        for m in &self.results {
            let r = m.row();
            let delivered = format!(
                "{} / {}",
                r.delivered,
                r.published * self.options.clients as u64
            );
            let _ = if wire {
                writeln!(
                    out,
                    "| {} | {delivered} | {:.0} | {:.0} | {:.1}% | {:.1} | {:.1} | {} | {} | {} | {} | {:.1} µs | {} | {} |",
                    r.label,
                    r.wire_down.unwrap_or(f64::NAN),
                    r.wire_up.unwrap_or(f64::NAN),
                    r.wire_loss_pct.unwrap_or(f64::NAN),
                    r.down,
                    r.up,
                    ms(r.p50_ms),
                    ms(r.p99_ms),
                    ms(r.max_ms),
                    r.bunched,
                    r.cpu_us,
                    r.missed,
                    r.duplicated,
                )
            } else {
                writeln!(
                    out,
                    "| {} | {delivered} | {:.1} | {:.1} | {:.0} | {} | {} | {:.1} µs | {:.1}% | {:.1} | {} | {} |",
                    r.label,
                    r.down,
                    r.up,
                    r.setup,
                    ms(r.p50_ms),
                    ms(r.p99_ms),
                    r.cpu_us,
                    r.cpu_pct,
                    r.requests_per_s,
                    r.missed,
                    r.duplicated,
                )
            };
        }
        if self.options.chat {
            out.push_str(
                "\nThe speaker (one more client per transport, sending to all the others):\n\n\
                 | transport | messages sent | speaker ↑ B/message | speaker ↓ B/message |\n\
                 |---|---:|---:|---:|\n",
            );
            for m in &self.results {
                if let Some(t) = &m.speaker {
                    let per = |bytes: u64| bytes as f64 / t.requests.max(1) as f64;
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.1} | {:.1} |",
                        m.transport.label(),
                        t.requests,
                        per(t.up - t.setup_up),
                        per(t.down - t.setup_down)
                    );
                }
            }
        }
        for m in &self.results {
            let r = m.row();
            if r.errors > 0 {
                let _ = writeln!(out, "\n{}: {} clients failed", r.name, r.errors);
            }
        }
        out
    }

    pub fn json(&self) -> String {
        let rows: Vec<_> = self
            .results
            .iter()
            .map(|m| {
                let r = m.row();
                json!({
                    "transport": r.name,
                    "delivered": r.delivered,
                    "published": r.published,
                    "down_bytes_per_update": r.down,
                    "up_bytes_per_update": r.up,
                    "setup_bytes_per_connection": r.setup,
                    "latency_p50_ms": r.p50_ms,
                    "latency_p99_ms": r.p99_ms,
                    "latency_max_ms": r.max_ms,
                    "wire_down_bytes_per_update": r.wire_down,
                    "wire_up_bytes_per_update": r.wire_up,
                    "link_drop_percent": r.wire_loss_pct,
                    "bunched": r.bunched,
                    "server_cpu_us_per_update": r.cpu_us,
                    "server_cpu_percent": r.cpu_pct,
                    "server_cpu_ms": m.cpu_ms,
                    "server_cpu_ms_from_proc_stat_ticks": m.cpu_ms_ticks,
                    "requests_per_second": r.requests_per_s,
                    "missed": r.missed,
                    "duplicated": r.duplicated,
                    "client_errors": r.errors,
                    "extensions": r.extensions,
                })
            })
            .collect();
        let report = json!({
            "command": self.command(),
            "link": self.options.profile.as_ref().map(|p| json!({
                "profile": p.name,
                "summary": p.summary(),
                "source": p.source,
            })),
            "machine": self.machine,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "results": rows,
            "speakers": self.results.iter().filter_map(|m| m.speaker.as_ref().map(|t| json!({
                "transport": m.transport.name(),
                "messages": t.requests,
                "up_bytes": t.up - t.setup_up,
                "down_bytes": t.down - t.setup_down,
            }))).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    }

    /// Three bar charts: bytes per update (down and up), latency (p50 bar, p99 mark,
    /// log scale) and server CPU per update.
    pub fn svg(&self) -> String {
        let mut rows: Vec<Row> = self.results.iter().map(Measurement::row).collect();
        // Over the emulated link, the bytes are the link's (IP packets, everything).
        let wire = rows.iter().all(|r| r.wire_down.is_some());
        if wire {
            for r in &mut rows {
                (r.down, r.up) = (r.wire_down.unwrap_or(r.down), r.wire_up.unwrap_or(r.up));
            }
        }
        let (width, label_w, bar_h, gap) = (820.0, 250.0, 18.0, 6.0);
        let plot_w = width - label_w - 150.0;
        let panel_h = 34.0 + rows.len() as f64 * (bar_h + gap) + 26.0;
        let height = 52.0 + 3.0 * panel_h;
        let mut s = Svg::new(width, height, 12);
        s.text(
            10.0,
            22.0,
            r#"font-size="15" font-weight="bold""#,
            &match &self.options.profile {
                None => format!(
                    "One ticker feed, {} clients, {} updates/s: polling vs streaming vs WebSocket",
                    self.options.clients, self.rate
                ),
                Some(p) => format!(
                    "{} clients, {} updates/s over the {} profile ({})",
                    self.options.clients,
                    self.rate,
                    p.name,
                    p.summary()
                ),
            },
        );
        let headers = match self.options.headers {
            Headers::Browser => "browser-like request headers",
            Headers::Minimal => "minimal request headers",
        };
        let transports = self
            .options
            .transports
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ");
        s.text(
            10.0,
            40.0,
            r##"fill="#555""##,
            &format!(
                "{transports}; {headers}; {} on {}",
                if wire {
                    "bytes counted on the emulated link (IP packets)"
                } else {
                    "measured at the client sockets"
                },
                self.machine
            ),
        );
        let max_bytes = rows.iter().map(|r| r.down + r.up).fold(1.0, f64::max);
        let max_cpu = rows.iter().map(|r| r.cpu_us).fold(0.1, f64::max);
        // Latency axis: log10 from 0.1 ms to the next power of ten above the worst p99.
        let worst = rows
            .iter()
            .map(|r| r.p99_ms)
            .filter(|v| v.is_finite())
            .fold(1.0, f64::max);
        let (lo, hi) = (-1.0_f64, worst.log10().ceil().max(1.0));
        let log_x = |v: f64| ((v.max(0.1).log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * plot_w;
        let panels: [(&str, Draw<'_>); 3] = [
            (
                if wire {
                    "IP bytes on the link per delivered update (all included; dark: server→client, light: client→server)"
                } else {
                    "Bytes on the wire per delivered update (after setup; dark: server→client, light: client→server)"
                },
                &|r, y, s| {
                    let down = r.down / max_bytes * plot_w;
                    let up = r.up / max_bytes * plot_w;
                    s.rect(label_w, y, down, bar_h, "#2b6cb0", None);
                    s.rect(label_w + down, y, up, bar_h, "#90cdf4", None);
                    let bytes = format!("{:.0} B", r.down + r.up);
                    s.text(label_w + down + up + 5.0, y + 13.0, "", &bytes);
                },
            ),
            (
                "Latency from publish to receipt, log scale (bar: median, mark: p99)",
                &|r, y, s| {
                    let p50 = log_x(r.p50_ms);
                    let p99 = log_x(r.p99_ms);
                    s.rect(label_w, y, p50, bar_h, "#2f855a", None);
                    s.rect(
                        label_w + p99 - 1.5,
                        y - 2.0,
                        3.0,
                        bar_h + 4.0,
                        "#c53030",
                        None,
                    );
                    let both = format!("{} / {}", ms(r.p50_ms), ms(r.p99_ms));
                    s.text(label_w + p50.max(p99) + 6.0, y + 13.0, "", &both);
                },
            ),
            ("Server CPU time per delivered update", &|r, y, s| {
                let w = r.cpu_us / max_cpu * plot_w;
                s.rect(label_w, y, w, bar_h, "#b7791f", None);
                let cpu = format!("{:.1} µs", r.cpu_us);
                s.text(label_w + w + 5.0, y + 13.0, "", &cpu);
            }),
        ];
        for (i, (title, draw)) in panels.iter().enumerate() {
            let top = 52.0 + i as f64 * panel_h;
            s.text(10.0, top + 20.0, r#"font-weight="bold""#, title);
            for (j, r) in rows.iter().enumerate() {
                let y = top + 32.0 + j as f64 * (bar_h + gap);
                s.text(label_w - 8.0, y + 13.0, r#"text-anchor="end""#, r.label);
                draw(r, y, &mut s);
            }
            if i == 1 {
                // Decade ticks for the log axis.
                let y = top + 32.0 + rows.len() as f64 * (bar_h + gap);
                let mut decade = lo;
                while decade <= hi {
                    let x = label_w + log_x(10f64.powf(decade));
                    s.line((x, top + 28.0), (x, y), "#999");
                    s.text(
                        x,
                        y + 12.0,
                        r##"text-anchor="middle" fill="#555" font-size="10""##,
                        &ms(10f64.powf(decade)),
                    );
                    decade += 1.0;
                }
            }
        }
        s.finish()
    }
}

/// Draws one row of a panel at a height.
type Draw<'a> = &'a dyn Fn(&Row, f64, &mut Svg);

/// Milliseconds, readable at any size.
fn ms(value: f64) -> String {
    if !value.is_finite() {
        "–".into()
    } else if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 1.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.2} ms")
    }
}
