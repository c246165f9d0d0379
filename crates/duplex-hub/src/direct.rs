//! A Redis connection that the task using it drives itself (features `redis` and
//! `tokio`): no connection task in between, what Redis sends is read by the caller, on
//! the caller's runtime. The node's pub/sub connection, on a multi-thread runtime
//! (`listen_async` in `redis.rs`): the task that reads it delivers what it reads, so a
//! message from Redis costs no hand-over from another thread. It answers commands too
//! (`redis::aio::ConnectionLike`: the `AUTH` and `SELECT` of its start).
//!
//! Not for the publishes: a task woken by its socket is queued behind every task
//! already runnable (on a loaded node, each subscriber's), where one woken by the
//! multiplexed connection's task takes the worker's next turn; measured under
//! saturation (1,000 subscribers, 50,000 deliveries/s on 2 cores), publishing through
//! it fell behind and latency grew to seconds.
//!
//! Plain TCP only (the `redis` dependency is built without TLS); other addresses keep
//! the pub/sub thread. A request that did not finish (an error or a time-out dropped it
//! midway) leaves the connection in an unknown state: the caller drops it.

use redis::{Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) struct Direct {
    stream: TcpStream,
    /// Bytes read and not yet parsed (a reply is normally read whole, so this is empty
    /// between requests).
    input: Vec<u8>,
    db: i64,
}

impl Direct {
    /// Whether `info` is an address this connection can reach.
    pub(crate) fn supports(info: &ConnectionInfo) -> bool {
        matches!(info.addr, ConnectionAddr::Tcp(..))
    }

    /// Connects and authenticates (and selects the database) as `info` says. The
    /// caller bounds the time.
    pub(crate) async fn connect(info: &ConnectionInfo) -> RedisResult<Self> {
        let ConnectionAddr::Tcp(host, port) = &info.addr else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a direct connection is plain TCP only",
            )));
        };
        let stream = TcpStream::connect((host.as_str(), *port)).await?;
        stream.set_nodelay(true)?;
        let mut direct = Self {
            stream,
            input: Vec::with_capacity(512),
            db: info.redis.db,
        };
        if let Some(password) = &info.redis.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &info.redis.username {
                auth.arg(user);
            }
            auth.arg(password);
            auth.query_async::<()>(&mut direct).await?;
        }
        if info.redis.db != 0 {
            redis::cmd("SELECT")
                .arg(info.redis.db)
                .query_async::<()>(&mut direct)
                .await?;
        }
        Ok(direct)
    }

    /// Writes `packed` and reads `replies` replies.
    async fn request(&mut self, packed: &[u8], replies: usize) -> RedisResult<Vec<Value>> {
        self.stream.write_all(packed).await?;
        let mut out = Vec::with_capacity(replies);
        while out.len() < replies {
            out.push(self.next_value().await?);
        }
        Ok(out)
    }

    /// Writes a command without waiting for its answer (a pub/sub connection's
    /// `SUBSCRIBE`: the answer comes among the messages).
    pub(crate) async fn send(&mut self, cmd: &Cmd) -> RedisResult<()> {
        self.stream.write_all(&cmd.get_packed_command()).await?;
        Ok(())
    }

    /// The next value Redis sends. Cancel-safe: what was read stays for the next call.
    pub(crate) async fn next_value(&mut self) -> RedisResult<Value> {
        loop {
            match value_end(&self.input, 0) {
                Some(Ok(end)) => {
                    let value = redis::parse_redis_value(&self.input[..end]);
                    self.input.drain(..end);
                    return value;
                }
                Some(Err(())) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ParseError,
                        "malformed reply from Redis",
                    )));
                }
                None => {
                    self.input.reserve(4096);
                    if self.stream.read_buf(&mut self.input).await? == 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                    }
                }
            }
        }
    }
}

impl redis::aio::ConnectionLike for Direct {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let packed = cmd.get_packed_command();
            let mut replies = self.request(&packed, 1).await?;
            Ok(replies.pop().unwrap_or(Value::Nil))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let packed = pipeline.get_packed_pipeline();
            let replies = self.request(&packed, offset + count).await?;
            Ok(replies.into_iter().skip(offset).collect())
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// Where the RESP (2 or 3) value starting at `at` ends: `None` while it is incomplete,
/// `Err` when it is not RESP.
fn value_end(buf: &[u8], at: usize) -> Option<Result<usize, ()>> {
    let kind = *buf.get(at)?;
    let line = at + 1 + buf.get(at + 1..)?.windows(2).position(|w| w == b"\r\n")?;
    let end = line + 2;
    let number = || -> Result<i64, ()> {
        std::str::from_utf8(&buf[at + 1..line])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(())
    };
    match kind {
        // Blobs: string, verbatim string, error.
        b'$' | b'=' | b'!' => {
            let n = match number() {
                Ok(n) => n,
                Err(()) => return Some(Err(())),
            };
            if n < 0 {
                return Some(Ok(end));
            }
            let stop = end + n as usize + 2;
            (buf.len() >= stop).then_some(Ok(stop))
        }
        // Aggregates: array, set, push, map and attribute (pairs).
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = match number() {
                Ok(n) => n,
                Err(()) => return Some(Err(())),
            };
            if n < 0 {
                return Some(Ok(end));
            }
            let items = if matches!(kind, b'%' | b'|') {
                2 * n
            } else {
                n
            };
            let mut pos = end;
            for _ in 0..items {
                pos = match value_end(buf, pos)? {
                    Ok(p) => p,
                    Err(()) => return Some(Err(())),
                };
            }
            // An attribute comes before the value it describes.
            if kind == b'|' {
                value_end(buf, pos)
            } else {
                Some(Ok(pos))
            }
        }
        // One line: simple string, error, integer, null, boolean, double, big number.
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Some(Ok(end)),
        _ => Some(Err(())),
    }
}

#[cfg(test)]
mod tests {
    use super::value_end;

    #[test]
    fn whole_values_are_found_and_partial_ones_wait() {
        let reply = b"*2\r\n$3\r\n123\r\n:7\r\n";
        assert_eq!(value_end(reply, 0), Some(Ok(reply.len())));
        for cut in 0..reply.len() {
            assert_eq!(value_end(&reply[..cut], 0), None, "cut at {cut}");
        }
        assert_eq!(value_end(b"-NOSCRIPT x\r\n+OK\r\n", 0), Some(Ok(13)));
        assert_eq!(value_end(b"$-1\r\n", 0), Some(Ok(5)));
        assert_eq!(value_end(b"*0\r\n", 0), Some(Ok(4)));
        assert_eq!(value_end(b"%1\r\n+a\r\n:1\r\n", 0), Some(Ok(12)));
        assert_eq!(value_end(b"$x\r\n", 0), Some(Err(())));
        assert_eq!(value_end(b"?\r\n", 0), Some(Err(())));
    }
}
