//! Hostile peers for duplex.
//!
//! - [`check`]: the invariant-checking harnesses. The cargo-fuzz targets in `fuzz/` call
//!   them, and `tests/fuzz_regressions.rs` replays every saved crash and seed through
//!   them under plain `cargo test`, so there is one implementation of each invariant.
//! - [`seeds`]: the generator of the seed corpus (valid traffic, plus a few classic
//!   mistakes), committed under `fuzz/seeds/<target>/`.
//! - [`wire`]: raw frames and requests as an attacker writes them, and a reader for what
//!   a server answers.
//! - [`rss`]: the process's resident memory, sampled while an attack runs.
//! - [`servers`] (feature `servers`): the duplex-tokio and duplex-mio servers the attack
//!   suite and the soak run start, with small limits, and the attacker's socket helpers.
//! - [`kit`] (feature `servers`): the driver test kit, the same never-ending peers against
//!   every driver and transport (`tests/driver_kit.rs`).

pub mod check;
#[cfg(feature = "servers")]
pub mod kit;
pub mod rss;
pub mod seeds;
#[cfg(feature = "servers")]
pub mod servers;
pub mod wire;
