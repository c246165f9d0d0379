//! The protocol engine: bytes in, events out; messages in, bytes out.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use duplex_codec::{
    Decoded, Decoder, FrameHeader, MAX_CONTROL_PAYLOAD, Masking, OpCode, encode_header,
};

use crate::budget::{BUDGET_CHECK, BUDGET_FREE_PER_CONNECTION, Seat};
use crate::close::{CloseCode, CloseFrame};
use crate::config::EngineConfig;
use crate::config::MIN_WRITE_PROGRESS;
use crate::deflate::{self, Deflate, DeflateParams, InflateError};
use crate::error::{Error, Limit, LimitError, ProtocolError, TimeoutKind, UsageError};
use crate::lifecycle::{State, TimerKind, TimerTable};
use crate::mask_keys::next_key;
use crate::message::{Message, Utf8Bytes};
use crate::output::{Output, SHARE_THRESHOLD};
use crate::role::Role;
use crate::utf8::Utf8Validator;

/// The most a message's join buffer reserves ahead of the bytes that arrived.
const JOIN_RESERVE: usize = 64 << 10;

/// The payloads of frames shorter than this are copied out of the read buffer (by the
/// decoder), unless a payload is all of a buffer about its size, which is handed over
/// whole; longer ones are handed over without a copy (and keep at most about four times
/// their size alive with a 64 KiB read buffer).
const COPY_BELOW: usize = 16 << 10;

/// The largest frame payload the decoder may hold until whole while `assembled` bytes
/// of the message are in: no more than a frame may carry, nor than the message may
/// still grow by, so that holding never buffers past the message-size limit.
fn whole_frame_limit(config: &EngineConfig, assembled: usize) -> u64 {
    config
        .max_frame_size
        .min(config.max_message_size.saturating_sub(assembled)) as u64
}

/// The most [`Connection::input_wanted`] asks for beyond what is already buffered while
/// a whole frame is awaited: room grows at most geometrically with the bytes that
/// actually arrived, so a header announcing a large frame reserves nothing by itself.
const AWAIT_STEP: usize = 64 << 10;

/// The most one call inflates before the memory it took is counted in the budget.
pub(crate) const INFLATE_STEP: usize = 1 << 20;

/// Pongs that may wait unsent in the output before later pings collapse into one.
const MAX_QUEUED_PONGS: usize = 16;

/// What a driver does with its transport next, as [`Connection::poll_transport`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportAction {
    /// Keep serving it: write pending output, read while
    /// [`wants_read`](Connection::wants_read), sleep until
    /// [`poll_timeout`](Connection::poll_timeout).
    Continue,
    /// Everything is written: shut down our sending side (TCP `shutdown(Write)`, a TLS
    /// close_notify, an HTTP/2 `END_STREAM`), then call
    /// [`shutdown_done`](Connection::shutdown_done). The linger deadline already runs,
    /// so a shutdown that never completes is bounded too.
    ShutdownWrite,
    /// Our side is shut down: keep reading and hand what arrives to the engine, which
    /// discards it (closing a socket with unread input makes the kernel send a reset,
    /// which can destroy the close frame just written). Ends at end of file, the linger
    /// time or its byte cap.
    Drain,
    /// Close the transport now and drop it. Final.
    Close,
}

/// How a failure ends a connection (see `Connection::fail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    /// A close frame for the error goes out before the transport closes; reported.
    Graceful,
    /// The transport closes now, nothing more is written; reported.
    Abort,
    /// As `Abort`, kept as the failure but not reported (the peer left after our own
    /// close: the end the application asked for).
    Silent,
}

/// What becomes of the transport: the engine's half of a connection's life that the
/// protocol state does not cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    /// In use for the protocol.
    Up,
    /// The connection is over and its output written: our side is being shut down.
    /// The linger deadline (`TimerKind::Linger`) bounds shutting down and draining
    /// together; `left` is what may still be discarded.
    ShuttingDown { left: u32 },
    /// Our side is shut down: input is discarded until end of file, the linger
    /// deadline, or `left` more bytes.
    Draining { left: u32 },
    /// To be closed now (a deadline passed, the peer left, the transport failed, or
    /// draining ended).
    Gone,
}

/// One WebSocket connection after the opening handshake, without any I/O.
///
/// The adapter feeds it what the socket read ([`receive`](Self::receive)), takes events
/// out ([`poll_event`](Self::poll_event)), writes what it asks
/// ([`pending_output`](Self::pending_output), [`consume_output`](Self::consume_output)),
/// runs its one timer ([`poll_timeout`](Self::poll_timeout),
/// [`handle_timeout`](Self::handle_timeout)) and shuts down, drains or closes the socket
/// as [`poll_transport`](Self::poll_transport) says (the driver contract; the loop a
/// driver writes is in the repository's ARCHITECTURE.md).
///
/// ```
/// use std::time::Instant;
/// use duplex_core::{EngineConfig, Connection, Message, Role};
///
/// let mut server = Connection::new(Role::Server, EngineConfig::default());
/// let mut client = Connection::new(Role::Client, EngineConfig::default());
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
    /// Shared by every connection built from the same `Arc`.
    config: Arc<EngineConfig>,
    decoder: Decoder,
    read_buf: BytesMut,
    /// The length on the wire of the last binary frame delivered whole, when it was
    /// large (at least `COPY_BELOW`; 0 otherwise): the room to read the next one into.
    frame_hint: usize,
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
    /// Where the connection is in its life; changed only by [`Connection::become`].
    state: State,
    /// Close frames and failures, allocated when the connection starts to end (most of
    /// a connection's life it is `None`, which keeps idle connections small).
    ending: Option<Box<Ending>>,
    /// What becomes of the transport (see [`Connection::poll_transport`]).
    wire: Wire,
    timers: TimerTable,
    /// The timers that count from the first time given were started.
    clock_started: bool,
    /// Output consumed when the write-stall deadline was last armed.
    consumed_at_stall_arm: u64,
    /// The output position where our last keepalive ping ends.
    keepalive_ping_end: u64,
    /// Output consumed when the pong wait was last armed.
    consumed_at_pong_wait: u64,
    /// Boxed: most connections never negotiate permessage-deflate.
    deflate: Option<Box<Deflate>>,
    /// This connection's place in its server's memory budget, taken the first time it
    /// holds more than `BUDGET_FREE_PER_CONNECTION`.
    seat: Option<Box<Seat>>,
}

