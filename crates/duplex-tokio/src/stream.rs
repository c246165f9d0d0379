//! `WebSocketStream`: the engine driven over an async byte stream.
//!
//! Both halves share one [`Shared`] behind a mutex held only inside a `poll`. Whichever
//! half is about to wait drives the whole connection: it runs the engine's deadlines,
//! writes what is owed, reads (the writer only a bounded amount, queued for the reader),
//! and closes the transport when the engine says so. A half that does not wait only
//! checks that the timer has not fired (an atomic load), so a task that only sends still
//! sees keepalive, idle, write-stall and close deadlines on time, and a message costs no
//! clock reading or timer update beyond the one the engine's `poll_event` takes.
//!
//! The timer is armed no later than the engine's earliest deadline and moved only when
//! that deadline comes earlier; the keepalive deadline, which moves later with every
//! read, is looked at again when the timer fires (one early wake-up per keepalive
//! interval).

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use duplex_core::{
    CloseCode, CloseFrame, Connection, DeflateParams, Error, Message, Role, TransportAction,
};
use futures::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Bytes read from the socket per read call, into the engine's input buffer.
const READ_CHUNK: usize = 64 << 10;

/// Slices per vectored write: a batch of echoed 1 KiB messages is a header and a shared
/// payload each, so 64 slices take 32 of them in one call.
const MAX_SLICES: usize = 64;

/// Slices tried first (filling a long array costs more than a one-frame write).
const FEW_SLICES: usize = 8;

/// Output the reader lets accumulate while it still has events to deliver; past it, it
/// writes before delivering more.
const WRITE_BATCH: usize = 64 << 10;

/// Events the writer half may decode ahead for the reader (it stops earlier, after one
/// data message), so that a task that only sends still sees pings and the peer's close
/// without holding more than one message for the reader.
const MAX_QUEUED_EVENTS: usize = 64;

const READER: usize = 0;
const WRITER: usize = 1;

/// A WebSocket connection over any `AsyncRead + AsyncWrite` stream.
///
/// It is a [`Stream`] of received messages and a [`Sink`] of messages to send, and has
/// plain async methods: [`recv`](Self::recv), [`send`](Self::send),
/// [`close`](Self::close). Pings are answered and the close handshake is completed by
/// the engine; [`split`](Self::split) gives halves for two tasks.
///
/// Every method drives the connection's deadlines (keepalive, idle, write stall, close;
/// see `duplex_core::EngineConfig`): a task that only sends to a peer that stopped reading
/// gets [`Error::Timeout`] from `send` within the write timeout, and
/// [`close`](Self::close) returns within the close timeout.
///
/// Cancel safety: [`recv`](Self::recv) (and `StreamExt::next`) is cancel-safe: a
/// `recv` dropped inside `tokio::select!` loses no message, because bytes read are
/// handed to the engine before the call returns and messages are assembled there.
/// [`send`](Self::send) is not: if it is dropped after the message was queued but
/// before the flush finished, the message is still sent by the next write or flush, but
/// the caller cannot tell. [`close`](Self::close) may be called again after a cancel.
///
/// Dropping the stream closes the transport at once, without a close handshake.
pub struct WebSocketStream<S> {
    reader: WsReader<S>,
    writer: WsWriter<S>,
}

/// The receiving half of a [`WebSocketStream`], from [`WebSocketStream::split`].
///
/// Dropping it starts the close handshake (1001, going away): nobody would read the
/// peer's messages any more. The writer half then gets errors, and the transport is
/// closed when the writer half is dropped or has driven the close to its end.
pub struct WsReader<S> {
    shared: Arc<Mutex<Shared<S>>>,
}

/// The sending half of a [`WebSocketStream`], from [`WebSocketStream::split`].
pub struct WsWriter<S> {
    shared: Arc<Mutex<Shared<S>>>,
}

/// What both halves share, behind a lock that is only held inside one `poll` call.
struct Shared<S> {
    conn: Connection,
    /// The transport; `None` once it is closed.
    io: Option<Pin<Box<S>>>,
    /// Tasks to wake for socket readiness and the deadline: the reader's and the
    /// writer's. The socket and the timer keep one waker each and both halves poll
    /// them, so they are given a proxy that wakes both.
    wakers: Arc<Wakers>,
    /// The proxy waker (`wakers` as a `Waker`), made once.
    proxy: Waker,
    /// The waker (data and vtable addresses) last registered for each half.
    registered: [(usize, usize); 2],
    /// The timer for the engine's deadlines.
    sleep: Pin<Box<Sleep>>,
    /// Where `sleep` is armed, if it is: never later than the engine's earliest
    /// deadline. It is moved only when that deadline comes earlier; one that moved later
    /// (the keepalive deadline does with every read) is found when the timer fires.
    armed: Option<tokio::time::Instant>,
    /// `sleep` was polled (with the proxy waker, which never changes) since it was last
    /// armed: it will wake the halves when it fires, and need not be polled again before.
    sleep_polled: bool,
    eof: bool,
    /// Bytes were written and the transport's flush has not completed since.
    unflushed: bool,
    /// Events the writer decoded while driving input, for the reader.
    events: VecDeque<Result<Message, Error>>,
    reader_dropped: bool,
    /// The server counters this connection adds to, if any (`ServerStats::attach`).
    counters: Option<Arc<crate::stats::Counters>>,
    /// The connection's span (the `tracing` feature), when the handshake made one.
    span: Option<crate::trace::Span>,
}

