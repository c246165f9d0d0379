//! `WebSocketStream`: the engine driven over an async byte stream.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use duplex_core::{CloseFrame, Connection, DeflateParams, Error, Message, Role};
use futures::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::time::Sleep;

/// Bytes read from the socket per read call. On the stack, not per connection.
const READ_CHUNK: usize = 64 << 10;

/// Output the reader lets accumulate while it still has events to deliver; past it, it
/// writes before delivering more.
const WRITE_BATCH: usize = 64 << 10;

/// After shutting down our side, how long to drain the peer's input before dropping the
/// socket (closing with unread input would send a reset that can destroy our close frame).
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// The most input discarded while lingering, whatever the time.
const LINGER_MAX_BYTES: usize = 1 << 20;

const READER: usize = 0;
const WRITER: usize = 1;

/// A WebSocket connection over any `AsyncRead + AsyncWrite` stream.
///
/// It is a [`Stream`] of received messages and a [`Sink`] of messages to send, and has
/// plain async methods: [`recv`](Self::recv), [`send`](Self::send),
/// [`close`](Self::close). Pings are answered and the close handshake is completed by
/// the engine; [`split`](Self::split) gives halves for two tasks.
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
/// The reader runs the engine's timers and writes what the engine owes the peer
/// (pongs, the close reply) itself, so those never wait for the writer half.
pub struct WsReader<S> {
    shared: Arc<Mutex<Shared<S>>>,
    read: ReadHalf<S>,
    sleep: Pin<Box<Sleep>>,
    eof: bool,
    /// Our side is shut down; input is drained until the peer closes or `LINGER` passes.
    linger_until: Option<tokio::time::Instant>,
    done: bool,
}

/// The sending half of a [`WebSocketStream`], from [`WebSocketStream::split`].
pub struct WsWriter<S> {
    shared: Arc<Mutex<Shared<S>>>,
}

/// What both halves share, behind a lock that is only held inside one `poll` call.
struct Shared<S> {
    conn: Connection,
    write: WriteHalf<S>,
    /// Tasks waiting for the socket to accept output: the reader's and the writer's.
    write_wakers: Arc<WriteWakers>,
    shut_down: bool,
}

impl<S: AsyncRead + AsyncWrite> WebSocketStream<S> {
    /// Wraps a stream on which the opening handshake is already done, with the
    /// permessage-deflate parameters it negotiated (if any). `leftover` are bytes that
    /// arrived after the handshake head (frames may follow it at once).
    pub fn from_raw(
        stream: S,
        role: Role,
        config: duplex_core::Config,
        deflate: Option<DeflateParams>,
        leftover: &[u8],
    ) -> Self {
        let mut conn = Connection::new(role, config);
        if let Some(params) = deflate {
            conn.enable_deflate(params);
        }
        conn.receive(leftover);
        let (read, write) = tokio::io::split(stream);
        let shared = Arc::new(Mutex::new(Shared {
            conn,
            write,
            write_wakers: Arc::default(),
            shut_down: false,
        }));
        Self {
            reader: WsReader {
                shared: shared.clone(),
                read,
                sleep: Box::pin(tokio::time::sleep_until(far_future())),
                eof: false,
                linger_until: None,
                done: false,
            },
            writer: WsWriter { shared },
        }
    }

