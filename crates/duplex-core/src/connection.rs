//! The protocol engine: bytes in, events out; messages in, bytes out.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use duplex_codec::{
    Decoded, Decoder, FrameHeader, MAX_CONTROL_PAYLOAD, Masking, OpCode, encode_header,
};

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
use crate::config::Config;
use crate::deflate::{self, Deflate, DeflateParams, InflateError};
use crate::error::{Error, Limit, LimitError, ProtocolError, TimeoutKind, UsageError};
use crate::mask_keys::next_key;
use crate::message::{Message, Utf8Bytes};
use crate::output::Output;
use crate::role::Role;
use crate::utf8::Utf8Validator;

/// The most a message's join buffer reserves ahead of the bytes that arrived.
const JOIN_RESERVE: usize = 64 << 10;

/// Pongs that may wait unsent in the output before later pings collapse into one.
const MAX_QUEUED_PONGS: usize = 16;

/// One WebSocket connection after the opening handshake, without any I/O.
///
/// The adapter feeds it what the socket read ([`receive`](Self::receive)), takes events
/// out ([`poll_event`](Self::poll_event)), writes what it asks
/// ([`pending_output`](Self::pending_output), [`consume_output`](Self::consume_output)),
/// runs its one timer ([`poll_timeout`](Self::poll_timeout),
/// [`handle_timeout`](Self::handle_timeout)) and closes the socket when
/// [`wants_close_transport`](Self::wants_close_transport) says so.
///
/// ```
/// use std::time::Instant;
/// use duplex_core::{Config, Connection, Message, Role};
///
/// let mut server = Connection::new(Role::Server, Config::default());
/// let mut client = Connection::new(Role::Client, Config::default());
/// let now = Instant::now();
///
/// client.send(Message::text("hello"))?;
/// // Move the client's output to the server, as a socket would.
/// let wire = client.pending_output().to_vec();
/// client.consume_output(wire.len());
/// server.receive(&wire);
///
/// match server.poll_event(now) {
///     Some(Ok(Message::Text(text))) => assert_eq!(text, "hello"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), duplex_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    decoder: Decoder,
    read_buf: BytesMut,
    fresh_input: bool,
    /// The input length before the adapter appended to [`Connection::input_buffer`].
    input_mark: Option<usize>,
    eof: bool,
    incoming: Incoming,
    output: Output,
    pending_pong: Option<Bytes>,
    /// Output positions where the queued, not yet written pongs end (at most
    /// `MAX_QUEUED_PONGS`); while it is full, only the latest ping's pong waits.
    pongs_in_flight: VecDeque<u64>,
    sent_close: bool,
    received_close: bool,
    failed: bool,
    /// No more frames will be decoded (peer's close seen, or the stream is undecodable).
    read_closed: bool,
    /// Close the transport now, whatever is still queued.
    abort: bool,
    pending_error: Option<Error>,
    timers: Timers,
    deflate: Option<Deflate>,
}

/// The message being assembled from incoming frames.
#[derive(Debug, Default)]
struct Incoming {
    /// The opcode of the message in progress (Text or Binary), if any.
    kind: Option<OpCode>,
    /// The current frame is the message's last.
    frame_fin: bool,
    /// The only piece received so far, kept without a copy.
    first: Option<Bytes>,
    /// Pieces joined, once there are two or more.
    joined: BytesMut,
    len: usize,
    fragments: usize,
    utf8: Utf8Validator,
    /// The message's length once the current frame is complete, as its header announced.
    announced: u64,
    /// The message has RSV1 set: its payload is deflate data.
    compressed: bool,
    /// The inflated bytes of a compressed message.
    inflated: Vec<u8>,
}

impl Incoming {
    /// Ends the message in progress with `data` as its payload.
    fn finish(&mut self, data: Bytes) -> Message {
        let kind = self.kind.take();
        self.len = 0;
        self.fragments = 0;
        self.compressed = false;
        self.utf8.reset();
        match kind {
            Some(OpCode::Text) => Message::Text(Utf8Bytes::from_validated(data)),
            _ => Message::Binary(data),
        }
    }
}

#[derive(Debug, Default)]
struct Timers {
    /// Close handshake (or, for a client, the server's TCP close) deadline.
    close: Option<Instant>,
    /// When the last frame from the peer was seen (keepalive).
    last_frame: Option<Instant>,
    /// When the last data frame from the peer was seen (idle timeout).
    last_data: Option<Instant>,
    /// A keepalive ping is outstanding until this deadline.
    ping_deadline: Option<Instant>,
    /// A close handshake started without a time (`send(Message::Close)`): its deadline
    /// is armed by the next call that passes `now`.
    close_unarmed: bool,
}