impl<S: AsyncRead + AsyncWrite> WebSocketStream<S> {
    /// Wraps a stream on which the opening handshake is already done, with the
    /// permessage-deflate parameters it negotiated (if any). `leftover` are bytes that
    /// arrived after the handshake head (frames may follow it at once). `config` is an
    /// `EngineConfig`, or an `Arc` of one to share it among connections.
    pub fn from_raw(
        stream: S,
        role: Role,
        config: impl Into<Arc<duplex_core::EngineConfig>>,
        deflate: Option<DeflateParams>,
        leftover: &[u8],
    ) -> Self {
        let mut conn = Connection::new(role, config);
        if let Some(params) = deflate {
            conn.enable_deflate(params);
        }
        conn.receive(leftover);
        conn.handle_timeout(now());
        let wakers = Arc::<Wakers>::default();
        let shared = Arc::new(Mutex::new(Shared {
            conn,
            io: Some(Box::pin(stream)),
            proxy: Waker::from(wakers.clone()),
            registered: [(0, 0); 2],
            wakers,
            sleep: Box::pin(tokio::time::sleep_until(far_future())),
            armed: None,
            sleep_polled: false,
            eof: false,
            unflushed: false,
            events: VecDeque::new(),
            reader_dropped: false,
            counters: None,
            span: None,
        }));
        Self {
            reader: WsReader {
                shared: shared.clone(),
            },
            writer: WsWriter { shared },
        }
    }

    /// Receives the next message (including pings, pongs and the peer's close).
    /// `None` once the connection is closed. Cancel-safe.
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> + '_ {
        self.reader.next()
    }

    /// Sends a message and flushes it to the socket. Waits while the write buffer is
    /// above its limit. After the peer closed, returns [`Error::ConnectionClosed`];
    /// after our own close, `Usage(SendAfterClose)`; after a failure, the failure.
    pub fn send(&mut self, message: Message) -> impl Future<Output = Result<(), Error>> + '_ {
        self.writer.send(message)
    }

    /// Queues a message without flushing it. It leaves with the next
    /// [`send`](Self::send) or [`flush`](Self::flush), or when [`recv`](Self::recv) has
    /// delivered the input it holds and goes back to the socket, so the answers to many
    /// small messages read at once go out in one write. Use it in a loop that keeps
    /// calling `recv`; otherwise flush. Waits while the write buffer is above its limit.
    pub fn feed(&mut self, message: Message) -> impl Future<Output = Result<(), Error>> + '_ {
        self.writer.feed(message)
    }

    /// Writes everything queued to the socket.
    pub fn flush(&mut self) -> impl Future<Output = Result<(), Error>> + '_ {
        self.writer.flush()
    }

    /// Starts the close handshake (if not started) and drives the connection until it
    /// completes and the transport is closed, or the close timeout passes. Messages that
    /// arrive meanwhile are discarded. Returns the timeout error if the peer never
    /// answered.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.writer.start_close(frame)?;
        while let Some(event) = self.reader.next().await {
            match event {
                Ok(_) => {}
                Err(Error::Protocol(_) | Error::LimitExceeded(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Starts the close handshake overtaking what is queued (see
    /// [`CloseHandle::close_now`]), then drives the connection like
    /// [`close`](Self::close) until it ends.
    pub async fn close_now(&mut self, frame: CloseFrame) -> Result<(), Error> {
        self.writer.lock().start_close(Some(frame), true)?;
        self.close(None).await
    }

    /// Splits into a reader and a writer for use from different tasks.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        (self.reader, self.writer)
    }

    /// Puts halves from [`split`](Self::split) back together; gives them back if they
    /// are not halves of the same stream.
    pub fn reunite(reader: WsReader<S>, writer: WsWriter<S>) -> Result<Self, ReuniteError<S>> {
        if Arc::ptr_eq(&reader.shared, &writer.shared) {
            Ok(Self { reader, writer })
        } else {
            Err(ReuniteError { reader, writer })
        }
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.writer.role()
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> duplex_core::State {
        self.writer.state()
    }

    /// True when permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.writer.is_compressed()
    }

    /// Bytes queued and not yet taken by the socket (the `bufferedAmount` of browsers).
    pub fn buffered_amount(&self) -> usize {
        self.writer.buffered_amount()
    }

    /// Queues a message without waiting; see [`WsWriter::try_send`].
    pub fn try_send(&mut self, message: Message) -> Result<(), TrySendError<Message>> {
        self.writer.try_send(message)
    }

    /// Queues a prepared message without waiting; see [`WsWriter::try_send`].
    pub fn try_send_prepared(
        &mut self,
        message: &duplex_core::PreparedMessage,
    ) -> Result<(), TrySendError<()>> {
        self.writer.try_send_prepared(message)
    }

    /// Sends a text or binary message without compressing it, even when
    /// permessage-deflate is on.
    pub fn send_uncompressed(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        self.writer.send_uncompressed(message)
    }

    /// Sends a message prepared once for many connections (broadcast), sharing its
    /// encoded bytes.
    pub fn send_prepared<'a>(
        &'a mut self,
        message: &'a duplex_core::PreparedMessage,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        self.writer.send_prepared(message)
    }
}

/// Halves of different streams given to [`WebSocketStream::reunite`].
pub struct ReuniteError<S> {
    /// The reader given.
    pub reader: WsReader<S>,
    /// The writer given.
    pub writer: WsWriter<S>,
}

impl<S> std::fmt::Debug for ReuniteError<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReuniteError(halves of different streams)")
    }
}

impl<S> std::fmt::Display for ReuniteError<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reader and writer are halves of different streams")
    }
}

