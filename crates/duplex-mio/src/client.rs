//! A blocking WebSocket client over `std::net::TcpStream` (plain `ws://`, no TLS).
//!
//! ```no_run
//! use duplex_mio::Message;
//!
//! let mut socket = duplex_mio::client::connect("ws://127.0.0.1:9002/chat")?;
//! socket.send(Message::text("hello"))?;
//! let reply = socket.recv()?;
//! println!("{reply:?}");
//! socket.close(None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use duplex_core::{CloseFrame, Connection, EngineConfig, Error, Message, Role, TransportAction};
use duplex_handshake::http::Response;
use duplex_handshake::{ClientHandshake, DeflateConfig, HandshakeError};

/// The client's opening request (subprotocols, headers), for [`connect_with`].
pub use duplex_handshake::ClientRequest;

/// How [`connect_with`] connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    engine: EngineConfig,
    deflate: Option<DeflateConfig>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    read_buffer_size: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            deflate: Some(DeflateConfig::default()),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: duplex_handshake::DEFAULT_HANDSHAKE_TIMEOUT,
            read_buffer_size: 64 << 10,
        }
    }
}

impl ClientConfig {
    /// The WebSocket engine's limits and timers (default `EngineConfig::default()`).
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// The permessage-deflate offer (default: offered; `None` offers nothing). Used when
    /// the request passed to [`connect_with`] does not carry an offer of its own.
    pub fn deflate(mut self, offer: Option<DeflateConfig>) -> Self {
        self.deflate = offer;
        self
    }

    /// How long to wait for the TCP connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the server's 101 response (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The size of the socket read buffer (default 64 KiB).
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes.max(512);
        self
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// Resolving, connecting, writing the request or reading the response failed (a
    /// timeout is `io::ErrorKind::TimedOut`).
    Io(io::Error),
    /// The URL or the server's response is not a valid WebSocket handshake (a refusal
    /// is `HandshakeError::Refused` with the server's status, headers and body).
    Handshake(HandshakeError),
    /// `wss://` URLs need TLS, which this client does not do.
    TlsNotSupported,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "I/O error: {error}"),
            Self::Handshake(error) => write!(f, "handshake failed: {error}"),
            Self::TlsNotSupported => f.write_str("wss:// needs TLS, which this client lacks"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::Handshake(error) => Some(error),
            Self::TlsNotSupported => None,
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl From<HandshakeError> for ConnectError {
    fn from(error: HandshakeError) -> Self {
        Self::Handshake(error)
    }
}

/// Connects to a `ws://` URL with the default [`ClientConfig`].
pub fn connect(url: &str) -> Result<WebSocket, ConnectError> {
    connect_with(ClientRequest::new(url)?, &ClientConfig::default())
}

/// Connects with a prepared request (subprotocols, headers) and `config`.
pub fn connect_with(
    request: ClientRequest,
    config: &ClientConfig,
) -> Result<WebSocket, ConnectError> {
    if request.is_tls() {
        return Err(ConnectError::TlsNotSupported);
    }
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    let mut stream = None;
    for addr in (request.host().trim_matches(['[', ']']), request.port()).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, config.connect_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(error) => last_error = error,
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    stream.set_nodelay(true)?;
    let request = match request.deflate_config() {
        Some(_) => request,
        None => request.deflate(config.deflate),
    };
    let (bytes, mut handshake) = request.encode();
    let deadline = Instant::now() + config.handshake_timeout;
    stream.set_write_timeout(Some(config.handshake_timeout))?;
    stream.write_all(&bytes)?;
    stream.set_write_timeout(None)?;
    let mut buf = vec![0u8; config.read_buffer_size].into_boxed_slice();
    let (response, negotiated, rest) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A refusal whose body did not finish in time is still the server's answer.
        let timed_out = |handshake: &mut ClientHandshake| match handshake.finish() {
            HandshakeError::Incomplete => io::Error::from(io::ErrorKind::TimedOut).into(),
            refused => ConnectError::Handshake(refused),
        };
        if left.is_zero() {
            return Err(timed_out(&mut handshake));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            // A refusal's body may end with the connection.
            Ok(0) => return Err(handshake.finish().into()),
            Ok(n) => n,
            Err(error) if is_timeout(&error) => return Err(timed_out(&mut handshake)),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        };
        if let Some(done) = handshake.feed(&buf[..n])? {
            break done;
        }
    };
    let mut conn = Connection::new(Role::Client, config.engine.clone());
    if let Some(params) = negotiated.deflate {
        conn.enable_deflate(params);
    }
    conn.receive(&rest);
    Ok(WebSocket {
        stream,
        conn,
        buf,
        read_timeout: None,
        socket_timeout: Some(Duration::ZERO),
        write_timeout: None,
        socket_write_timeout: Some(Duration::ZERO),
        response,
        protocol: negotiated.protocol,
        closed: false,
    })
}