impl Connection {
    /// A connection for `role` with `config`, as the opening handshake left it.
    pub fn new(role: Role, config: Config) -> Self {
        let masking = match role {
            Role::Server => Masking::Required,
            Role::Client => Masking::Forbidden,
        };
        Self {
            role,
            decoder: Decoder::new(masking, config.max_frame_size as u64),
            config,
            read_buf: BytesMut::new(),
            fresh_input: false,
            input_mark: None,
            eof: false,
            incoming: Incoming::default(),
            output: Output::default(),
            pending_pong: None,
            pongs_in_flight: VecDeque::new(),
            sent_close: false,
            received_close: false,
            failed: false,
            read_closed: false,
            abort: false,
            pending_error: None,
            timers: Timers::default(),
            deflate: None,
        }
    }

    /// Turns on permessage-deflate with the parameters the handshake negotiated. Call it
    /// before any frame is exchanged.
    pub fn enable_deflate(&mut self, params: DeflateParams) {
        self.deflate = Some(Deflate::new(
            self.role,
            params,
            self.config.compression_level,
        ));
    }

    /// True when permessage-deflate is on.
    pub fn is_deflate_enabled(&self) -> bool {
        self.deflate.is_some()
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// This connection's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- input -----

    /// Feeds bytes read from the transport. Nothing is parsed until
    /// [`poll_event`](Self::poll_event); call it until it returns `None` before reading
    /// more, so that the engine only ever holds a partial frame.
    pub fn receive(&mut self, data: &[u8]) {
        if self.read_closed || data.is_empty() {
            return;
        }
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::from(data);
        } else {
            self.read_buf.extend_from_slice(data);
        }
        self.fresh_input = true;
    }

    /// The engine's input buffer with at least `min` bytes of spare room, for adapters
    /// that read from the transport straight into it (one copy fewer than
    /// [`receive`](Self::receive)): append what was read, e.g. with
    /// `tokio_util::io::poll_read_buf`, then call [`poll_event`](Self::poll_event).
    /// After the engine stopped reading (a close or a failure), what is appended is
    /// dropped at the next call.
    pub fn input_buffer(&mut self, min: usize) -> &mut BytesMut {
        if self.read_closed {
            self.read_buf.clear();
        }
        self.read_buf.reserve(min);
        self.input_mark = Some(self.read_buf.len());
        &mut self.read_buf
    }