impl<S> std::error::Error for ReuniteError<S> {}

/// Why [`WsWriter::try_send`] did not queue a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrySendError<M> {
    /// The write buffer is above `max_write_buffer`: the peer reads slower than we send.
    /// The message is given back.
    WriteBufferFull {
        /// The message, not queued.
        message: M,
        /// Bytes waiting to be written.
        buffered: usize,
    },
    /// The connection cannot take messages any more (closed, failed, or refused this
    /// one); the same errors as [`WsWriter::send`].
    Error(Error),
}

impl<M> std::fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WriteBufferFull { buffered, .. } => write!(
                f,
                "write buffer full ({buffered} bytes waiting): the peer reads slower than we send"
            ),
            Self::Error(error) => write!(f, "{error}"),
        }
    }
}

impl<M: std::fmt::Debug> std::error::Error for TrySendError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Error(error) => Some(error),
            Self::WriteBufferFull { .. } => None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// Receives the next message; see [`WebSocketStream::recv`].
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> + '_ {
        self.next()
    }

    /// Where the connection is in its life (the same as the writer half's).
    pub fn state(&self) -> duplex_core::State {
        lock(&self.shared).conn.state()
    }
}

impl<S> Drop for WsReader<S> {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        shared.reader_dropped = true;
        // Nobody reads any more: say so to the peer, and let a waiting writer know.
        let _ = shared
            .conn
            .close(Some(CloseFrame::new(CloseCode::GoingAway, "")), now());
        shared.wakers.wake(WRITER);
    }
}

impl<S: AsyncRead + AsyncWrite> WsWriter<S> {
    /// Sends a message and flushes it; see [`WebSocketStream::send`].
    pub fn send(&mut self, message: Message) -> impl Future<Output = Result<(), Error>> + '_ {
        self.queue_then_flush(move |shared| shared.start_send(message), true)
    }

    /// Queues a message without flushing it; see [`WebSocketStream::feed`].
    pub fn feed(&mut self, message: Message) -> impl Future<Output = Result<(), Error>> + '_ {
        self.queue_then_flush(move |shared| shared.start_send(message), false)
    }

    /// Writes everything queued to the socket.
    pub fn flush(&mut self) -> impl Future<Output = Result<(), Error>> + '_ {
        poll_fn(|cx| self.poll_flush_inner(cx))
    }

    /// Waits for room in the write buffer, queues with `queue`, then flushes if asked.
    /// One small future, not nested async functions: a task that awaits it in a loop
    /// carries its size for its whole life.
    /// The lock is taken once per poll for all three steps.
    fn queue_then_flush<'a>(
        &'a mut self,
        queue: impl FnOnce(&mut Shared<S>) -> Result<(), Error> + 'a,
        flush: bool,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        let mut queue = Some(queue);
        poll_fn(move |cx| {
            let mut shared = self.lock();
            if queue.is_some() {
                if let Err(error) = ready!(shared.poll_ready(cx)) {
                    queue = None;
                    return Poll::Ready(Err(error));
                }
                let queue = queue.take().expect("checked above");
                queue(&mut shared)?;
                if !flush {
                    return Poll::Ready(Ok(()));
                }
            }
            shared.poll_flush(cx)
        })
    }

    /// Sends a close frame and flushes it; the reader half sees the peer's reply.
    /// Returns within the close timeout whatever the peer does.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.start_close(frame)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Closes like [`close`](Self::close), overtaking what is queued: messages not yet
    /// started are dropped and the close frame follows the rest of the frame being
    /// written (see [`CloseHandle::close_now`]).
    pub async fn close_now(&mut self, frame: CloseFrame) -> Result<(), Error> {
        self.lock().start_close(Some(frame), true)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Queues a message without waiting, and writes as much as the socket takes now;
    /// the rest leaves with the next call on either half. Refused with the message given
    /// back while the write buffer is above `max_write_buffer`, so a broadcaster can skip
    /// or drop a slow client instead of waiting for it.
    pub fn try_send(&mut self, message: Message) -> Result<(), TrySendError<Message>> {
        let mut shared = self.lock();
        if let Err(error) = shared.conn.check_open() {
            return Err(TrySendError::Error(error));
        }
        if shared.conn.is_write_buffer_full() {
            let buffered = shared.conn.output_len();
            return Err(TrySendError::WriteBufferFull { message, buffered });
        }
        let queued = match message {
            Message::Close(frame) => shared.conn.close(frame, now()),
            other => shared.send_counted(|conn| conn.send(other)),
        };
        queued.map_err(TrySendError::Error)?;
        shared.write_now();
        Ok(())
    }

    /// [`try_send`](Self::try_send) for a prepared message (nothing to give back).
    pub fn try_send_prepared(
        &mut self,
        message: &duplex_core::PreparedMessage,
    ) -> Result<(), TrySendError<()>> {
        let mut shared = self.lock();
        match shared.send_counted(|conn| conn.send_prepared(message)) {
            Ok(()) => {
                shared.write_now();
                Ok(())
            }
            Err(Error::Usage(duplex_core::UsageError::WriteBufferFull { buffered, .. })) => {
                Err(TrySendError::WriteBufferFull {
                    message: (),
                    buffered,
                })
            }
            Err(error) => Err(TrySendError::Error(error)),
        }
    }

    /// Sends a text or binary message without compressing it, even when
    /// permessage-deflate is on.
    pub fn send_uncompressed(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        self.queue_then_flush(
            move |shared| shared.send_counted(|conn| conn.send_uncompressed(message)),
            true,
        )
    }

    /// Sends a message prepared once for many connections (broadcast), sharing its
    /// encoded bytes.
    pub fn send_prepared<'a>(
        &'a mut self,
        message: &'a duplex_core::PreparedMessage,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        self.queue_then_flush(
            move |shared| shared.send_counted(|conn| conn.send_prepared(message)),
            true,
        )
    }

    /// Bytes queued and not yet taken by the socket.
    pub fn buffered_amount(&self) -> usize {
        self.lock().conn.output_len()
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.lock().conn.role()
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> duplex_core::State {
        self.lock().conn.state()
    }

    /// True when permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.lock().conn.is_deflate_enabled()
    }

    fn lock(&self) -> MutexGuard<'_, Shared<S>> {
        lock(&self.shared)
    }

    fn start_close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.lock().start_close(frame, false)
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.lock().poll_ready(cx)
    }

    fn start_send_inner(&mut self, message: Message) -> Result<(), Error> {
        self.lock().start_send(message)
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.lock().poll_flush(cx)
    }
}

