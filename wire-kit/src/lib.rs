//! The test wire kit of the duplex workspace: WebSocket frames and handshakes written
//! and read byte by byte, for the tests, benchmarks, attack suite and xtask tools
//! (conformance suite, load generator, seed comparison).
//!
//! It depends on none of the duplex crates, on purpose: what judges the code under
//! test must not share code with it. Everything here is plain and slow-but-obvious;
//! it can also write what RFC 6455 forbids (reserved bits and opcodes, non-minimal
//! lengths, missing masks, lengths over 2^63), which the attack suites need.
//!
//! - [`frame`]: frame writer ([`FrameSpec`], [`frame()`], [`header`]), close payloads,
//!   fragmenting, test payloads ([`noise`]), and the incremental [`FrameReader`].
//! - [`http`]: accept key, upgrade requests and 101 responses, response head parsing.
//! - [`svg`]: one small SVG chart writer for the xtask reports.

#![forbid(unsafe_code)]

pub mod frame;
pub mod http;
pub mod svg;

pub use frame::*;
pub use http::*;