    /// Tells the engine the transport reached end of file. A peer that leaves without
    /// completing the close handshake is reported as [`Error::PeerVanished`] once the
    /// bytes already received are processed.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// The next event: a message, a ping, a pong, the peer's close, or the error that
    /// failed the connection (reported once; the close frame for it is already queued).
    /// `None` means more input is needed.
    ///
    /// `now` is the current time; keepalive and idle deadlines count from it.
    pub fn poll_event(&mut self, now: Instant) -> Option<Result<Message, Error>> {
        self.start_timers(now);
        if let Some(error) = self.pending_error.take() {
            return Some(Err(error));
        }
        if let Some(mark) = self.input_mark.take() {
            self.fresh_input |= self.read_buf.len() > mark;
        }
        if self.read_closed && !self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        if self.fresh_input {
            self.fresh_input = false;
            self.timers.last_frame = Some(now);
            self.timers.ping_deadline = None;
        }
        while !self.read_closed {
            let item = match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(item)) => item,
                Ok(None) => {
                    if self.read_buf.is_empty() {
                        self.read_buf = BytesMut::new();
                    }
                    break;
                }
                Err(error) => {
                    self.read_closed = true;
                    return self.fail(error.into(), now);
                }
            };
            match self.handle(item, now) {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(error) => return self.fail(error, now),
            }
        }
        if self.eof && !self.read_closed {
            self.read_closed = true;
            self.read_buf = BytesMut::new();
            if !self.sent_close {
                let mid_message =
                    self.incoming.kind.is_some() || !self.decoder.is_at_frame_boundary();
                return Some(Err(Error::PeerVanished { mid_message }));
            }
        }
        None
    }

    fn start_timers(&mut self, now: Instant) {
        self.timers.last_frame.get_or_insert(now);
        self.timers.last_data.get_or_insert(now);
        if std::mem::take(&mut self.timers.close_unarmed) && self.timers.close.is_none() {
            self.timers.close = Some(now + self.config.close_timeout);
        }
    }

    fn handle(&mut self, item: Decoded, now: Instant) -> Result<Option<Message>, Error> {
        match item {
            Decoded::Frame {
                header,
                payload,
                complete,
            } => {
                let bits = (u8::from(header.rsv1) << 2)
                    | (u8::from(header.rsv2) << 1)
                    | u8::from(header.rsv3);
                // RSV1 marks a compressed message: allowed on the first frame of a data
                // message when permessage-deflate was negotiated, nowhere else.
                let compressed_start = bits == 0b100
                    && self.deflate.is_some()
                    && matches!(header.opcode, OpCode::Text | OpCode::Binary);
                if bits != 0 && !compressed_start {
                    return Err(ProtocolError::ReservedBits { bits }.into());
                }
                if header.opcode.is_control() {
                    return self.handle_control(header.opcode, payload, now);
                }
                if self.failed {
                    return Ok(None);
                }
                self.start_data_frame(&header)?;
                self.timers.last_data = Some(now);
                self.data_piece(payload, complete)
            }
            Decoded::Continue { payload, complete } => {
                if self.failed {
                    return Ok(None);
                }
                self.data_piece(payload, complete)
            }
        }
    }

    fn start_data_frame(&mut self, header: &FrameHeader) -> Result<(), Error> {
        let incoming = &mut self.incoming;
        match (header.opcode, incoming.kind) {
            (OpCode::Continuation, None) => {
                return Err(ProtocolError::UnexpectedContinuation.into());
            }
            (OpCode::Continuation, Some(_)) => {}
            (opcode, Some(_)) => return Err(ProtocolError::ExpectedContinuation(opcode).into()),
            (opcode, None) => {
                incoming.kind = Some(opcode);
                incoming.compressed = header.rsv1;
            }
        }
        incoming.fragments += 1;
        if incoming.fragments > self.config.max_fragments {
            return Err(Error::LimitExceeded(LimitError {
                limit: Limit::Fragments,
                actual: incoming.fragments as u64,
                max: self.config.max_fragments as u64,
            }));
        }
        let announced = (incoming.len as u64).saturating_add(header.payload_len);
        if announced > self.config.max_message_size as u64 {
            return Err(Error::LimitExceeded(LimitError {
                limit: Limit::MessageSize,
                actual: announced,
                max: self.config.max_message_size as u64,
            }));
        }
        incoming.frame_fin = header.fin;
        incoming.announced = announced;
        Ok(())
    }

    fn data_piece(&mut self, payload: Bytes, complete: bool) -> Result<Option<Message>, Error> {
        if self.incoming.compressed {
            return self.compressed_piece(&payload, complete);
        }
        let incoming = &mut self.incoming;
        let last = complete && incoming.frame_fin;
        if incoming.kind == Some(OpCode::Text) {
            incoming
                .utf8
                .feed(&payload, last)
                .map_err(|_| ProtocolError::InvalidUtf8 {
                    in_close_reason: false,
                })?;
        }
        if !payload.is_empty() {
            incoming.len += payload.len();
            if incoming.first.is_none() && incoming.joined.is_empty() {
                incoming.first = Some(payload);
            } else {
                if let Some(first) = incoming.first.take() {
                    // The message needs a buffer of its own: size it for what the
                    // current frame announced, up to a small constant, so that a message
                    // of a few reads is copied once instead of regrown.
                    let announced = usize::try_from(incoming.announced).unwrap_or(usize::MAX);
                    incoming
                        .joined
                        .reserve(announced.min(JOIN_RESERVE).max(first.len() + payload.len()));
                    incoming.joined.extend_from_slice(&first);
                }
                incoming.joined.extend_from_slice(&payload);
            }
        }
        if !last {
            return Ok(None);
        }
        let data = match incoming.first.take() {
            Some(data) => data,
            None => incoming.joined.split().freeze(),
        };
        Ok(Some(incoming.finish(data)))
    }

    /// A piece of a compressed message: inflated within `max_decompressed_size`, and the
    /// inflated text validated as it comes out.
    fn compressed_piece(
        &mut self,
        payload: &[u8],
        complete: bool,
    ) -> Result<Option<Message>, Error> {
        let incoming = &mut self.incoming;
        let last = complete && incoming.frame_fin;
        incoming.len += payload.len();
        let before = incoming.inflated.len();
        let limit = self.config.max_decompressed_size;
        let deflate = self
            .deflate
            .as_mut()
            .expect("RSV1 is only accepted with deflate");
        deflate
            .inflate(payload, last, &mut incoming.inflated, limit)
            .map_err(|error| match error {
                InflateError::Corrupt(_) => Error::Protocol(ProtocolError::InvalidCompressedData),
                InflateError::TooLarge(_) => Error::LimitExceeded(LimitError {
                    limit: Limit::DecompressedSize,
                    actual: limit as u64 + 1,
                    max: limit as u64,
                }),
            })?;
        if incoming.kind == Some(OpCode::Text) {
            incoming
                .utf8
                .feed(&incoming.inflated[before..], last)
                .map_err(|_| ProtocolError::InvalidUtf8 {
                    in_close_reason: false,
                })?;
        }
        if !last {
            return Ok(None);
        }
        let data = Bytes::from(std::mem::take(&mut incoming.inflated));
        Ok(Some(incoming.finish(data)))
    }

    fn handle_control(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        now: Instant,
    ) -> Result<Option<Message>, Error> {
        match opcode {
            OpCode::Ping => {
                if self.failed || self.sent_close {
                    return Ok(None);
                }
                if self.config.auto_pong {
                    self.pending_pong = Some(payload.clone());
                    self.queue_pong();
                }
                Ok(Some(Message::Ping(payload)))
            }
            OpCode::Pong => {
                if self.failed {
                    return Ok(None);
                }
                Ok(Some(Message::Pong(payload)))
            }
            _ => self.handle_close(&payload, now),
        }
    }

    fn handle_close(&mut self, payload: &[u8], now: Instant) -> Result<Option<Message>, Error> {
        let frame = parse_close_payload(payload)?;
        self.received_close = true;
        self.read_closed = true;
        self.read_buf = BytesMut::new();
        if self.role == Role::Client {
            // Wait for the server to close TCP, but not forever.
            self.timers.close = Some(now + self.config.close_timeout);
        }
        if self.failed {
            return Ok(None);
        }
        if !self.sent_close {
            let reply = frame
                .as_ref()
                .map(|f| CloseFrame::new(f.code, Utf8Bytes::default()));
            self.queue_pong();
            self.write_close(reply.as_ref());
            self.sent_close = true;
        }
        Ok(Some(Message::Close(frame)))
    }

    /// Fails the connection (RFC 6455 section 7.1.7): queues a close frame for `error`,
    /// stops reading, and reports the error once. The transport is closed as soon as the
    /// close frame is written; waiting for the peer's reply could mean waiting for the
    /// rest of a frame that will never come.
    fn fail(&mut self, error: Error, now: Instant) -> Option<Result<Message, Error>> {
        self.read_closed = true;
        self.read_buf = BytesMut::new();
        if self.failed {
            return None;
        }
        self.failed = true;
        self.incoming = Incoming::default();
        self.pending_pong = None;
        if !self.sent_close {
            self.write_close(error.close_frame().as_ref());
            self.sent_close = true;
            self.timers.close = Some(now + self.config.close_timeout);
        }
        Some(Err(error))
    }

    // ----- output -----

    /// Queues a message. Text and binary messages are refused with
    /// [`UsageError::WriteBufferFull`] while the unsent output is above
    /// `max_write_buffer`; control frames are always accepted.
    ///
    /// `Message::Close` starts the close handshake like [`close`](Self::close); its
    /// timeout counts from the next call that passes the time (`poll_event`,
    /// `handle_timeout`), since this one has none.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        if let Message::Close(frame) = message {
            return self.start_close(frame, None);
        }
        if self.sent_close {
            return Err(UsageError::SendAfterClose.into());
        }
        match message {
            Message::Text(text) => self.send_data(OpCode::Text, text.into_bytes(), true),
            Message::Binary(data) => self.send_data(OpCode::Binary, data, true),
            Message::Ping(data) => self.send_control(OpCode::Ping, data),
            Message::Pong(data) => self.send_control(OpCode::Pong, data),
            Message::Close(_) => unreachable!("handled above"),
        }
    }

    /// Queues a text or binary message without compressing it, even when
    /// permessage-deflate is on (for data that is already compressed, or latency).
    pub fn send_uncompressed(&mut self, message: Message) -> Result<(), Error> {
        if self.sent_close {
            return Err(UsageError::SendAfterClose.into());
        }
        match message {
            Message::Text(text) => self.send_data(OpCode::Text, text.into_bytes(), false),
            Message::Binary(data) => self.send_data(OpCode::Binary, data, false),
            _ => Err(UsageError::NotDataMessage.into()),
        }
    }

    /// Queues a message encoded once for many connections (see [`PreparedMessage`]).
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), Error> {
        if self.role == Role::Client || self.config.send_frame_size.is_some() {
            return self.send(prepared.message.clone());
        }
        if self.sent_close {
            return Err(UsageError::SendAfterClose.into());
        }
        let frame = match &mut self.deflate {
            Some(deflate)
                if deflate.can_compress()
                    && prepared.message.payload().len() >= self.config.compression_threshold =>
            {
                if !deflate.accepts_shared_frames() {
                    // A smaller window than the shared frame's: compress for this peer.
                    return self.send(prepared.message.clone());
                }
                deflate.forget_send_context();
                prepared.compressed_frame()
            }
            _ => prepared.frame.clone(),
        };
        self.check_write_buffer()?;
        self.output.push_shared(frame);
        Ok(())
    }

    /// Starts the close handshake with `frame` (or an empty close frame). Nothing can be
    /// sent afterwards. Calling it again, or after the peer's close, does nothing.
    pub fn close(&mut self, frame: Option<CloseFrame>, now: Instant) -> Result<(), Error> {
        self.start_close(frame, Some(now))
    }

    fn start_close(
        &mut self,
        frame: Option<CloseFrame>,
        now: Option<Instant>,
    ) -> Result<(), Error> {
        if let Some(frame) = &frame {
            if !frame.code.is_allowed_on_wire() {
                return Err(UsageError::InvalidCloseCode(frame.code.as_u16()).into());
            }
            if frame.reason.len() > MAX_CLOSE_REASON {
                return Err(UsageError::CloseReasonTooLong(frame.reason.len()).into());
            }
        }
        if self.sent_close {
            return Ok(());
        }
        self.queue_pong();
        self.write_close(frame.as_ref());
        self.sent_close = true;
        match now {
            Some(now) => self.timers.close = Some(now + self.config.close_timeout),
            None => self.timers.close_unarmed = true,
        }
        Ok(())
    }

    fn check_write_buffer(&self) -> Result<(), Error> {
        if self.output.len() > self.config.max_write_buffer {
            return Err(UsageError::WriteBufferFull {
                buffered: self.output.len(),
                limit: self.config.max_write_buffer,
            }
            .into());
        }
        Ok(())
    }

    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        may_compress: bool,
    ) -> Result<(), Error> {
        self.check_write_buffer()?;
        let (payload, compressed) = match &mut self.deflate {
            Some(deflate)
                if may_compress
                    && deflate.can_compress()
                    && payload.len() >= self.config.compression_threshold =>
            {
                (deflate.compress(&payload), true)
            }
            _ => (payload, false),
        };
        let frame_size = self.config.send_frame_size.unwrap_or(usize::MAX);
        if payload.len() <= frame_size {
            self.write_frame_rsv1(opcode, true, compressed, payload);
            return Ok(());
        }
        let mut start = 0;
        let mut opcode = opcode;
        let mut rsv1 = compressed;
        while start < payload.len() {
            let end = payload.len().min(start + frame_size);
            self.write_frame_rsv1(
                opcode,
                end == payload.len(),
                rsv1,
                payload.slice(start..end),
            );
            opcode = OpCode::Continuation;
            rsv1 = false;
            start = end;
        }
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(UsageError::ControlPayloadTooLong(payload.len()).into());
        }
        self.write_frame(opcode, true, payload);
        Ok(())
    }

    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: Bytes) {
        self.write_frame_rsv1(opcode, fin, false, payload);
    }

    fn write_frame_rsv1(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Bytes) {
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        let staging = self.output.staging();
        let before = staging.len();
        if self.role == Role::Client {
            let key = next_key();
            header.mask = Some(key);
            encode_header(&header, staging);
            let start = staging.len();
            staging.extend_from_slice(&payload);
            duplex_codec::apply_mask(&mut staging[start..], key, 0);
            self.output.staged(before);
        } else {
            encode_header(&header, staging);
            self.output.staged(before);
            self.output.push_payload(payload);
        }
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let payload = match frame {
            None => Bytes::new(),
            Some(frame) => {
                let mut body = Vec::with_capacity(2 + frame.reason.len());
                body.extend_from_slice(&frame.code.as_u16().to_be_bytes());
                body.extend_from_slice(frame.reason.as_bytes());
                Bytes::from(body)
            }
        };
        self.write_frame(OpCode::Close, true, payload);
    }

    /// Queues the owed pong unless `MAX_QUEUED_PONGS` pongs are still unsent; then only
    /// the latest ping's payload is kept, so a ping flood cannot grow the output.
    fn queue_pong(&mut self) {
        let consumed = self.output.consumed_position();
        while self
            .pongs_in_flight
            .front()
            .is_some_and(|end| *end <= consumed)
        {
            self.pongs_in_flight.pop_front();
        }
        if self.sent_close || self.pongs_in_flight.len() >= MAX_QUEUED_PONGS {
            return;
        }
        if let Some(payload) = self.pending_pong.take() {
            self.write_frame(OpCode::Pong, true, payload);
            self.pongs_in_flight.push_back(self.output.end_position());
        }
    }

    /// The next bytes to write to the transport (empty when there is nothing to write).
    pub fn pending_output(&self) -> &[u8] {
        self.output.front()
    }

    /// Fills `slices` with all pending output in order, for a vectored write; returns
    /// the number of slices filled.
    pub fn pending_output_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.output.vectored(slices)
    }

    /// Bytes waiting to be written.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// True while the unsent output is above `max_write_buffer`: the adapter should wait
    /// for it to drain before accepting more messages.
    pub fn is_write_buffer_full(&self) -> bool {
        self.output.len() > self.config.max_write_buffer
    }

    /// Tells the engine that the transport accepted the first `n` pending bytes.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`output_len`](Self::output_len) (an adapter bug).
    pub fn consume_output(&mut self, n: usize) {
        self.output.consume(n);
        self.queue_pong();
    }

    /// Releases buffers that hold nothing, so an idle connection costs almost no memory.
    pub fn shrink_buffers(&mut self) {
        self.output.shrink();
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        if self.incoming.joined.is_empty() {
            self.incoming.joined = BytesMut::new();
        }
        if self.incoming.inflated.is_empty() {
            self.incoming.inflated = Vec::new();
        }
        if let Some(deflate) = &mut self.deflate {
            // A message in progress still needs its inflate stream.
            deflate.shrink(self.incoming.kind.is_none());
        }
    }

    /// Received bytes the engine holds: unparsed input plus the message being assembled.
    /// Bounded by the limits: at most `max_message_size` plus one read.
    pub fn buffered_input(&self) -> usize {
        self.read_buf.len() + self.incoming.len + self.incoming.inflated.len()
    }

    // ----- state and time -----

    /// True once the adapter should close the transport: the close handshake is done
    /// (a server closes TCP first; a client waits for the server, up to the close
    /// timeout), the stream became undecodable, a deadline passed, or the peer's end
    /// closed. Pending output is written first, except after a deadline.
    pub fn wants_close_transport(&self) -> bool {
        if self.abort {
            return true;
        }
        if !self.output.is_empty() {
            return false;
        }
        if self.eof && self.read_closed {
            return true;
        }
        if self.failed {
            return true;
        }
        self.received_close && self.sent_close && self.role == Role::Server
    }

    /// True once both close frames were exchanged, or the connection failed or ended.
    pub fn is_closed(&self) -> bool {
        (self.sent_close && self.received_close)
            || self.abort
            || self.failed
            || (self.eof && self.read_closed)
    }

    /// True after our close frame was queued: nothing more can be sent.
    pub fn is_close_sent(&self) -> bool {
        self.sent_close
    }

    /// The earliest deadline the adapter should wake up for, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.abort {
            return None;
        }
        let mut earliest = self.timers.close;
        let mut consider = |deadline: Option<Instant>| {
            if let Some(d) = deadline {
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
            }
        };
        if !self.sent_close {
            if let Some((interval, _)) = self.config.keepalive {
                match self.timers.ping_deadline {
                    Some(deadline) => consider(Some(deadline)),
                    None => consider(self.timers.last_frame.map(|t| t + interval)),
                }
            }
            if let Some(idle) = self.config.idle_timeout {
                consider(self.timers.last_data.map(|t| t + idle));
            }
        }
        earliest
    }

    /// Runs the deadlines that have passed at `now`: sends a keepalive ping, fails a
    /// connection whose peer stopped answering, gives up on a close handshake.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_timers(now);
        if self.abort {
            return;
        }
        if let Some(deadline) = self.timers.close {
            if now >= deadline {
                self.timers.close = None;
                self.abort = true;
                self.read_closed = true;
                if self.sent_close && !self.received_close && !self.failed {
                    self.pending_error = Some(Error::Timeout(TimeoutKind::CloseHandshake));
                }
                return;
            }
        }
        if self.sent_close {
            return;
        }
        if let Some((interval, timeout)) = self.config.keepalive {
            match self.timers.ping_deadline {
                Some(deadline) if now >= deadline => {
                    self.abort = true;
                    self.read_closed = true;
                    self.failed = true;
                    self.pending_error = Some(Error::Timeout(TimeoutKind::Keepalive));
                    return;
                }
                Some(_) => {}
                None => {
                    if self.timers.last_frame.is_some_and(|t| now >= t + interval) {
                        self.write_frame(OpCode::Ping, true, Bytes::from_static(b"keepalive"));
                        self.timers.ping_deadline = Some(now + timeout);
                    }
                }
            }
        }
        if let Some(idle) = self.config.idle_timeout {
            if self.timers.last_data.is_some_and(|t| now >= t + idle) {
                if let Some(Err(error)) = self.fail(Error::Timeout(TimeoutKind::Idle), now) {
                    self.pending_error = Some(error);
                }
            }
        }
    }
}