/// What a connection keeps once it starts to end.
#[derive(Debug, Default)]
struct Ending {
    /// The close handshake was started here (by the application or a failure), not by
    /// the peer: sending afterwards is the application's mistake, not the peer's doing.
    closed_here: bool,
    /// The close frame we queued (code 1005 for an empty one).
    sent_close: Option<CloseFrame>,
    /// The close frame the peer sent (code 1005 for an empty one).
    received_close: Option<CloseFrame>,
    /// The output position where our close frame ends.
    close_frame_end: u64,
    /// What failed the connection, for every later call that needs to say so.
    failure: Option<Error>,
    /// An error not yet reported by [`Connection::poll_event`].
    pending_error: Option<Error>,
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

impl Connection {
    /// A connection for `role` with `config`, as the opening handshake left it. Pass an
    /// `Arc<EngineConfig>` to share one configuration among many connections (a server's
    /// usual case); an `EngineConfig` is wrapped in one of its own.
    pub fn new(role: Role, config: impl Into<Arc<EngineConfig>>) -> Self {
        let config = config.into();
        let masking = match role {
            Role::Server => Masking::Required,
            Role::Client => Masking::Forbidden,
        };
        let mut decoder = Decoder::new(masking, config.max_frame_size as u64);
        // Uncompressed binary frames are held until whole, so that a single-frame
        // message is one slice of the read buffer (no join, no copy); the memory is the
        // same as joining, and the buffer only grows with bytes that arrived. Only
        // frames that fit in what the message may still grow by are held: a larger one
        // is decoded at its header and fails the message-size limit before its payload.
        decoder.whole_binary_frames(whole_frame_limit(&config, 0));
        // A slice of the read buffer keeps the whole buffer alive for as long as the
        // application keeps the message: small payloads are copied out, so that stored
        // small messages cost their size, not a read buffer each.
        decoder.copy_payloads_below(COPY_BELOW);
        Self {
            role,
            decoder,
            config,
            read_buf: BytesMut::new(),
            frame_hint: 0,
            fresh_input: false,
            input_mark: None,
            eof: false,
            incoming: Incoming::default(),
            output: Output::default(),
            pending_pong: None,
            pongs_in_flight: VecDeque::new(),
            state: State::Open,
            ending: None,
            wire: Wire::Up,
            timers: TimerTable::default(),
            clock_started: false,
            consumed_at_stall_arm: 0,
            keepalive_ping_end: 0,
            consumed_at_pong_wait: 0,
            deflate: None,
            seat: None,
        }
    }

    /// What the connection keeps once it starts to end, allocated on first use.
    fn ending(&mut self) -> &mut Ending {
        self.ending.get_or_insert_with(Box::default)
    }

    /// Turns on permessage-deflate with the parameters the handshake negotiated. Call it
    /// before any frame is exchanged.
    pub fn enable_deflate(&mut self, params: DeflateParams) {
        self.deflate = Some(Box::new(Deflate::new(
            self.role,
            params,
            self.config.compression_level,
        )));
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
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    // ----- input -----

    /// Feeds bytes read from the transport. Nothing is parsed until
    /// [`poll_event`](Self::poll_event); call it until it returns `None` before reading
    /// more, so that the engine only ever holds a partial frame.
    pub fn receive(&mut self, data: &[u8]) {
        if !matches!(self.wire, Wire::Up) {
            self.discard(data.len());
            return;
        }
        if self.read_closed() || data.is_empty() {
            return;
        }
        if self.read_buf.is_empty() {
            // Room for the whole of a frame like the last large one, so that the rest of
            // it is appended instead of moving what is here.
            self.read_buf = BytesMut::with_capacity(data.len().max(self.frame_hint));
            self.read_buf.extend_from_slice(data);
        } else {
            self.read_buf.extend_from_slice(data);
        }
        self.fresh_input = true;
    }

    /// The engine's input buffer with spare room, for adapters that read from the
    /// transport straight into it (one copy fewer than [`receive`](Self::receive)):
    /// append what was read, e.g. with `tokio_util::io::poll_read_buf`, then call
    /// [`poll_event`](Self::poll_event). After the engine stopped reading (a close or a
    /// failure), what is appended is dropped at the next call.
    ///
    /// The room is [`input_wanted`](Self::input_wanted) when the engine is waiting for
    /// the rest of a frame (exactly that, so that the rest lands behind the part already
    /// here without moving it, and the read does not run into the next frame), and
    /// otherwise at least `min`, or more when the last frame was larger.
    pub fn input_buffer(&mut self, min: usize) -> &mut BytesMut {
        if self.read_closed() {
            self.discard_appended();
        }
        let wanted = self.input_wanted();
        let room = if self.decoder.awaiting() > 0 {
            wanted
        } else {
            wanted.max(min)
        };
        self.read_buf.reserve(room);
        // Keep the earliest mark: several reads may come before the next decode.
        let len = self.read_buf.len();
        self.input_mark.get_or_insert(len);
        &mut self.read_buf
    }

    /// How many bytes the engine would like to receive next, in one read and into its
    /// own buffer ([`input_buffer`](Self::input_buffer)): the rest of a binary frame it
    /// holds until whole (at most the bytes already buffered plus 64 KiB, so a large
    /// announced length reserves nothing by itself), or, with nothing buffered, the size
    /// of the last large frame. 0 when nothing is known: a small read, e.g. into an
    /// adapter's shared buffer passed to [`receive`](Self::receive), serves as well.
    pub fn input_wanted(&self) -> usize {
        if self.read_closed() {
            return 0;
        }
        match self.decoder.awaiting() {
            0 => self.frame_hint.saturating_sub(self.read_buf.len()),
            awaiting => {
                let step = self.read_buf.len().max(AWAIT_STEP);
                // Within the budget's room: one read may not double what we hold past it.
                let room = self.seat.as_ref().map_or(usize::MAX, |seat| {
                    let budget = seat.budget();
                    budget.allowance(seat.charged(), AWAIT_STEP, usize::MAX)
                });
                awaiting.min(step.min(room))
            }
        }
    }

    /// Tells the engine the transport reached end of file. A peer that leaves without
    /// completing the close handshake is reported as [`Error::PeerVanished`] once the
    /// bytes already received are processed.
    pub fn receive_eof(&mut self) {
        self.eof = true;
        if matches!(self.wire, Wire::ShuttingDown { .. } | Wire::Draining { .. }) {
            self.close_wire();
        }
    }

    /// The next event: a message, a ping, a pong, the peer's close, or the error that
    /// failed the connection (reported once; the close frame for it is already queued).
    /// `None` means more input is needed.
    ///
    /// `now` is the current time; keepalive and idle deadlines count from it.
    pub fn poll_event(&mut self, now: Instant) -> Option<Result<Message, Error>> {
        let event = self.next_event(now);
        // What was received and decoded is counted here; what sends queue, at the send
        // once past the free allowance.
        self.account();
        self.tick(now);
        event
    }

    fn next_event(&mut self, now: Instant) -> Option<Result<Message, Error>> {
        self.start_clock(now);
        if let Some(error) = self.ending.as_mut().and_then(|e| e.pending_error.take()) {
            return Some(Err(error));
        }
        self.note_input(now);
        if self.read_closed() && !self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        while !self.read_closed() {
            if let Some((rest, last)) = self.seat.as_mut().and_then(|s| s.stash.take()) {
                // Inflating waited for the budget: go on with it before decoding more.
                match self.compressed_piece(rest, last) {
                    Ok(Some(message)) => return Some(Ok(message)),
                    Ok(None) if self.is_inflate_paused() => return None,
                    Ok(None) => continue,
                    Err(error) => return self.fail(error, Fail::Graceful, now),
                }
            }
            let item = match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(item)) => item,
                Ok(None) => {
                    if self.read_buf.is_empty() {
                        self.read_buf = BytesMut::new();
                    }
                    break;
                }
                Err(error) => return self.fail(error.into(), Fail::Graceful, now),
            };
            match self.handle(item, now) {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(error) => return self.fail(error, Fail::Graceful, now),
            }
        }
        if self.eof && !self.read_closed() {
            // Bytes left over are part of a frame (a header, or a frame held until whole).
            let partial_frame = !std::mem::take(&mut self.read_buf).is_empty();
            return self.transport_ended(partial_frame, now);
        }
        None
    }