/// A blocking WebSocket connection (client side).
///
/// [`recv`](Self::recv) answers pings and the server's close frame by itself, and runs
/// the engine's timers (keepalive, close timeout) while it waits.
pub struct WebSocket {
    stream: TcpStream,
    conn: Connection,
    buf: Box<[u8]>,
    read_timeout: Option<Duration>,
    /// The read timeout currently set on the socket (to avoid a syscall per read).
    socket_timeout: Option<Duration>,
    /// How long one `send` may block, as the application set it.
    write_timeout: Option<Duration>,
    /// The write timeout currently set on the socket.
    socket_write_timeout: Option<Duration>,
    response: Response<()>,
    protocol: Option<String>,
    closed: bool,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("peer", &self.stream.peer_addr().ok())
            .field("protocol", &self.protocol)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    /// Sends a message and writes it (and anything owed, like pongs) to the socket.
    /// After the server closed, this returns [`Error::ConnectionClosed`]; after our own
    /// close, `Usage(SendAfterClose)`; after a failure (a timeout, a protocol error), that
    /// failure.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        match message.into() {
            Message::Close(frame) => return self.close(frame),
            message => self.conn.send(message)?,
        }
        if self.closed {
            return Err(Error::ConnectionClosed);
        }
        self.flush()
    }

    /// Waits for the next message: text, binary, ping, pong, or the server's close
    /// (after which the connection is closed and further calls return
    /// `Error::ConnectionClosed`). Errors that fail the connection have already sent
    /// the close frame. With a read timeout set, waiting longer returns
    /// `Error::Io` of kind `TimedOut` (the connection stays usable).
    pub fn recv(&mut self) -> Result<Message, Error> {
        let started = Instant::now();
        loop {
            match self.step(started)? {
                Some(Ok(Message::Close(frame))) => {
                    self.finish();
                    return Ok(Message::Close(frame));
                }
                Some(Ok(message)) => return Ok(message),
                Some(Err(error)) => {
                    self.finish();
                    return Err(error);
                }
                None => {}
            }
        }
    }

    /// Starts the close handshake with `frame` and waits (up to the engine's close
    /// timeout) for the server to answer and close the connection; messages that arrive
    /// meanwhile are discarded.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.conn.close(frame, Instant::now())?;
        self.flush()?;
        let started = Instant::now();
        let saved = self.read_timeout.take();
        let result = loop {
            match self.step(started) {
                // As duplex-tokio's `close`: what the peer sent wrong after our close does
                // not matter; a deadline (the peer never answered) or a vanished peer does.
                Ok(Some(Err(Error::Protocol(_) | Error::LimitExceeded(_)))) => {}
                Ok(Some(Err(error))) => break Err(error),
                // A failure the engine has not reported yet (the close deadline passed).
                Ok(_) if self.conn.is_transport_ending() => {
                    match self.conn.poll_event(Instant::now()) {
                        Some(Err(error))
                            if !matches!(error, Error::Protocol(_) | Error::LimitExceeded(_)) =>
                        {
                            break Err(error);
                        }
                        _ => break Ok(()),
                    }
                }
                Ok(_) => {}
                Err(Error::ConnectionClosed) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        self.read_timeout = saved;
        self.finish();
        result
    }

    /// How long [`recv`](Self::recv) waits for a message (`None`: forever, the default).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a zero read timeout is not allowed",
            ));
        }
        self.read_timeout = timeout;
        Ok(())
    }

    /// How long one [`send`](Self::send) may block on a server that does not read
    /// before it returns `Error::Io` of kind `TimedOut` (default: no limit of its own).
    /// Whatever it is, the engine's write timeout fails a connection whose server reads
    /// (almost) nothing for that long.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a zero write timeout is not allowed",
            ));
        }
        self.write_timeout = timeout;
        Ok(())
    }

    /// The server's 101 response.
    pub fn response(&self) -> &Response<()> {
        &self.response
    }

    /// True when permessage-deflate was negotiated.
    pub fn is_compressed(&self) -> bool {
        self.conn.is_deflate_enabled()
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// One step: an event if the engine has one, else one read (or timer).
    fn step(&mut self, started: Instant) -> Result<Option<Result<Message, Error>>, Error> {
        let now = Instant::now();
        if let Some(event) = self.conn.poll_event(now) {
            // Pongs, the close reply, or the close frame of an error.
            let flushed = self.flush();
            if event.is_ok() {
                flushed?;
            }
            return Ok(Some(event));
        }
        if self.closed || self.conn.is_transport_ending() {
            self.finish();
            return Err(Error::ConnectionClosed);
        }
        let user = self.read_timeout.map(|t| started + t);
        let engine = self.conn.poll_timeout();
        if engine.is_some_and(|d| d <= now) {
            self.conn.handle_timeout(now);
            self.flush()?;
            return Ok(None);
        }
        if user.is_some_and(|d| d <= now) {
            return Err(Error::Io(io::Error::from(io::ErrorKind::TimedOut)));
        }
        let wait = [user, engine].into_iter().flatten().min().map(|d| {
            d.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        if self.socket_timeout != wait {
            self.stream.set_read_timeout(wait)?;
            self.socket_timeout = wait;
        }
        match self.stream.read(&mut self.buf) {
            Ok(0) => self.conn.receive_eof(),
            Ok(n) => self.conn.receive(&self.buf[..n]),
            Err(error) if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted => {}
            // The engine decides what it means (a reset is the server leaving) and
            // reports it as the next event.
            Err(error) => self.conn.transport_failed(&error, now),
        }
        Ok(None)
    }

    /// Writes all pending output, blocking no longer than the engine's deadlines (write
    /// stall, close) and the application's write timeout allow.
    fn flush(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        while self.conn.output_len() > 0 {
            let now = Instant::now();
            // Runs what is due and arms the write-stall deadline for pending output.
            self.conn.handle_timeout(now);
            if self.conn.poll_transport(now) == TransportAction::Close {
                self.closed = true;
                return Err(self.conn.failure().unwrap_or(Error::ConnectionClosed));
            }
            let user = self.write_timeout.map(|t| started + t);
            if user.is_some_and(|d| d <= now) {
                return Err(Error::Io(io::Error::from(io::ErrorKind::TimedOut)));
            }
            let wait = [user, self.conn.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map(|d| {
                    d.saturating_duration_since(now)
                        .max(Duration::from_millis(1))
                });
            if self.socket_write_timeout != wait {
                self.stream.set_write_timeout(wait)?;
                self.socket_write_timeout = wait;
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); 16];
                let n = self.conn.pending_output_vectored(&mut slices);
                self.stream.write_vectored(&slices[..n])
            };
            match written {
                Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.conn.consume_output(n),
                Err(error) if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.conn.transport_failed(&error, Instant::now());
                    return Err(Error::Io(error));
                }
            }
        }
        Ok(())
    }

    /// After the close frames or a failure: does what the engine decides for the
    /// transport (wait for the server to close TCP, shut our side down, drain), each
    /// step bounded by the engine's deadlines.
    fn finish(&mut self) {
        if self.closed {
            return;
        }
        let _ = self.flush();
        loop {
            let now = Instant::now();
            if self.conn.poll_event(now).is_some() {
                continue;
            }
            match self.conn.poll_transport(now) {
                TransportAction::Close => break,
                TransportAction::ShutdownWrite => {
                    match self.stream.shutdown(Shutdown::Write) {
                        Ok(()) => self.conn.shutdown_done(),
                        Err(error) => self.conn.transport_failed(&error, now),
                    }
                    continue;
                }
                TransportAction::Continue | TransportAction::Drain => {}
            }
            let Some(deadline) = self.conn.poll_timeout() else {
                break;
            };
            if deadline <= now {
                self.conn.handle_timeout(now);
                continue;
            }
            let wait = Some((deadline - now).max(Duration::from_millis(1)));
            if self.stream.set_read_timeout(wait).is_err() {
                break;
            }
            self.socket_timeout = wait;
            match self.stream.read(&mut self.buf) {
                Ok(0) => self.conn.receive_eof(),
                Ok(n) => self.conn.receive(&self.buf[..n]),
                Err(error) if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => self.conn.transport_failed(&error, now),
            }
        }
        self.closed = true;
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