/// Parses and checks a received close payload (RFC 6455 sections 5.5.1 and 7.4).
fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseFrameTooShort.into()),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
            if !code.is_allowed_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.as_u16()).into());
            }
            let reason = Utf8Bytes::try_from(Bytes::copy_from_slice(reason)).map_err(|_| {
                ProtocolError::InvalidUtf8 {
                    in_close_reason: true,
                }
            })?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// A text or binary message encoded once, to be sent to many connections without
/// encoding or copying it again (broadcast). Servers queue the shared frame bytes;
/// clients, which must mask each frame with a fresh key, encode it per connection.
///
/// ```
/// use duplex_core::{Config, Connection, Message, PreparedMessage, Role};
///
/// let prepared = PreparedMessage::new(Message::text("tick"))?;
/// let mut a = Connection::new(Role::Server, Config::default());
/// let mut b = Connection::new(Role::Server, Config::default());
/// a.send_prepared(&prepared)?;
/// b.send_prepared(&prepared)?;
/// assert_eq!(a.pending_output(), b.pending_output());
/// assert_eq!(a.pending_output(), &[0x81, 4, b't', b'i', b'c', b'k']);
/// # Ok::<(), duplex_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    message: Message,
    frame: Bytes,
    /// The frame compressed with a fresh context, made the first time a connection with
    /// permessage-deflate needs it, then shared by all of them.
    compressed: Arc<OnceLock<Bytes>>,
}