    /// Receives the next message (including pings, pongs and the peer's close).
    /// `None` once the connection is closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.reader.next().await
    }

    /// Sends a message and flushes it to the socket. Waits while the write buffer is
    /// above its limit.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.writer.send(message).await
    }

    /// Queues a message without flushing it. It leaves with the next
    /// [`send`](Self::send) or [`flush`](Self::flush), or when [`recv`](Self::recv) has
    /// delivered the input it holds and goes back to the socket, so the answers to many
    /// small messages read at once go out in one write. Use it in a loop that keeps
    /// calling `recv`; otherwise flush. Waits while the write buffer is above its limit.
    pub async fn feed(&mut self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.writer.poll_ready_inner(cx)).await?;
        self.writer.start_send_inner(message)
    }

    /// Writes everything queued to the socket.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.writer.poll_flush_output(cx)).await
    }

    /// Starts the close handshake (if not started) and drives the connection until it
    /// completes or the close timeout passes. Messages that arrive meanwhile are
    /// discarded. Returns the timeout error if the peer never answered.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.writer.start_close(frame)?;
        poll_fn(|cx| self.writer.poll_flush_output(cx)).await?;
        while let Some(event) = self.reader.next().await {
            match event {
                Ok(_) => {}
                Err(Error::Protocol(_) | Error::LimitExceeded(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Splits into a reader and a writer for use from different tasks.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        (self.reader, self.writer)
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.writer.lock().conn.role()
    }

    /// True when permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.writer.lock().conn.is_deflate_enabled()
    }

    /// Sends a text or binary message without compressing it, even when
    /// permessage-deflate is on.
    pub async fn send_uncompressed(&mut self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.writer.poll_ready_inner(cx)).await?;
        self.writer.lock().conn.send_uncompressed(message)?;
        poll_fn(|cx| self.writer.poll_flush_output(cx)).await
    }

    /// Sends a message prepared once for many connections (broadcast), sharing its
    /// encoded bytes.
    pub async fn send_prepared(
        &mut self,
        message: &duplex_core::PreparedMessage,
    ) -> Result<(), Error> {
        poll_fn(|cx| self.writer.poll_ready_inner(cx)).await?;
        self.writer.lock().conn.send_prepared(message)?;
        poll_fn(|cx| self.writer.poll_flush_output(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// Receives the next message; see [`WebSocketStream::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.next().await
    }
}

impl<S: AsyncRead + AsyncWrite> WsWriter<S> {
    /// Sends a message and flushes it; see [`WebSocketStream::send`].
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.start_send_inner(message)?;
        poll_fn(|cx| self.poll_flush_output(cx)).await
    }

    /// Sends a close frame and flushes it; the reader half sees the peer's reply.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.start_close(frame)?;
        poll_fn(|cx| self.poll_flush_output(cx)).await
    }

    fn lock(&self) -> MutexGuard<'_, Shared<S>> {
        lock(&self.shared)
    }

    fn start_close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.lock().conn.close(frame, now())
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut shared = self.lock();
        while shared.conn.is_write_buffer_full() {
            ready!(shared.poll_write_out(cx, WRITER))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send_inner(&mut self, message: Message) -> Result<(), Error> {
        let mut shared = self.lock();
        match message {
            Message::Close(frame) => shared.conn.close(frame, now()),
            other => shared.conn.send(other),
        }
    }

    fn poll_flush_output(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.lock().poll_write_out(cx, WRITER).map_err(Error::Io)
    }
}

/// The tasks waiting for the socket to accept output: the reader's and the writer's.
///
/// The socket keeps one waker for writing, and both halves write to it; so it is given
/// this proxy, which wakes both, and neither half's waker can replace the other's.
#[derive(Default)]
struct WriteWakers {
    slots: Mutex<[Option<Waker>; 2]>,
}

impl WriteWakers {
    fn register(&self, who: usize, waker: &Waker) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots[who].as_ref().is_some_and(|w| w.will_wake(waker)) {
            slots[who] = Some(waker.clone());
        }
    }

    fn wake(&self, who: usize) {
        let waker = self.slots.lock().unwrap_or_else(|p| p.into_inner())[who].take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl std::task::Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        WriteWakers::wake(self, READER);
        WriteWakers::wake(self, WRITER);
    }
}