impl<S> Shared<S> {
    /// Queues our close frame (with `overtake`, ahead of the frames not yet started:
    /// `Connection::close_now`), arms its deadline and tells the other half.
    fn start_close(&mut self, frame: Option<CloseFrame>, overtake: bool) -> Result<(), Error> {
        if overtake {
            self.conn.close_now(frame, now())?;
        } else {
            self.conn.close(frame, now())?;
        }
        // The close deadline, for a task that may never wait.
        self.arm_timer();
        // Another half parked on the socket or the timer must see the new deadline.
        self.wakers.wake(READER);
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite> Shared<S> {
    /// The writer's `poll_ready`: room in the write buffer.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.needs_driving() {
            let look_ahead = self.reader_dropped;
            self.drive_background(cx, look_ahead);
        }
        loop {
            self.conn.check_open()?;
            if self.reader_dropped {
                return Poll::Ready(Err(duplex_core::UsageError::SendAfterClose.into()));
            }
            if !self.conn.is_write_buffer_full() {
                return Poll::Ready(Ok(()));
            }
            if self.io.is_none() {
                return Poll::Ready(Err(self.outcome_error()));
            }
            if self.poll_write_out(cx, WRITER).is_pending() {
                // About to wait for the peer to read: meanwhile, watch its input, so
                // that its pings are answered and its close or failure ends the wait.
                if !self.drive_background(cx, true) {
                    return Poll::Pending;
                }
            }
        }
    }

    fn start_send(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Close(frame) => self.start_close(frame, false),
            other => self.send_counted(|conn| conn.send(other)),
        }
    }

    /// The writer's `poll_flush`.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.needs_driving() {
            let look_ahead = self.reader_dropped;
            self.drive_background(cx, look_ahead);
        }
        loop {
            if self.conn.output_len() == 0 || self.io.is_none() {
                return Poll::Ready(self.flush_outcome(cx));
            }
            if self.reader_dropped {
                // Nobody reads: the connection is being abandoned, do not wait for it.
                return Poll::Ready(Err(duplex_core::UsageError::SendAfterClose.into()));
            }
            if self.poll_write_out(cx, WRITER).is_pending() && !self.drive_background(cx, true) {
                return Poll::Pending;
            }
        }
    }
}

/// The tasks waiting on the socket or the deadline: the reader's and the writer's.
#[derive(Default)]
struct Wakers {
    slots: Mutex<[Option<Waker>; 2]>,
    /// Whether each slot holds a waker (cleared when it is taken to be woken), so that
    /// registering the same task again costs an atomic load, not the lock.
    held: [std::sync::atomic::AtomicBool; 2],
}