impl PreparedMessage {
    /// Encodes `message` (text or binary) as one unmasked frame.
    pub fn new(message: Message) -> Result<Self, Error> {
        let opcode = match &message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
            _ => return Err(UsageError::NotDataMessage.into()),
        };
        let payload = message.payload();
        let mut frame = BytesMut::with_capacity(payload.len() + duplex_codec::MAX_HEADER_LEN);
        duplex_codec::encode_frame(
            &FrameHeader::new(opcode, payload.len() as u64),
            payload,
            &mut frame,
        );
        Ok(Self {
            message,
            frame: frame.freeze(),
            compressed: Arc::default(),
        })
    }

    /// The frame with RSV1 and a payload compressed from an empty context, which any
    /// peer that negotiated permessage-deflate with a 15-bit server window can inflate.
    fn compressed_frame(&self) -> Bytes {
        self.compressed
            .get_or_init(|| {
                let opcode = match self.message {
                    Message::Text(_) => OpCode::Text,
                    _ => OpCode::Binary,
                };
                let payload = deflate::compress_fresh(self.message.payload(), 6);
                let mut header = FrameHeader::new(opcode, payload.len() as u64);
                header.rsv1 = true;
                let mut frame =
                    BytesMut::with_capacity(payload.len() + duplex_codec::MAX_HEADER_LEN);
                duplex_codec::encode_frame(&header, &payload, &mut frame);
                frame.freeze()
            })
            .clone()
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The encoded server frame, shared by every connection it is sent to.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}
