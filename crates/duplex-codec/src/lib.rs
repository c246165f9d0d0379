//! The WebSocket wire format (RFC 6455 section 5), and nothing else.
//!
//! This crate knows bytes and frames: [`OpCode`], [`FrameHeader`] parsing and encoding
//! with 7-, 16- and 64-bit lengths, [`apply_mask`], the streaming [`Decoder`] and
//! [`encode_frame`]. It knows nothing of messages, UTF-8, close codes or connection state.
//!
//! Pick it to build your own WebSocket engine or to inspect traffic. To speak the
//! protocol, use `duplex-core` (sans-IO) or one of the adapters, `duplex-tokio` and
//! `duplex-mio`, which enforce every rule of the RFC on top of this crate.
//!
//! ```
//! use bytes::BytesMut;
//! use duplex_codec::{encode_frame, Decoded, Decoder, FrameHeader, Masking, OpCode};
//!
//! let mut wire = BytesMut::new();
//! let mut header = FrameHeader::new(OpCode::Binary, 3);
//! header.mask = Some([1, 2, 3, 4]);
//! encode_frame(&header, &[10, 20, 30], &mut wire);
//!
//! let mut decoder = Decoder::new(Masking::Required, 1 << 20);
//! match decoder.decode(&mut wire)? {
//!     Some(Decoded::Frame { header, payload, complete: true }) => {
//!         assert_eq!(header.opcode, OpCode::Binary);
//!         assert_eq!(&payload[..], &[10, 20, 30]);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), duplex_codec::DecodeError>(())
//! ```

#![forbid(unsafe_code)]

mod decoder;
mod encoder;
mod error;
mod header;
mod mask;
mod opcode;

pub use decoder::{Decoded, Decoder, Masking};
pub use encoder::{encode_frame, encode_header};
pub use error::DecodeError;
pub use header::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
pub use mask::{apply_mask, apply_mask_bytewise};
pub use opcode::OpCode;

#[cfg(test)]
mod proptests;