    /// The peer's side of the transport ended before its close frame.
    fn transport_ended(
        &mut self,
        partial_frame: bool,
        now: Instant,
    ) -> Option<Result<Message, Error>> {
        let mid_message =
            partial_frame || self.incoming.kind.is_some() || !self.decoder.is_at_frame_boundary();
        let error = Error::PeerVanished { mid_message };
        // Nobody is left to read a close frame: the transport closes at once. After our
        // own close it is the end the application asked for, though not a clean one:
        // kept as the failure, not reported as news.
        let how = if self.state == State::CloseSent {
            Fail::Silent
        } else {
            Fail::Abort
        };
        self.fail(error, how, now)
    }

    /// Starts the deadlines that count from the first time the engine is given.
    fn start_clock(&mut self, now: Instant) {
        if std::mem::replace(&mut self.clock_started, true) {
            return;
        }
        if self.state == State::Open {
            self.input_arrived(now);
        }
    }

    /// Counts bytes that arrived since the last timed call as a sign of life at `now`.
    fn note_input(&mut self, now: Instant) {
        if let Some(mark) = self.input_mark.take() {
            self.fresh_input |= self.read_buf.len() > mark;
        }
        if std::mem::take(&mut self.fresh_input) {
            self.input_arrived(now);
        }
    }

    /// Bytes arrived at `now`: the peer is alive and not idle.
    #[inline]
    fn input_arrived(&mut self, now: Instant) {
        if self.state != State::Open {
            return;
        }
        self.timers.clear(TimerKind::PongWait);
        if let Some((interval, _)) = self.config.keepalive {
            self.timers.set(TimerKind::Keepalive, now + interval);
        }
        if let Some(idle) = self.config.idle_timeout {
            self.timers.set(TimerKind::Idle, now + idle);
        }
    }

    /// Arms, moves or clears the write-stall deadline after a call that knows the time:
    /// it counts from when output became pending, or from the last time the transport
    /// took at least `MIN_WRITE_PROGRESS` of it.
    #[inline]
    fn tick(&mut self, now: Instant) {
        // Only a connection with a seat can have the budget deadline armed.
        if let Some(seat) = &self.seat {
            if seat.charged() > 0 || seat.stash.is_some() {
                if !self.timers.is_armed(TimerKind::Budget) {
                    self.timers.set(TimerKind::Budget, now + BUDGET_CHECK);
                }
            } else {
                self.timers.clear(TimerKind::Budget);
            }
        }
        if self.output.is_empty() || matches!(self.wire, Wire::Gone) {
            self.timers.clear(TimerKind::WriteStall);
        } else if let Some(timeout) = self.config.write_timeout {
            let consumed = self.output.consumed_position();
            if !self.timers.is_armed(TimerKind::WriteStall)
                || consumed - self.consumed_at_stall_arm >= MIN_WRITE_PROGRESS
            {
                self.timers.set(TimerKind::WriteStall, now + timeout);
                self.consumed_at_stall_arm = consumed;
            }
        }
    }

