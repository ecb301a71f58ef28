//! Connection-level protection for the HTTP server: slow, silent or stuck clients are cut off.
//!
//! poem's server (hyper underneath, without a timer) has no header-read timeout, and its
//! `idle_timeout` does not close a connection that never finished a request. So every accepted
//! socket is wrapped in a [`GuardedIo`] that enforces, without parsing HTTP:
//!
//! * a **head deadline**: from the moment the connection opens, and again from the last byte of
//!   each response, the client has [`HttpTimeouts::head`] to deliver a complete request head
//!   (request line and headers, up to the blank line). A client that sends nothing, dribbles a
//!   header a byte at a time (slowloris) or leaves a keep-alive connection idle is disconnected.
//!   Once a head is in, the request belongs to the handler, which bounds the body read itself
//!   ([`HttpTimeouts::body`], answered with 408);
//! * a **write deadline**: a response that cannot make progress for [`HttpTimeouts::write`]
//!   (the client stopped reading) ends the connection;
//! * HTTP/2 with prior knowledge (no request heads to look for) gets an idle timeout instead:
//!   [`HttpTimeouts::head`] without any byte read or written.
//!
//! The acceptor also survives accept errors (out of file descriptors, aborted handshakes) by
//! backing off instead of spinning.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use shared::config::ApiConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Instant, Sleep};

/// How long the server waits on a client; see the module documentation. Configured by
/// `api.head_timeout_ms`, `api.body_timeout_ms` and `api.write_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// To deliver a whole request head, counted from the connection's start or the end of the
    /// previous response (so also the keep-alive idle timeout).
    pub head: Duration,
    /// To deliver a request body, once its head is in (a late body is answered 408).
    pub body: Duration,
    /// For a response write to make progress.
    pub write: Duration,
}

impl HttpTimeouts {
    /// The timeouts an `[api]` configuration section asks for.
    pub fn from_config(api: &ApiConfig) -> Self {
        Self {
            head: api.head_timeout(),
            body: api.body_timeout(),
            write: api.write_timeout(),
        }
    }
}

/// The configuration's defaults (10 s each).
impl Default for HttpTimeouts {
    fn default() -> Self {
        Self::from_config(&ApiConfig::default())
    }
}

/// Wraps an acceptor so that each connection is a [`GuardedIo`].
pub struct GuardedAcceptor<A> {
    inner: A,
    timeouts: HttpTimeouts,
}

impl<A> GuardedAcceptor<A> {
    pub fn new(inner: A, timeouts: HttpTimeouts) -> Self {
        Self { inner, timeouts }
    }
}

/// Pause after a failed `accept` (typically EMFILE): poem's accept loop retries at once, which
/// would spin a core until a descriptor frees up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            match self.inner.accept().await {
                Ok((io, local, remote, scheme)) => {
                    return Ok((GuardedIo::new(io, self.timeouts), local, remote, scheme))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; backing off");
                    sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// The start of an HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head; `content` once a byte other than CR/LF arrived (HTTP
    /// ignores empty lines before a request line), `newlines` counts line ends in a row.
    AwaitingHead { content: bool, newlines: u8 },
    /// A head arrived; the handler owns the request until the response is written.
    InRequest,
    /// HTTP/2: any traffic counts as life.
    Idle,
}

/// A connection with deadlines; see the module documentation.
pub struct GuardedIo<T> {
    inner: T,
    timeouts: HttpTimeouts,
    phase: Phase,
    /// Bytes seen from the start, to recognise the HTTP/2 preface (only the first few count).
    read_so_far: usize,
    /// Armed while `phase` is `AwaitingHead` or `Idle`.
    deadline: Pin<Box<Sleep>>,
    /// Armed while a write is pending.
    write_stall: Option<Pin<Box<Sleep>>>,
    /// The task waiting to read, woken when a write makes the deadline apply again (its last
    /// `poll_read` may have found no deadline to wait on).
    reader: Option<Waker>,
}

impl<T> GuardedIo<T> {
    pub fn new(inner: T, timeouts: HttpTimeouts) -> Self {
        Self {
            inner,
            timeouts,
            phase: Phase::AwaitingHead {
                content: false,
                newlines: 0,
            },
            read_so_far: 0,
            deadline: Box::pin(sleep(timeouts.head)),
            write_stall: None,
            reader: None,
        }
    }

    fn deadline_applies(&self) -> bool {
        !matches!(self.phase, Phase::InRequest)
    }

    fn rearm(&mut self) {
        self.deadline
            .as_mut()
            .reset(Instant::now() + self.timeouts.head);
    }

    /// Follows the request framing far enough to know when a head is complete.
    fn observe_read(&mut self, bytes: &[u8]) {
        if self.read_so_far < H2_PREFACE.len() {
            let start = self.read_so_far;
            let end = (start + bytes.len()).min(H2_PREFACE.len());
            if bytes[..end - start] == H2_PREFACE[start..end] {
                if end == H2_PREFACE.len() {
                    self.phase = Phase::Idle;
                }
            } else {
                // Not HTTP/2: stop comparing.
                self.read_so_far = H2_PREFACE.len();
            }
        }
        self.read_so_far = self.read_so_far.saturating_add(bytes.len());
        match &mut self.phase {
            Phase::Idle => self.rearm(),
            Phase::InRequest => {}
            Phase::AwaitingHead { content, newlines } => {
                for &b in bytes {
                    match b {
                        b'\n' if *content => {
                            *newlines += 1;
                            if *newlines == 2 {
                                self.phase = Phase::InRequest;
                                return;
                            }
                        }
                        b'\n' | b'\r' => {}
                        _ => {
                            *content = true;
                            *newlines = 0;
                        }
                    }
                }
            }
        }
    }