impl Wakers {
    fn register(&self, who: usize, waker: &Waker) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots[who].as_ref().is_some_and(|w| w.will_wake(waker)) {
            slots[who] = Some(waker.clone());
        }
        self.held[who].store(true, std::sync::atomic::Ordering::Release);
    }

    fn wake(&self, who: usize) {
        let waker = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            self.held[who].store(false, std::sync::atomic::Ordering::Release);
            slots[who].take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl std::task::Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let [reader, writer] = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for held in &self.held {
                held.store(false, std::sync::atomic::Ordering::Release);
            }
            [slots[READER].take(), slots[WRITER].take()]
        };
        match (reader, writer) {
            // One task holding both halves is woken once.
            (Some(reader), Some(writer)) if reader.will_wake(&writer) => reader.wake(),
            (reader, writer) => {
                reader.into_iter().chain(writer).for_each(Waker::wake);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Shared<S> {
    /// Registers `who`'s task to be woken through the proxy waker, which the socket and
    /// the timer are polled with. The same task registered again, with its waker not
    /// taken since, costs a comparison and an atomic load (a wake racing with that load
    /// wakes this very task, which then registers again).
    fn register(&mut self, cx: &Context<'_>, who: usize) {
        let waker = cx.waker();
        let id = (
            waker.data() as usize,
            std::ptr::from_ref(waker.vtable()) as usize,
        );
        if self.registered[who] == id
            && self.wakers.held[who].load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        self.wakers.register(who, waker);
        self.registered[who] = id;
    }

    /// The reader's step: the next event, driving everything needed to get it.
    fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(Some(event));
            }
            if self.io.is_none() {
                return Poll::Ready(None);
            }
            let now = now();
            let event = self.conn.poll_event(now);
            // Write what is queued (pongs, close replies, messages fed without a flush)
            // without waiting for it: at once for anything but a data message, otherwise
            // once the input is used up or a batch is full, so that the replies to many
            // small messages read together leave in one write.
            let batch = matches!(event, Some(Ok(ref m)) if m.is_data())
                && self.conn.output_len() < WRITE_BATCH;
            if !batch && (self.conn.output_len() > 0 || self.unflushed) {
                if let Poll::Ready(Err(error)) = self.poll_write_out(cx, READER) {
                    if event.is_none() {
                        return Poll::Ready(Some(Err(Error::Io(error))));
                    }
                }
            }
            if let Some(event) = event {
                return Poll::Ready(Some(event));
            }
            if self.conn.is_transport_ending() {
                ready!(self.poll_end_transport(cx, READER, now));
                continue;
            }
            // A reader that never waits (its peer keeps sending) still runs the deadlines.
            if self.deadline_passed() && self.poll_deadline(cx, READER).is_ready() {
                continue;
            }
            if self.eof {
                if self.poll_deadline(cx, READER).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
            if self.conn.is_input_paused() {
                // The server's memory budget is exceeded and this message grows: no
                // reading until the engine's budget check (a deadline) says otherwise.
                if self.poll_deadline(cx, READER).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
            match self.poll_read(cx, READER) {
                Poll::Pending => {
                    if self.poll_deadline(cx, READER).is_ready() {
                        continue;
                    }
                    // Idle until the socket has more: give back what buffers hold nothing
                    // (and compression state that keeps no context).
                    if self.conn.output_len() == 0 {
                        self.conn.shrink_buffers();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Ok(())) => {}
            }
        }
    }

    /// The writer's share of driving the connection when it is about to wait (or when a
    /// deadline passed): reading what has arrived (up to 64 KiB held for the reader), so
    /// that the peer's bytes count as signs of life for a task that never calls `recv`,
    /// then the deadlines, and the closing of the transport. With `look_ahead` (the
    /// writer is about to wait for the peer, or nobody reads any more) it also decodes a
    /// bounded amount for the reader, so that the peer's pings are answered and its close
    /// ends the wait. Decoding ahead is kept for waits: a close decoded early would
    /// refuse the replies the application still sends to the messages before it. Never
    /// blocks; registers the writer for what it waits on. Returns true when the
    /// connection changed in a way the caller must look at (a deadline fired, events
    /// were decoded, the transport closed).
    fn drive_background(&mut self, cx: &mut Context<'_>, look_ahead: bool) -> bool {
        let mut changed = false;
        loop {
            if self.io.is_none() {
                return true;
            }
            if self.conn.is_transport_ending() {
                return self.poll_end_transport(cx, WRITER, now()).is_ready() || changed;
            }
            if !self.eof {
                let mut read = true;
                if look_ahead {
                    let holds_data = self
                        .events
                        .iter()
                        .any(|e| e.as_ref().is_ok_and(Message::is_data));
                    if holds_data || self.events.len() >= MAX_QUEUED_EVENTS {
                        read = false;
                    } else {
                        let mut decoded = false;
                        while let Some(event) = self.conn.poll_event(now()) {
                            let data = event.as_ref().is_ok_and(Message::is_data);
                            self.events.push_back(event);
                            decoded = true;
                            if data || self.events.len() >= MAX_QUEUED_EVENTS {
                                break;
                            }
                        }
                        if decoded {
                            self.wakers.wake(READER);
                            // Pongs and a close reply leave with the writer's own output.
                            changed = true;
                            continue;
                        }
                    }
                } else if self.conn.buffered_input() >= READ_CHUNK {
                    // Enough waits for the reader; the peer's pongs still count as signs
                    // of life once read, so a send-only task keeps a live peer.
                    read = false;
                }
                if read && !self.conn.is_input_paused() {
                    match self.poll_read(cx, WRITER) {
                        Poll::Pending => {}
                        Poll::Ready(Err(error)) => {
                            self.events.push_back(Err(error));
                            self.wakers.wake(READER);
                            return true;
                        }
                        // The bytes are the reader's to decode: wake it (the readiness it
                        // may be parked on was just used up here).
                        Poll::Ready(Ok(())) => {
                            self.wakers.wake(READER);
                            continue;
                        }
                    }
                }
            }
            if self.poll_deadline(cx, WRITER).is_ready() {
                changed = true;
                continue;
            }
            return changed;
        }
    }

    /// True when the writer must drive the connection although it does not wait: a
    /// deadline passed (a task that only sends still sees keepalive, idle, write-stall
    /// and close deadlines on time), the transport is to be closed, or nobody reads.
    /// Otherwise the reader, or the writer's next wait, drives it.
    fn needs_driving(&mut self) -> bool {
        self.reader_dropped || self.io.is_none() || self.conn.is_transport_ending() || {
            // Armed once here for a task that never waits; later, a deadline that
            // comes earlier is armed where it is made (our close, output left by
            // `try_send`) or by the reader's loop and the waits.
            if self.armed.is_none() {
                self.arm_timer();
            }
            self.timer_fired()
        }
    }

    /// True when the timer fired and nobody has looked at the engine's deadlines since
    /// (an atomic load).
    fn timer_fired(&self) -> bool {
        self.armed.is_some() && self.sleep.is_elapsed()
    }

    /// True when the timer fired and nobody has looked at the engine's deadlines since:
    /// a cheap test for the paths that do not wait. It also moves the timer earlier when
    /// the engine's earliest deadline came before it.
    fn deadline_passed(&mut self) -> bool {
        self.arm_timer();
        self.timer_fired()
    }

    /// Before waiting: runs the engine's deadlines that passed and leaves the timer armed
    /// for the next one, registered for `who`. `Ready` when one fired (the caller looks
    /// at the engine again), `Pending` when waiting is right.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, who: usize) -> Poll<()> {
        if self.conn.output_len() > 0 {
            // Output waits: the engine arms its write-stall deadline when it has the time.
            let now = now();
            let due = self.conn.poll_timeout().is_some_and(|d| d <= now);
            self.conn.handle_timeout(now);
            if due {
                return Poll::Ready(());
            }
        }
        loop {
            self.arm_timer();
            if self.armed.is_none() {
                return Poll::Pending;
            }
            self.register(cx, who);
            if self.sleep_polled && !self.sleep.is_elapsed() {
                return Poll::Pending;
            }
            // Outside tokio's cooperative budget, so that `Pending` means the timer holds
            // the proxy waker (a refusal for budget would leave it without one).
            let sleep = self.sleep.as_mut();
            let poll = {
                let mut poll = std::pin::pin!(tokio::task::unconstrained(sleep));
                poll.as_mut().poll(&mut Context::from_waker(&self.proxy))
            };
            match poll {
                Poll::Pending => {
                    self.sleep_polled = true;
                    return Poll::Pending;
                }
                Poll::Ready(()) => {
                    self.sleep_polled = false;
                    self.armed = None;
                    let now = tokio::time::Instant::now().into_std();
                    let due = self.conn.poll_timeout().is_some_and(|d| d <= now);
                    self.conn.handle_timeout(now);
                    if due {
                        return Poll::Ready(());
                    }
                    // The deadline it was armed for moved later: arm it again.
                }
            }
        }
    }

    /// Reads once from the transport into the engine.
    ///
    /// When the engine wants a large read (the rest of a large frame, or the next one
    /// after large frames: `Connection::input_wanted`), the reader reads straight into
    /// the engine's input buffer, sized by the engine (no copy). Otherwise a read goes to
    /// a 64 KiB buffer shared by the connections of the thread and the engine copies what
    /// came (usually a few small frames): no 64 KiB buffer is allocated and freed around
    /// every wait, and an idle connection holds none.
    fn poll_read(&mut self, cx: &mut Context<'_>, who: usize) -> Poll<Result<(), Error>> {
        self.register(cx, who);
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut proxy_cx = Context::from_waker(&self.proxy);
        let into_engine = self.conn.input_wanted() > 0;
        let read = if into_engine {
            let input = self.conn.input_buffer(READ_CHUNK);
            tokio_util::io::poll_read_buf(io.as_mut(), &mut proxy_cx, input)
        } else {
            let conn = &mut self.conn;
            with_scratch(|scratch| {
                let mut buf = ReadBuf::new(scratch);
                match io.as_mut().poll_read(&mut proxy_cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        conn.receive(buf.filled());
                        Poll::Ready(Ok(buf.filled().len()))
                    }
                    Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                    Poll::Pending => Poll::Pending,
                }
            })
        };
        match read {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                self.conn.receive_eof();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(n)) => {
                if let Some(counters) = &self.counters {
                    counters.read(n);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => {
                // The engine decides what the error means (a reset is the peer leaving)
                // and reports it through `poll_event`.
                self.eof = true;
                self.conn.transport_failed(&error, now());
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Writes what the socket takes now, without registering a task (for `try_send`):
    /// the socket keeps the proxy waker, which wakes whichever half waits.
    fn write_now(&mut self) {
        // Outside tokio's cooperative budget: the caller is usually not this connection's
        // task but one that broadcasts to many; once its budget ran out, every write would
        // be refused and left to a wake-up of each connection's own task.
        {
            let mut write = std::pin::pin!(tokio::task::unconstrained(poll_fn(|_| {
                Poll::Ready(self.write_with())
            })));
            let _ = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        }
        if self.conn.output_len() > 0 {
            // Left waiting: the write-stall deadline counts from now.
            self.conn.handle_timeout(now());
            self.arm_timer();
        }
    }

    /// Writes pending output until it is all written and flushed, or the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, who: usize) -> Poll<io::Result<()>> {
        self.register(cx, who);
        let (result, progressed) = self.write_with();
        if progressed {
            // The other half may be waiting for room that we just made.
            self.wakers.wake(1 - who);
        }
        result
    }

    /// The write loop, with the proxy waker left on the socket; also says whether any
    /// byte left.
    fn write_with(&mut self) -> (Poll<io::Result<()>>, bool) {
        let mut cx = Context::from_waker(&self.proxy);
        let Some(io) = self.io.as_mut() else {
            return (Poll::Ready(Err(io::ErrorKind::NotConnected.into())), false);
        };
        let mut progressed = false;
        let result = loop {
            if self.conn.output_len() == 0 {
                let flushed = io.as_mut().poll_flush(&mut cx);
                self.unflushed = flushed.is_pending();
                break flushed;
            }
            let written = {
                // A few slices usually do; the long array only when they are all used.
                let mut slices = [IoSlice::new(&[]); FEW_SLICES];
                let n = self.conn.pending_output_vectored(&mut slices);
                if n < FEW_SLICES {
                    io.as_mut().poll_write_vectored(&mut cx, &slices[..n])
                } else {
                    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                    let n = self.conn.pending_output_vectored(&mut slices);
                    io.as_mut().poll_write_vectored(&mut cx, &slices[..n])
                }
            };
            match written {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.conn.consume_output(n);
                    if let Some(counters) = &self.counters {
                        counters.written(n);
                    }
                    progressed = true;
                    self.unflushed = true;
                }
                Poll::Ready(Err(error)) => break Poll::Ready(Err(error)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if let Poll::Ready(Err(error)) = &result {
            self.conn.transport_failed(error, now());
        }
        (result, progressed)
    }

    /// Does what the engine decides for the transport once the connection is over:
    /// shut our side down, drain (what is read goes to the engine, which discards it),
    /// or drop it; the engine's linger deadline bounds the whole. `Ready` once the
    /// transport is dropped (or the engine wants it kept after all).
    fn poll_end_transport(&mut self, cx: &mut Context<'_>, who: usize, now: Instant) -> Poll<()> {
        let mut now = now;
        loop {
            self.register(cx, who);
            let Some(io) = self.io.as_mut() else {
                return Poll::Ready(());
            };
            let mut proxy_cx = Context::from_waker(&self.proxy);
            let waiting = match self.conn.poll_transport(now) {
                TransportAction::Continue => return Poll::Ready(()),
                TransportAction::Close => {
                    self.io = None;
                    std::task::Wake::wake_by_ref(&self.wakers);
                    return Poll::Ready(());
                }
                TransportAction::ShutdownWrite => match io.as_mut().poll_shutdown(&mut proxy_cx) {
                    Poll::Ready(Ok(())) => {
                        self.conn.shutdown_done();
                        false
                    }
                    Poll::Ready(Err(error)) => {
                        self.conn.transport_failed(&error, now);
                        false
                    }
                    Poll::Pending => true,
                },
                TransportAction::Drain if self.eof => {
                    self.conn.receive_eof();
                    false
                }
                TransportAction::Drain => {
                    let mut buf = [MaybeUninit::<u8>::uninit(); 8 << 10];
                    let mut read_buf = ReadBuf::uninit(&mut buf);
                    match io.as_mut().poll_read(&mut proxy_cx, &mut read_buf) {
                        Poll::Ready(Ok(())) if read_buf.filled().is_empty() => {
                            self.eof = true;
                            self.conn.receive_eof();
                            false
                        }
                        Poll::Ready(Ok(())) => {
                            self.conn.receive(read_buf.filled());
                            false
                        }
                        Poll::Ready(Err(error)) => {
                            self.conn.transport_failed(&error, now);
                            false
                        }
                        Poll::Pending => true,
                    }
                }
            };
            if waiting {
                // Waits for the transport or the linger deadline, whichever comes first.
                ready!(self.poll_deadline(cx, who));
                now = self::now();
            }
        }
    }

    /// Why sending is over, once the transport is gone.
    fn outcome_error(&self) -> Error {
        match self.conn.check_open() {
            Err(error) => error,
            Ok(()) => Error::ConnectionClosed,
        }
    }

    /// What a flush reports once nothing more can be written: `Ok` after our own close
    /// or while open, an error if the peer closed, the connection failed, or output was
    /// left unsent.
    fn flush_outcome(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        if self.io.is_none() && self.conn.output_len() > 0 {
            return Err(self.outcome_error());
        }
        self.register(cx, WRITER);
        if let Some(io) = self.io.as_mut() {
            if let Poll::Ready(Err(error)) = io
                .as_mut()
                .poll_flush(&mut Context::from_waker(&self.proxy))
            {
                self.conn.transport_failed(&error, now());
            }
        }
        match self.conn.check_open() {
            Ok(()) => Ok(()),
            Err(Error::Usage(duplex_core::UsageError::SendAfterClose)) if !self.reader_dropped => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Stream for WsReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut shared = lock(&self.shared);
        let event = shared.poll_next_event(cx);
        match &event {
            Poll::Ready(Some(Ok(message))) => {
                if let Some(counters) = &shared.counters {
                    counters.received(message);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(span) = &shared.span {
                    crate::trace::error(span, error);
                }
            }
            _ => {}
        }
        event
    }
}

impl<S: AsyncRead + AsyncWrite> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_ready_inner(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        self.get_mut().start_send_inner(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.start_close(Some(CloseFrame::new(CloseCode::Normal, "")))?;
        match ready!(this.poll_flush_inner(cx)) {
            // Closing what the peer closed already is done, not an error.
            Err(Error::ConnectionClosed) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Stream for WebSocketStream<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().reader).poll_next(cx)
    }
}

impl<S: AsyncRead + AsyncWrite> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().writer).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        Pin::new(&mut self.get_mut().writer).start_send(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().writer).poll_close(cx)
    }
}

impl<S> std::fmt::Debug for WebSocketStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = lock(&self.shared);
        f.debug_struct("WsReader")
            .field("role", &shared.conn.role())
            .field("state", &shared.conn.state())
            .field("eof", &shared.eof)
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = lock(&self.shared);
        f.debug_struct("WsWriter")
            .field("role", &shared.conn.role())
            .field("buffered", &shared.conn.output_len())
            .finish_non_exhaustive()
    }
}

fn lock<S>(shared: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    // A panic while holding the lock leaves the engine in a state we cannot trust, but
    // every method of it is panic-free on network input; recover the guard anyway.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The time for the engine, from tokio's clock (so paused or advanced test time and the
/// engine's deadlines agree).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

thread_local! {
    /// The read buffer shared by the connections this thread polls (see
    /// [`Shared::poll_read`]); taken out while in use, so a nested read makes its own.
    static SCRATCH: std::cell::Cell<Option<Box<[u8]>>> = const { std::cell::Cell::new(None) };
}

/// Runs `read` with the thread's shared read buffer.
fn with_scratch<T>(read: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut buf = SCRATCH
        .try_with(std::cell::Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; READ_CHUNK].into_boxed_slice());
    let result = read(&mut buf);
    let _ = SCRATCH.try_with(|scratch| scratch.set(Some(buf)));
    result
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86400 * 365)
}

/// A handle on a connection for another task: start its close handshake, drop its
/// transport, see whether it is over. Made by [`WebSocketStream::close_handle`]; used by
/// [`Shutdown`](crate::Shutdown). Cloning is cheap; the handle does not keep the
/// transport open once the stream's halves are gone.
#[derive(Clone)]
pub struct CloseHandle {
    /// Weak: the transport closes when the stream's halves are dropped, as without a
    /// handle.
    shared: std::sync::Weak<dyn Remote>,
}

/// What a [`CloseHandle`] can do to a connection, whatever its transport type.
trait Remote: Send + Sync {
    fn start_close(&self, frame: CloseFrame, overtake: bool);
    fn abort(&self);
    fn is_finished(&self) -> bool;
}

impl<S: Send> Remote for Mutex<Shared<S>> {
    fn start_close(&self, frame: CloseFrame, overtake: bool) {
        let mut shared = lock(self);
        // Already closing, closed or failed: nothing to start.
        let _ = shared.start_close(Some(frame), overtake);
        // Whichever half is parked writes the close frame and arms its deadline.
        std::task::Wake::wake_by_ref(&shared.wakers);
    }

    fn abort(&self) {
        let mut shared = lock(self);
        let error = io::Error::new(io::ErrorKind::TimedOut, "dropped at the shutdown deadline");
        shared.conn.transport_failed(&error, now());
        shared.io = None;
        std::task::Wake::wake_by_ref(&shared.wakers);
    }

    fn is_finished(&self) -> bool {
        let shared = lock(self);
        shared.io.is_none()
    }
}

impl CloseHandle {
    /// Starts the close handshake with `frame` (for example 1001, going away) unless
    /// the connection is already closing; the task that owns the stream drives it.
    pub fn start_close(&self, frame: CloseFrame) {
        if let Some(shared) = self.shared.upgrade() {
            shared.start_close(frame, false);
        }
    }

    /// Starts the close handshake with `frame` overtaking what is queued: messages not
    /// yet started are dropped, so a slow consumer that is kicked (1008, 1013) gets the
    /// close frame, and learns why, as soon as its socket takes the rest of the frame
    /// being written, instead of after the output it is not reading (or never, when
    /// the close deadline ends the connection first).
    pub fn close_now(&self, frame: CloseFrame) {
        if let Some(shared) = self.shared.upgrade() {
            shared.start_close(frame, true);
        }
    }

    /// Drops the transport at once; the owner's next call sees the connection failed.
    pub fn abort(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.abort();
        }
    }

    /// True once the transport is closed (after the close handshake, a failure or
    /// [`abort`](Self::abort)) or the stream was dropped.
    pub fn is_finished(&self) -> bool {
        self.shared
            .upgrade()
            .is_none_or(|shared| shared.is_finished())
    }
}