    /// Moves to `to`, the one place the state changes. Leaving `Open` ends keepalive
    /// and idle and arms the close deadline.
    fn become_(&mut self, to: State, now: impl Into<Option<Instant>>) {
        debug_assert!(
            self.state.may_become(to),
            "no transition {:?} -> {to:?}",
            self.state
        );
        if !self.state.may_become(to) {
            return;
        }
        if self.state == State::Open {
            self.timers.clear(TimerKind::Keepalive);
            self.timers.clear(TimerKind::PongWait);
            self.timers.clear(TimerKind::Idle);
            // Without a time the transport is being closed at once (`Wire::Gone`).
            if let Some(now) = now.into() {
                self.timers
                    .set(TimerKind::Close, now + self.config.close_timeout);
            }
        }
        self.state = to;
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
                self.start_data_frame(&header)?;
                let wire_len = header.encoded_len() + payload.len();
                self.frame_hint = if complete && wire_len >= COPY_BELOW && !header.rsv1 {
                    wire_len
                } else {
                    0
                };
                self.data_piece_then_limit(payload, complete)
            }
            Decoded::Continue { payload, complete } => {
                self.data_piece_then_limit(payload, complete)
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
                // The rest of an uncompressed binary message is held whole too.
                self.decoder
                    .whole_continuations(opcode == OpCode::Binary && !header.rsv1);
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

    /// A data piece, then the size of frames the decoder may hold whole from now on.
    fn data_piece_then_limit(
        &mut self,
        payload: Bytes,
        complete: bool,
    ) -> Result<Option<Message>, Error> {
        let result = self.data_piece(payload, complete);
        self.decoder
            .whole_binary_frames(whole_frame_limit(&self.config, self.incoming.len));
        result
    }

    fn data_piece(&mut self, payload: Bytes, complete: bool) -> Result<Option<Message>, Error> {
        if self.incoming.compressed {
            let last = complete && self.incoming.frame_fin;
            // The compressed length counts toward `max_message_size`.
            self.incoming.len += payload.len();
            return self.compressed_piece(payload, last);
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
        self.decoder.whole_continuations(false);
        let data = match incoming.first.take() {
            // The payload of one frame: copied out of the read buffer by the decoder
            // when small (or the buffer itself, when it held just this frame), a slice
            // of it when large.
            Some(data) => data,
            None => incoming.joined.split().freeze(),
        };
        Ok(Some(incoming.finish(data)))
    }

    /// A piece of a compressed message (`last`: the message's last): inflated within
    /// `max_decompressed_size`, and the inflated text validated as it comes out. With a
    /// memory budget, what inflating takes is counted every `INFLATE_STEP`; when the
    /// budget is exceeded the rest of the piece waits (`Seat::stash`) until it is not.
    fn compressed_piece(
        &mut self,
        mut payload: Bytes,
        last: bool,
    ) -> Result<Option<Message>, Error> {
        let limit = self.config.decompressed_limit();
        loop {
            let before = self.incoming.inflated.len();
            let pause_at = match &self.seat {
                Some(seat) => before.saturating_add(seat.budget().allowance(
                    seat.charged(),
                    BUDGET_FREE_PER_CONNECTION,
                    INFLATE_STEP,
                )),
                // Counted once the connection holds past its free allowance.
                None if self.config.budget(self.role).is_some() => {
                    before + BUDGET_FREE_PER_CONNECTION
                }
                None => usize::MAX,
            };
            let incoming = &mut self.incoming;
            let deflate = self
                .deflate
                .as_mut()
                .expect("RSV1 is only accepted with deflate");
            let paused = deflate
                .inflate(&payload, last, &mut incoming.inflated, limit, pause_at)
                .map_err(|error| match error {
                    InflateError::Corrupt(_) => {
                        Error::Protocol(ProtocolError::InvalidCompressedData)
                    }
                    InflateError::TooLarge(_) => Error::LimitExceeded(LimitError {
                        limit: Limit::DecompressedSize,
                        actual: limit as u64 + 1,
                        max: limit as u64,
                    }),
                })?;
            if incoming.kind == Some(OpCode::Text) {
                incoming
                    .utf8
                    .feed(&incoming.inflated[before..], last && paused.is_none())
                    .map_err(|_| ProtocolError::InvalidUtf8 {
                        in_close_reason: false,
                    })?;
            }
            let Some(consumed) = paused else {
                break;
            };
            payload.advance(consumed);
            self.account();
            if self
                .seat
                .as_ref()
                .is_some_and(|s| s.budget().must_pause(s.charged()))
            {
                if let Some(seat) = &mut self.seat {
                    seat.stash = Some((payload, last));
                }
                return Ok(None);
            }
        }
        if !last {
            return Ok(None);
        }
        let data = Bytes::from(std::mem::take(&mut self.incoming.inflated));
        Ok(Some(self.incoming.finish(data)))
    }

    fn handle_control(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        now: Instant,
    ) -> Result<Option<Message>, Error> {
        match opcode {
            OpCode::Ping => {
                if self.config.auto_pong && self.state == State::Open {
                    self.pending_pong = Some(payload.clone());
                    self.queue_pong();
                }
                Ok(Some(Message::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Message::Pong(payload))),
            _ => self.handle_close(&payload, now),
        }
    }

    fn handle_close(&mut self, payload: &[u8], now: Instant) -> Result<Option<Message>, Error> {
        let frame = parse_close_payload(payload)?;
        self.read_buf = BytesMut::new();
        self.ending().received_close = Some(
            frame
                .clone()
                .unwrap_or_else(|| CloseFrame::new(CloseCode::NoStatus, "")),
        );
        match self.state {
            State::Open => {
                // Answer with the same code (RFC 6455 section 5.5.1), after the pongs owed.
                let reply = frame
                    .as_ref()
                    .map(|f| CloseFrame::new(f.code, Utf8Bytes::default()));
                self.queue_pong();
                self.write_close(reply);
                self.become_(State::CloseReceived, now);
            }
            State::CloseSent => self.become_(State::Closed, now),
            State::CloseReceived | State::Closed | State::Failed => {}
        }
        Ok(Some(Message::Close(frame)))
    }

    /// The one way a connection fails (RFC 6455 section 7.1.7): no more frames are
    /// decoded, the failure is kept for every later call that needs to say so, and `how`
    /// decides the rest: a close frame for `error` (unless one was sent already) written
    /// before the transport closes, or the transport closed at once; reported once by
    /// [`poll_event`](Self::poll_event), which gets the report back from this call, or
    /// kept silent. Nothing happens to a connection that is over already.
    fn fail(
        &mut self,
        error: Error,
        how: Fail,
        now: impl Into<Option<Instant>>,
    ) -> Option<Result<Message, Error>> {
        if how != Fail::Graceful {
            self.close_wire();
        }
        self.read_buf = BytesMut::new();
        if self.state.is_terminal() {
            return None;
        }
        self.incoming = Incoming::default();
        self.pending_pong = None;
        if how == Fail::Graceful && self.state == State::Open && matches!(self.wire, Wire::Up) {
            self.write_close(error.close_frame());
            self.ending().closed_here = true;
        }
        self.ending().failure = Some(error.duplicate());
        self.become_(State::Failed, now);
        self.account();
        (how != Fail::Silent).then_some(Err(error))
    }

    /// [`fail`](Self::fail) outside `poll_event` (a deadline, a send, the transport):
    /// the report waits for its next call.
    fn fail_later(&mut self, error: Error, how: Fail, now: impl Into<Option<Instant>>) {
        if let Some(Err(error)) = self.fail(error, how, now) {
            self.ending().pending_error = Some(error);
        }
    }

    // ----- output -----

    /// Queues a message. Text and binary messages are refused with
    /// [`UsageError::WriteBufferFull`] while the unsent output is above
    /// `max_write_buffer`; pings and pongs are always accepted.
    ///
    /// Once the connection is no longer open, every send is refused, saying why:
    /// [`UsageError::SendAfterClose`] after our own close, [`Error::ConnectionClosed`]
    /// after the peer's, or the error that failed the connection. `Message::Close` is
    /// refused with [`UsageError::CloseNeedsTime`]: use [`close`](Self::close).
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        self.check_open()?;
        match message {
            Message::Text(text) => self.send_data(OpCode::Text, text.into_bytes(), true),
            Message::Binary(data) => self.send_data(OpCode::Binary, data, true),
            Message::Ping(data) => self.send_control(OpCode::Ping, data),
            Message::Pong(data) => self.send_control(OpCode::Pong, data),
            Message::Close(_) => Err(UsageError::CloseNeedsTime.into()),
        }
    }

    /// Queues a text or binary message without compressing it, even when
    /// permessage-deflate is on (for data that is already compressed, or latency).
    pub fn send_uncompressed(&mut self, message: Message) -> Result<(), Error> {
        self.check_open()?;
        match message {
            Message::Text(text) => self.send_data(OpCode::Text, text.into_bytes(), false),
            Message::Binary(data) => self.send_data(OpCode::Binary, data, false),
            _ => Err(UsageError::NotDataMessage.into()),
        }
    }

    /// Queues a message encoded once for many connections (see [`PreparedMessage`]).
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), Error> {
        self.check_open()?;
        let Some(frame) = self.shared_frame(prepared) else {
            return self.send(prepared.message.clone());
        };
        self.check_write_buffer()?;
        self.output.begin_frame();
        self.output.push_shared(frame);
        self.account_output();
        Ok(())
    }

    /// The bytes of `prepared` this connection can send as they are, or `None` when it
    /// must encode the message itself (a client masks each frame; automatic
    /// fragmentation; a peer whose window is smaller than the shared frame's).
    fn shared_frame(&mut self, prepared: &PreparedMessage) -> Option<Bytes> {
        if self.role == Role::Client || self.config.send_frame_size.is_some() {
            return None;
        }
        match &mut self.deflate {
            Some(deflate)
                if deflate.can_compress()
                    && prepared.message.payload().len() >= self.config.compression_threshold =>
            {
                if !deflate.accepts_shared_frames() {
                    return None;
                }
                deflate.forget_send_context();
                Some(prepared.compressed_frame(self.config.compression_level))
            }
            _ => Some(prepared.frame.clone()),
        }
    }

    /// Queues a message the sender cannot hold back (a broadcast, a message from
    /// another thread): accepted above `max_write_buffer`, up to
    /// `write_buffer_hard_limit`. A data message that would take the output past the
    /// hard limit fails the connection instead (`LimitExceeded` with
    /// [`Limit::WriteBuffer`]; the transport is to be closed at once), so a peer that
    /// never reads costs at most the hard limit.
    pub fn send_forced(&mut self, message: Message) -> Result<(), Error> {
        self.check_open()?;
        match message {
            Message::Text(text) => {
                self.check_hard_limit(text.len())?;
                self.queue_data(OpCode::Text, text.into_bytes(), true);
                Ok(())
            }
            Message::Binary(data) => {
                self.check_hard_limit(data.len())?;
                self.queue_data(OpCode::Binary, data, true);
                Ok(())
            }
            other => self.send(other),
        }
    }

    /// [`send_prepared`](Self::send_prepared) with the hard-limit rule of
    /// [`send_forced`](Self::send_forced).
    pub fn send_prepared_forced(&mut self, prepared: &PreparedMessage) -> Result<(), Error> {
        self.check_open()?;
        let Some(frame) = self.shared_frame(prepared) else {
            return self.send_forced(prepared.message.clone());
        };
        self.check_hard_limit(frame.len())?;
        self.output.begin_frame();
        self.output.push_shared(frame);
        self.account_output();
        Ok(())
    }

    /// True while the adapter should read from the transport: the output is within
    /// `max_write_buffer`. Above it the peer is not reading our replies; reading more
    /// of its requests would only queue more.
    #[inline]
    pub fn wants_read(&self) -> bool {
        match self.wire {
            Wire::Up => {
                matches!(self.state, State::Open | State::CloseSent)
                    && self.output.len() <= self.config.max_write_buffer
                    && !self.is_input_paused()
            }
            Wire::Draining { .. } => true,
            Wire::ShuttingDown { .. } | Wire::Gone => false,
        }
    }

    /// True while the server's [`MemoryBudget`](crate::MemoryBudget) is exceeded and
    /// this connection holds at least its fair share of it for a message in progress:
    /// the adapter stops reading it (backpressure; [`wants_read`](Self::wants_read) says
    /// the same), and the engine looks at the budget again by [`TimerKind::Budget`],
    /// which [`poll_timeout`](Self::poll_timeout) includes.
    #[inline]
    pub fn is_input_paused(&self) -> bool {
        self.seat.as_ref().is_some_and(|seat| {
            seat.charged() > 0
                && (seat.stash.is_some()
                    || self.incoming.kind.is_some()
                    || !self.read_buf.is_empty()
                    || !self.decoder.is_at_frame_boundary())
                && seat.budget().must_pause(seat.charged())
        })
    }

    /// True when the connection has a place in a memory budget.
    #[cfg(test)]
    pub(crate) fn has_seat(&self) -> bool {
        self.seat.is_some()
    }

    /// Inflating a message waits for the budget.
    fn is_inflate_paused(&self) -> bool {
        self.seat.as_ref().is_some_and(|seat| seat.stash.is_some())
    }

    /// What this connection holds that its peer can make grow: unparsed input, the
    /// message being assembled or inflated, and queued output: the buffers' capacities,
    /// what the allocator gave (growing one by doubling holds old and new at once).
    pub(crate) fn held(&self) -> usize {
        let stash = self
            .seat
            .as_ref()
            .and_then(|seat| seat.stash.as_ref())
            .map_or(0, |(rest, _)| rest.len());
        self.buffers_held() + stash
    }

    /// [`held`](Self::held) but for input kept while inflating waits.
    #[inline]
    fn buffers_held(&self) -> usize {
        self.read_buf.capacity()
            + self.incoming.first.as_ref().map_or(0, Bytes::len)
            + self.incoming.joined.capacity()
            + self.incoming.inflated.capacity()
            + self.output.len()
    }

    /// Counts what the connection holds past its free allowance in its memory budget
    /// (a few loads and a comparison while it holds little).
    #[inline]
    fn account(&mut self) {
        if self.seat.is_some() {
            return self.account_held(self.held());
        }
        // Without a seat there is no stash: the buffers alone.
        let held = self.buffers_held();
        if held > BUDGET_FREE_PER_CONNECTION {
            self.account_held(held);
        }
    }

    /// [`account`](Self::account) for a connection past its allowance, or one that was.
    #[inline(never)]
    fn account_held(&mut self, held: usize) {
        let charge = held.saturating_sub(BUDGET_FREE_PER_CONNECTION);
        match &mut self.seat {
            Some(seat) if seat.charged() != charge => seat.set_charge(charge),
            Some(_) => {}
            None if charge > 0 => {
                if let Some(budget) = self.config.budget(self.role) {
                    let mut seat = Box::new(Seat::new(budget));
                    seat.set_charge(charge);
                    self.seat = Some(seat);
                }
            }
            None => {}
        }
    }

    /// Sheds this connection, elected as the largest holder of an exceeded budget: what
    /// its peer made it hold is dropped (the message in progress, unparsed input, queued
    /// messages not yet started) and it fails with 1013.
    fn shed(&mut self, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        let held = self.held();
        let Some(seat) = &mut self.seat else {
            return;
        };
        seat.stash = None;
        let budget = seat.budget().clone();
        budget.count_shed();
        if self.state == State::Open {
            let end = self.output.cut_after_front_frame();
            self.pongs_in_flight.retain(|pong_end| *pong_end <= end);
        }
        let error = Error::LimitExceeded(LimitError {
            limit: Limit::MemoryBudget,
            actual: held as u64,
            max: budget.limit() as u64,
        });
        self.fail_later(error, Fail::Graceful, now);
    }

    /// True when the adapter should write before handling more input: half the unsent
    /// pongs a ping burst may queue are waiting (so each ping of a burst gets its pong
    /// without a write per ping), or the output passed `max_write_buffer`.
    pub fn wants_flush(&self) -> bool {
        self.pongs_in_flight.len() >= MAX_QUEUED_PONGS / 2
            || self.output.len() > self.config.max_write_buffer
    }

    /// Starts the close handshake with `frame` (or an empty close frame) at `now`, which
    /// arms the close deadline. Nothing can be sent afterwards. Calling it again, or
    /// once the peer's close arrived or the connection failed, does nothing.
    pub fn close(&mut self, frame: Option<CloseFrame>, now: Instant) -> Result<(), Error> {
        if let Some(frame) = &frame {
            frame.check()?;
        }
        self.start_clock(now);
        if self.state != State::Open {
            return Ok(());
        }
        self.queue_pong();
        self.write_close(frame);
        self.ending().closed_here = true;
        self.become_(State::CloseSent, now);
        self.tick(now);
        Ok(())
    }

    /// Starts the close handshake like [`close`](Self::close), overtaking what is
    /// queued: whole frames not yet started (messages, pings, pongs) are dropped and
    /// only the rest of the frame being written goes before the close frame. For a
    /// slow consumer that is kicked: it gets the close frame and its code as soon as the
    /// socket takes a few bytes, instead of after the output it is not reading (or not
    /// at all, when the close deadline ends the connection first).
    pub fn close_now(&mut self, frame: Option<CloseFrame>, now: Instant) -> Result<(), Error> {
        if let Some(frame) = &frame {
            frame.check()?;
        }
        if self.state == State::Open {
            let end = self.output.cut_after_front_frame();
            self.pongs_in_flight.retain(|pong_end| *pong_end <= end);
            self.pending_pong = None;
            self.account();
        }
        self.close(frame, now)
    }

    /// `Ok` while messages may be sent; otherwise the error that says why not (the
    /// same one whatever the method: `send`, `send_prepared`, `close`...).
    #[inline]
    pub fn check_open(&self) -> Result<(), Error> {
        match self.state {
            // The peer's side ended (or was reset) and the engine has not decoded up to
            // it yet: nobody will read what we would send.
            State::Open if self.eof => Err(Error::PeerVanished { mid_message: false }),
            State::Open => Ok(()),
            State::Failed => Err(self.failure().unwrap_or(Error::ConnectionClosed)),
            _ if self.ending.as_ref().is_some_and(|e| e.closed_here) => {
                Err(UsageError::SendAfterClose.into())
            }
            _ => Err(Error::ConnectionClosed),
        }
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
        self.queue_data(opcode, payload, may_compress);
        Ok(())
    }

    /// Fails the connection if queuing `len` more bytes would take the output past the
    /// hard limit (one message is always accepted into an empty output).
    fn check_hard_limit(&mut self, len: usize) -> Result<(), Error> {
        let buffered = self.output.len();
        let limit = self.config.write_buffer_hard_limit;
        if buffered == 0 || buffered.saturating_add(len) <= limit {
            return Ok(());
        }
        let error = Error::LimitExceeded(LimitError {
            limit: Limit::WriteBuffer,
            actual: buffered.saturating_add(len) as u64,
            max: limit as u64,
        });
        // The peer reads nothing: nothing more is written, the transport closes now.
        // The sender gets the error, and so does the next `poll_event` (the failure is
        // the connection's, reported once to whoever reads it).
        self.fail_later(error.duplicate(), Fail::Abort, None);
        Err(error)
    }

    fn queue_data(&mut self, opcode: OpCode, payload: Bytes, may_compress: bool) {
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
            return;
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

    /// Counts what a send queued, once the output passes the free allowance (a send
    /// into a small output costs one comparison).
    #[inline]
    fn account_output(&mut self) {
        if self.output.len() > BUDGET_FREE_PER_CONNECTION || self.seat.is_some() {
            self.account();
        }
    }

    fn write_frame_rsv1(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Bytes) {
        self.output.begin_frame();
        let mut header = FrameHeader::new(opcode, payload.len() as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        let staged_payload = if self.role == Role::Client || payload.len() < SHARE_THRESHOLD {
            payload.len()
        } else {
            0
        };
        let staging = self
            .output
            .staging(header.encoded_len() + 4 + staged_payload);
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
        self.account_output();
    }

    /// Queues our close frame and remembers it (an empty one as code 1005).
    fn write_close(&mut self, frame: Option<CloseFrame>) {
        let payload = match &frame {
            None => Bytes::new(),
            Some(frame) => {
                let mut body = Vec::with_capacity(2 + frame.reason.len());
                body.extend_from_slice(&frame.code.as_u16().to_be_bytes());
                body.extend_from_slice(frame.reason.as_bytes());
                Bytes::from(body)
            }
        };
        self.write_frame(OpCode::Close, true, payload);
        let end = self.output.end_position();
        self.ending().close_frame_end = end;
        self.ending().sent_close =
            Some(frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NoStatus, "")));
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
        if self.is_close_sent() || self.pongs_in_flight.len() >= MAX_QUEUED_PONGS {
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
        if self.output.is_empty()
            || self.output.consumed_position() - self.consumed_at_stall_arm >= MIN_WRITE_PROGRESS
        {
            // Written out, or moving: the write-stall deadline starts again from the next
            // call that takes the time (adapters make one after every write attempt).
            self.timers.clear(TimerKind::WriteStall);
        }
        if self.state == State::CloseReceived
            && self
                .ending
                .as_ref()
                .is_some_and(|e| self.output.consumed_position() >= e.close_frame_end)
        {
            // Our reply left: both close frames were exchanged. No time is needed: the
            // close deadline armed when the peer's close arrived keeps running.
            self.become_(State::Closed, None);
        }
        if self.seat.is_some() {
            // Written output is given back at once; growth waits for a timed call.
            self.account();
        }
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
        self.account();
    }

    /// Received bytes the engine holds: unparsed input plus the message being assembled.
    /// Bounded by the limits: at most `max_message_size` plus one read.
    pub fn buffered_input(&self) -> usize {
        self.read_buf.len() + self.incoming.len + self.incoming.inflated.len()
    }

    // ----- state and time -----

    /// Where the connection is in its life (see [`State`] for the diagram).
    pub fn state(&self) -> State {
        self.state
    }

    /// The close frame we sent (or queued), if any; an empty one has code 1005.
    pub fn sent_close_frame(&self) -> Option<&CloseFrame> {
        self.ending.as_ref()?.sent_close.as_ref()
    }

    /// Our close frame once the transport took all of it (what the peer can have
    /// read); `None` while it is queued, or when none was sent. For logs and counters
    /// that must not claim a close the peer never got.
    pub fn written_close_frame(&self) -> Option<&CloseFrame> {
        let ending = self.ending.as_ref()?;
        let frame = ending.sent_close.as_ref()?;
        (self.output.consumed_position() >= ending.close_frame_end).then_some(frame)
    }
    /// The close frame the peer sent, if it arrived; an empty one has code 1005.
    pub fn received_close_frame(&self) -> Option<&CloseFrame> {
        self.ending.as_ref()?.received_close.as_ref()
    }

    /// The error that failed the connection, if it failed (the same one
    /// [`poll_event`](Self::poll_event) reported).
    pub fn failure(&self) -> Option<Error> {
        self.ending.as_ref()?.failure.as_ref().map(Error::duplicate)
    }

    /// What the driver does with its transport next: keep serving it, shut down its
    /// sending side, drain it, or close it now. The engine alone decides when a
    /// connection's transport ends: a server after the close handshake, a client once
    /// the server closed TCP (or the close deadline passed), anyone after a failure,
    /// each once the output is written; then the linger policy
    /// ([`Linger`](crate::Linger)): shut down, drain until end of file, the linger time or
    /// its byte cap. At once when a deadline passed, the transport failed or the peer
    /// left without a close frame. Its deadlines are in
    /// [`poll_timeout`](Self::poll_timeout).
    pub fn poll_transport(&mut self, now: Instant) -> TransportAction {
        match self.wire {
            Wire::Up if self.is_transport_ending() => {
                let linger = self.config.linger;
                if self.eof || linger.time.is_zero() || linger.max_bytes == 0 {
                    self.close_wire();
                    return TransportAction::Close;
                }
                self.wire = Wire::ShuttingDown {
                    left: u32::try_from(linger.max_bytes).unwrap_or(u32::MAX),
                };
                self.timers.set(TimerKind::Linger, now + linger.time);
                TransportAction::ShutdownWrite
            }
            Wire::Up => TransportAction::Continue,
            Wire::ShuttingDown { .. } => TransportAction::ShutdownWrite,
            Wire::Draining { .. } => {
                self.discard_appended();
                if matches!(self.wire, Wire::Gone) {
                    TransportAction::Close
                } else {
                    TransportAction::Drain
                }
            }
            Wire::Gone => TransportAction::Close,
        }
    }

    /// Tells the engine that our sending side was shut down as
    /// [`TransportAction::ShutdownWrite`] asked: draining starts (or the transport is
    /// to be closed, if its input already ended).
    pub fn shutdown_done(&mut self) {
        if let Wire::ShuttingDown { left } = self.wire {
            self.wire = Wire::Draining { left };
            if self.eof {
                self.close_wire();
            }
        }
    }

    /// A cheap check without the time, for hot paths: true when
    /// [`poll_transport`](Self::poll_transport) would say anything but
    /// [`TransportAction::Continue`]: the protocol is done with the transport (nothing
    /// left to write, nothing left to wait for from the peer) or it is ending already.
    #[inline]
    pub fn is_transport_ending(&self) -> bool {
        if !matches!(self.wire, Wire::Up) {
            return true;
        }
        if !self.output.is_empty() {
            return false;
        }
        match self.state {
            State::Failed => true,
            State::Closed => self.role == Role::Server || self.eof,
            State::Open | State::CloseSent | State::CloseReceived => self.eof && self.read_closed(),
        }
    }

    /// True when the transport is to be closed at once, without a graceful shutdown.
    #[cfg(test)]
    pub(crate) fn is_wire_gone(&self) -> bool {
        matches!(self.wire, Wire::Gone)
    }

    /// No more frames are decoded: the peer's close arrived, the connection failed, or
    /// the transport is ending. Derived from the state, never set by hand.
    #[inline]
    fn read_closed(&self) -> bool {
        !matches!(self.wire, Wire::Up) || !matches!(self.state, State::Open | State::CloseSent)
    }

    /// Nothing more is read or written: the transport is to be closed now.
    fn close_wire(&mut self) {
        self.wire = Wire::Gone;
        self.read_buf = BytesMut::new();
        self.timers.clear(TimerKind::Linger);
    }

    /// Counts `n` bytes that arrived while draining (or after reading stopped) as
    /// discarded; the transport is closed once the linger policy's byte cap is reached.
    fn discard(&mut self, n: usize) {
        if let Wire::ShuttingDown { left, .. } | Wire::Draining { left, .. } = &mut self.wire {
            *left = left.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
            if *left == 0 {
                self.close_wire();
            }
        }
    }

    /// Discards what a driver appended to [`input_buffer`](Self::input_buffer) while no
    /// frame is decoded any more.
    fn discard_appended(&mut self) {
        let n = self.read_buf.len();
        self.read_buf.clear();
        self.input_mark = None;
        self.discard(n);
    }

    /// Tells the engine that the transport failed (a write or read error). A reset
    /// (`ConnectionReset`, `ConnectionAborted`, `BrokenPipe`) is the peer leaving, as an
    /// end of file is: what it sent before is still delivered by
    /// [`poll_event`](Self::poll_event), then [`Error::PeerVanished`] (no error at all
    /// after the close handshake), and what we queued is dropped, since nobody will read
    /// it. Any other error fails the connection with [`Error::Io`] at once. Either way
    /// the failure is reported once by `poll_event` and by every later send, and
    /// [`poll_transport`](Self::poll_transport) says to close the transport.
    pub fn transport_failed(&mut self, error: &std::io::Error, now: Instant) {
        if !matches!(self.wire, Wire::Up) || self.state.is_terminal() {
            // Errors while closing a transport that is done anyway do not matter.
            self.close_wire();
            return;
        }
        match error.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => {
                let unsent = self.output.len();
                self.output.consume(unsent);
                self.eof = true;
            }
            kind => {
                let error = Error::Io(std::io::Error::new(kind, error.to_string()));
                self.fail_later(error, Fail::Abort, now);
            }
        }
    }

    /// True once the connection is over: closed cleanly, or failed.
    pub fn is_closed(&self) -> bool {
        self.state.is_terminal()
    }

    /// True after our close frame was queued: nothing more can be sent.
    pub fn is_close_sent(&self) -> bool {
        self.ending.as_ref().is_some_and(|e| e.sent_close.is_some())
    }

    /// The earliest deadline the adapter should wake up for, if any. Adapters sleep
    /// until it and then call [`handle_timeout`](Self::handle_timeout).
    ///
    /// The write-stall deadline is armed by the calls that take the time
    /// ([`poll_event`](Self::poll_event), [`handle_timeout`](Self::handle_timeout),
    /// [`close`](Self::close)): an adapter calls one of them after queuing or writing
    /// output and before asking for the deadline. `handle_timeout(now)` is cheap and
    /// may be called at any time for that.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.wire, Wire::Gone) {
            return None;
        }
        self.timers.earliest()
    }

    /// Runs the deadlines that have passed at `now` (sends a keepalive ping, fails a
    /// connection whose peer stopped answering or reading, gives up on a close
    /// handshake), then arms the write-stall deadline if output is pending.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_clock(now);
        // Bytes received but not yet decoded are signs of life too.
        self.note_input(now);
        while !matches!(self.wire, Wire::Gone) {
            let Some(kind) = self.timers.expired(now) else {
                break;
            };
            self.timers.clear(kind);
            self.timer_fired(kind, now);
        }
        if self.seat.is_some() {
            self.account();
        }
        self.tick(now);
    }

    fn timer_fired(&mut self, kind: TimerKind, now: Instant) {
        match kind {
            TimerKind::Keepalive => {
                if let (State::Open, Some((_, timeout))) = (self.state, self.config.keepalive) {
                    self.write_frame(OpCode::Ping, true, Bytes::from_static(b"keepalive"));
                    self.keepalive_ping_end = self.output.end_position();
                    self.consumed_at_pong_wait = self.output.consumed_position();
                    self.timers.set(TimerKind::PongWait, now + timeout);
                }
            }
            TimerKind::PongWait => {
                let consumed = self.output.consumed_position();
                let ping_unsent = consumed < self.keepalive_ping_end;
                let reading = consumed > self.consumed_at_pong_wait;
                if let (true, true, Some((_, timeout))) =
                    (ping_unsent, reading, self.config.keepalive)
                {
                    // The ping still waits behind output the peer is reading: it cannot
                    // answer what it has not read yet, and it is alive.
                    self.consumed_at_pong_wait = consumed;
                    self.timers.set(TimerKind::PongWait, now + timeout);
                    return;
                }
                self.fail_later(Error::Timeout(TimeoutKind::Keepalive), Fail::Abort, now);
            }
            TimerKind::Idle => {
                // A graceful failure: our 1001 goes out, bounded by the close deadline.
                self.fail_later(Error::Timeout(TimeoutKind::Idle), Fail::Graceful, now);
            }
            TimerKind::WriteStall => {
                let progress = self.output.consumed_position() - self.consumed_at_stall_arm;
                if self.output.is_empty() {
                    return;
                }
                if progress >= MIN_WRITE_PROGRESS {
                    // Slow but moving: count again from here.
                    self.consumed_at_stall_arm = self.output.consumed_position();
                    if let Some(timeout) = self.config.write_timeout {
                        self.timers.set(TimerKind::WriteStall, now + timeout);
                    }
                    return;
                }
                self.fail_later(Error::Timeout(TimeoutKind::WriteStall), Fail::Abort, now);
            }
            TimerKind::Linger => self.close_wire(),
            TimerKind::Budget => {
                let Some(seat) = &self.seat else {
                    return;
                };
                if !seat.is_doomed() {
                    seat.budget().review(now);
                }
                if seat.is_doomed() {
                    self.shed(now);
                }
            }
            TimerKind::Close => {
                self.close_wire();
                match self.state {
                    State::CloseSent | State::CloseReceived => {
                        let error = Error::Timeout(TimeoutKind::CloseHandshake);
                        self.fail_later(error, Fail::Abort, now);
                    }
                    // A client whose server did not close TCP, or a failed connection
                    // whose close frame could not be written: only the transport is left.
                    State::Open | State::Closed | State::Failed => {}
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
/// use duplex_core::{EngineConfig, Connection, Message, PreparedMessage, Role};
///
/// let prepared = PreparedMessage::new(Message::text("tick"))?;
/// let mut a = Connection::new(Role::Server, EngineConfig::default());
/// let mut b = Connection::new(Role::Server, EngineConfig::default());
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
    /// peer that negotiated permessage-deflate with a 15-bit server window can inflate;
    /// compressed once, at the `compression_level` of the first connection that needs it.
    fn compressed_frame(&self, level: u32) -> Bytes {
        self.compressed
            .get_or_init(|| {
                let opcode = match self.message {
                    Message::Text(_) => OpCode::Text,
                    _ => OpCode::Binary,
                };
                let payload = deflate::compress_fresh(self.message.payload(), level);
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