    /// A response byte went out: the next request's head is due within the head timeout.
    fn observe_write(&mut self) {
        if self.phase != Phase::Idle {
            self.phase = Phase::AwaitingHead {
                content: false,
                newlines: 0,
            };
        }
        self.rearm();
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = &buf.filled()[before..];
                if !filled.is_empty() {
                    this.observe_read(filled);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.deadline_applies() && this.deadline.as_mut().poll(cx).is_ready() {
                    tracing::debug!("closing a connection: no complete request in time");
                    return Poll::Ready(Err(timed_out("client too slow to send a request")));
                }
                this.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    fn poll_progress<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_stall = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let write = self.timeouts.write;
                let stall = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(sleep(write)));
                if stall.as_mut().poll(cx).is_ready() {
                    tracing::debug!("closing a connection: the client stopped reading");
                    return Poll::Ready(Err(timed_out("client stopped reading the response")));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = this.poll_progress(cx, |io, cx| io.poll_write(cx, buf));
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.observe_write();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = this.poll_progress(cx, |io, cx| io.poll_write_vectored(cx, bufs));
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.observe_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_progress(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_progress(cx, |io, cx| io.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::*;

    const SHORT: Duration = Duration::from_millis(150);

    fn short() -> HttpTimeouts {
        HttpTimeouts {
            head: SHORT,
            body: SHORT,
            write: SHORT,
        }
    }

    #[test]
    fn timeouts_follow_the_api_configuration() {
        let config = ApiConfig {
            head_timeout_ms: 1_500,
            body_timeout_ms: 250,
            write_timeout_ms: 4_000,
            ..ApiConfig::default()
        };
        assert_eq!(
            HttpTimeouts::from_config(&config),
            HttpTimeouts {
                head: Duration::from_millis(1_500),
                body: Duration::from_millis(250),
                write: Duration::from_secs(4),
            }
        );
        let ten = Duration::from_secs(10);
        assert_eq!(
            HttpTimeouts::default(),
            HttpTimeouts {
                head: ten,
                body: ten,
                write: ten
            }
        );
    }

    #[tokio::test]
    async fn a_silent_client_is_cut_off_at_the_head_deadline() {
        let (_client, server) = duplex(1024);
        let mut io = GuardedIo::new(server, short());
        let started = std::time::Instant::now();
        let error = io.read(&mut [0u8; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= SHORT);
    }

    #[tokio::test]
    async fn a_slowloris_is_cut_off_although_it_keeps_sending() {
        let (mut client, server) = duplex(1024);
        let mut io = GuardedIo::new(server, short());
        let dribble = tokio::spawn(async move {
            for byte in b"GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if client.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let error = loop {
            match io.read(&mut buf).await {
                Ok(0) => panic!("the client gave up first"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < SHORT * 3, "{:?}", started.elapsed());
        dribble.abort();
    }

    #[tokio::test]
    async fn a_request_in_progress_has_no_deadline_until_its_response_is_written() {
        let (mut client, server) = duplex(1024);
        let mut io = GuardedIo::new(server, short());
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        // The handler is slow, the client sends a body late: no deadline applies.
        tokio::time::sleep(SHORT * 2).await;
        client.write_all(b"late body").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 9);
        // Once the response went out, the next head is due within the deadline.
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let error = io.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off_at_the_write_deadline() {
        let (_client, server) = duplex(64);
        let mut io = GuardedIo::new(server, short());
        let started = std::time::Instant::now();
        let error = io.write_all(&[b'x'; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= SHORT);
    }

    fn guarded() -> GuardedIo<()> {
        GuardedIo {
            inner: (),
            timeouts: HttpTimeouts::default(),
            phase: Phase::AwaitingHead {
                content: false,
                newlines: 0,
            },
            read_so_far: 0,
            deadline: Box::pin(sleep(Duration::from_secs(1))),
            write_stall: None,
            reader: None,
        }
    }

    #[tokio::test]
    async fn a_head_is_complete_at_its_blank_line_whatever_the_chunks() {
        for chunks in [
            vec!["GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
            vec!["GET / HTTP/1.1\r\nHost: x\r", "\n", "\r", "\n"],
            vec!["GET / HTTP/1.1\nHost: x\n\n"],
            vec!["\r\n\r\n", "GET / HTTP/1.1\r\n", "Host: x\r\n", "\r\n"],
        ] {
            let mut io = guarded();
            for (i, chunk) in chunks.iter().enumerate() {
                assert!(io.deadline_applies(), "{chunks:?} complete early at {i}");
                io.observe_read(chunk.as_bytes());
            }
            assert_eq!(io.phase, Phase::InRequest, "{chunks:?}");
            io.observe_write();
            assert!(io.deadline_applies(), "the next head is due again");
        }
    }

    #[tokio::test]
    async fn partial_heads_and_empty_lines_keep_the_deadline() {
        let mut io = guarded();
        io.observe_read(b"\r\n\r\n\n\n");
        assert!(io.deadline_applies(), "empty lines are no request");
        io.observe_read(b"POST /pedidos HTTP/1.1\r\nHost: x\r\nX-Slow: a");
        io.observe_read(b"b\r\nX-Slow-2: c");
        assert!(io.deadline_applies());
    }

    #[tokio::test]
    async fn http2_prior_knowledge_gets_an_idle_timeout() {
        let mut io = guarded();
        io.observe_read(b"PRI * HTTP/2.0\r");
        io.observe_read(b"\n\r\nSM\r\n\r\n\0\0");
        assert_eq!(io.phase, Phase::Idle);
        io.observe_write();
        assert_eq!(io.phase, Phase::Idle);
        assert!(io.deadline_applies());
    }
}