impl std::fmt::Debug for CloseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> WebSocketStream<S> {
    /// A [`CloseHandle`] for this connection, to close it from another task.
    pub fn close_handle(&self) -> CloseHandle {
        let shared: Arc<dyn Remote> = self.writer.shared.clone();
        CloseHandle {
            shared: Arc::downgrade(&shared),
        }
    }
}

impl<S> Shared<S> {
    /// Arms the timer for the engine's earliest deadline unless it is armed no later.
    fn arm_timer(&mut self) {
        let Some(deadline) = self.conn.poll_timeout() else {
            return;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.armed.is_none_or(|armed| deadline < armed) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
            self.sleep_polled = false;
        }
    }

    /// Queues a data message with `send`, counting it when it was accepted.
    fn send_counted(
        &mut self,
        send: impl FnOnce(&mut Connection) -> Result<(), Error>,
    ) -> Result<(), Error> {
        send(&mut self.conn)?;
        if let Some(counters) = &self.counters {
            counters.sent();
        }
        Ok(())
    }
}

impl<S> Drop for Shared<S> {
    fn drop(&mut self) {
        if let Some(counters) = self.counters.take() {
            counters.ended(&self.conn);
        }
        if let Some(span) = self.span.take() {
            crate::trace::closed(&span, &self.conn);
        }
    }
}

impl<S> WebSocketStream<S> {
    /// Adds this connection to `counters` (see `ServerStats::attach`).
    pub(crate) fn set_counters(&self, counters: Arc<crate::stats::Counters>) {
        let mut shared = lock(&self.writer.shared);
        let role = shared.conn.role();
        if let Some(budget) = shared.conn.config().budget(role) {
            counters.note_budget(budget);
        }
        shared.counters = Some(counters);
    }

    /// Gives the connection the span its handshake made.
    pub(crate) fn set_span(&self, span: crate::trace::Span) {
        lock(&self.writer.shared).span = Some(span);
    }

    /// The connection's `tracing` span: `websocket` with `role`, `path`, `extensions`,
    /// `http`, and an empty `peer` to record (`span.record("peer", ...)`). A span that is
    /// disabled when the stream was not made by this crate's handshakes.
    #[cfg(feature = "tracing")]
    pub fn span(&self) -> tracing::Span {
        lock(&self.writer.shared)
            .span
            .clone()
            .unwrap_or_else(tracing::Span::none)
    }
}