impl<S: AsyncRead + AsyncWrite> Shared<S> {
    /// Writes pending output until it is all written and flushed, or the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, who: usize) -> Poll<io::Result<()>> {
        self.write_wakers.register(who, cx.waker());
        let proxy = Waker::from(self.write_wakers.clone());
        let mut proxy_cx = Context::from_waker(&proxy);
        let mut progressed = false;
        let result = loop {
            if self.conn.output_len() == 0 {
                break Pin::new(&mut self.write).poll_flush(&mut proxy_cx);
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); 16];
                let n = self.conn.pending_output_vectored(&mut slices);
                Pin::new(&mut self.write).poll_write_vectored(&mut proxy_cx, &slices[..n])
            };
            match written {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.conn.consume_output(n);
                    progressed = true;
                }
                Poll::Ready(Err(error)) => break Poll::Ready(Err(error)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if progressed {
            // The other half may be waiting for room that we just made.
            self.write_wakers.wake(1 - who);
        }
        result
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shut_down {
            return Poll::Ready(Ok(()));
        }
        self.write_wakers.register(READER, cx.waker());
        let proxy = Waker::from(self.write_wakers.clone());
        ready!(Pin::new(&mut self.write).poll_shutdown(&mut Context::from_waker(&proxy)))?;
        self.shut_down = true;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// Shuts our side down, then discards input until end of file, an error, or the
    /// linger time (the deadline bounds the shutdown too: a TLS `close_notify` to a peer
    /// that reads nothing must not hang us); then ends.
    fn poll_close_transport(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        let until = *self
            .linger_until
            .get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
        if self.sleep.deadline() != until {
            self.sleep.as_mut().reset(until);
        }
        let finished = |this: &mut Self| {
            this.done = true;
            Poll::Ready(None)
        };
        {
            let mut shared = lock(&self.shared);
            // Errors closing a socket that is done anyway do not matter.
            if shared.poll_shutdown(cx).is_pending() {
                drop(shared);
                if self.sleep.as_mut().poll(cx).is_ready() {
                    return finished(self);
                }
                return Poll::Pending;
            }
        }
        if self.eof {
            return finished(self);
        }
        let mut drained = 0usize;
        loop {
            if tokio::time::Instant::now() >= until || drained > LINGER_MAX_BYTES {
                return finished(self);
            }
            let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read_buf = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut self.read).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) if !read_buf.filled().is_empty() => {
                    drained += read_buf.filled().len();
                }
                Poll::Ready(_) => return finished(self),
                Poll::Pending => {
                    if self.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    return finished(self);
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Stream for WsReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let mut shared = lock(&this.shared);
            let event = shared.conn.poll_event(now());
            // Write what is queued (pongs, close replies, messages fed without a flush)
            // without waiting for it: at once for anything but a data message, otherwise
            // once the input is used up or a batch is full, so that the replies to many
            // small messages read together leave in one write.
            let batch = matches!(event, Some(Ok(ref m)) if m.is_data())
                && shared.conn.output_len() < WRITE_BATCH;
            if !batch {
                if let Poll::Ready(Err(error)) = shared.poll_write_out(cx, READER) {
                    if event.is_none() {
                        this.done = true;
                        return Poll::Ready(Some(Err(Error::Io(error))));
                    }
                }
            }
            if let Some(event) = event {
                return Poll::Ready(Some(event));
            }
            if shared.conn.wants_close_transport() {
                drop(shared);
                return this.poll_close_transport(cx);
            }
            let deadline = shared.conn.poll_timeout();
            drop(shared);
            if let Some(deadline) = deadline {
                let deadline = tokio::time::Instant::from_std(deadline);
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                if this.sleep.as_mut().poll(cx).is_ready() {
                    lock(&this.shared).conn.handle_timeout(now());
                    continue;
                }
            }
            if this.eof {
                return Poll::Pending;
            }
            // Read straight into the engine's input buffer (no copy through a buffer of
            // our own). The lock is held only for this one non-blocking read.
            let mut shared = lock(&this.shared);
            let input = shared.conn.input_buffer(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.read), cx, input) {
                Poll::Pending => {
                    // Idle until the socket has more: give back what buffers hold nothing
                    // (and compression state that keeps no context).
                    if shared.conn.output_len() == 0 {
                        shared.conn.shrink_buffers();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => {
                    if shared.conn.is_closed() {
                        // A reset after the close handshake is only the peer's way of leaving.
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    shared.conn.receive_eof();
                    this.eof = true;
                    if error.kind() != io::ErrorKind::ConnectionReset {
                        this.done = true;
                        return Poll::Ready(Some(Err(Error::Io(error))));
                    }
                }
                Poll::Ready(Ok(0)) => {
                    this.eof = true;
                    shared.conn.receive_eof();
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
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
        self.get_mut().poll_flush_output(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.start_close(Some(CloseFrame::new(duplex_core::CloseCode::Normal, "")))?;
        this.poll_flush_output(cx)
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
            .field("closed", &shared.conn.is_closed())
            .field("eof", &self.eof)
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

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86400 * 365)
}
