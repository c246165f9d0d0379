//! Developer tasks for the duplex workspace, run as `cargo xtask <task>`.
//!
//! Tasks:
//! - `conformance`: Autobahn-style WebSocket conformance suite
//!   (see `xtask/README.md`).
//! - `load`: load generator and peer comparison.
//! - `netem`: a packet-level network emulator between two network namespaces.
//! - `seed-compare`: the ticker feed over four transports, measured.

use std::process::ExitCode;

mod conformance;
mod load;
mod netem;
mod seed_compare;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  conformance   Autobahn-style conformance suite (cargo xtask conformance --help)
  load          load generator and peer comparison (cargo xtask load --help)
  netem         network emulator: delay, loss, rate limit (cargo xtask netem --help)
  seed-compare  polling vs long polling vs streaming vs WebSocket (cargo xtask seed-compare --help)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conformance") => conformance::main(&args[1..]),
        Some("load") => load::main(&args[1..]),
        Some("netem") => netem::main(&args[1..]),
        Some("seed-compare") => seed_compare::main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown task {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
