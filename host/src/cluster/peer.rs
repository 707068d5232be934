//! HTTP/1.1 connections to the other agents: the forwarding path's client, kept lean on purpose.
//!
//! Why not hyper's client: a forwarded request is the agent's hottest fleet path, and with
//! hyper-util's pooled client the forwarding agent spent about 61,000 instructions on a
//! forwarded `/v1/client/stats` (callgrind), three times the 19,000 the holder spends answering
//! it: a task per connection with a channel hand-off each way, a pool checkout keyed by parsed
//! URI parts, a `Host` header formatted per request, and the answer's headers parsed into a map
//! from which the hop-by-hop ones were then removed by name. Here the request's own task
//! writes a head prepared in one buffer to a kept-alive connection and parses the answer's head
//! with httparse (hyper's own parser), leaving out hop-by-hop headers as it builds the map.
//!
//! The peer is always another allocd, whose server is hyper's HTTP/1.1 server, so what is needed
//! is small and complete here: a request without a body; an answer framed by `Content-Length`,
//! by chunked transfer coding (trailers skipped) or by the connection closing; informational
//! answers skipped; `Connection: close` honoured. A kept-alive connection the holder has closed
//! meanwhile (its idle timeout, a restart) is noticed when it answers nothing at all, and the
//! request goes again on another connection, for GET and HEAD only: any other method always
//! gets a fresh connection, so it is never sent twice.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use warp::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use warp::http::{Method, StatusCode};

use super::lock;

/// How long reaching an agent (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an unused connection to another agent stays open: less than the 30 s after which
/// the agent's server closes a connection that sends no request (`server.rs`), so that a kept
/// connection is rarely found closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(25);
/// Unused connections kept per agent (the rest are closed).
const MAX_IDLE_PER_AGENT: usize = 64;
/// The largest answer head accepted, and the most headers in it.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Bytes asked of the socket per read: heads and small answers, then streamed bodies.
const HEAD_READ: usize = 8 * 1024;
const BODY_READ: usize = 256 * 1024;
/// The most read-buffer capacity an idle connection keeps.
const IDLE_BUFFER: usize = 64 * 1024;
/// Streamed body pieces under this many bytes are copied out of the read buffer.
const COPY_UNDER: usize = BODY_READ / 8;

/// Headers that belong to one connection, never relayed (RFC 9110 §7.6.1), besides those the
/// `Connection` header names. `content-length` and `expect` also stay behind a request: a
/// relayed request carries no body.
const HOP_BY_HOP: [&str; 8] =
    ["connection", "host", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// Whether `name` (in any case) is a hop-by-hop header or one that `connection` names.
fn is_hop_by_hop(name: &str, connection: &[&str]) -> bool {
    HOP_BY_HOP.iter().chain(connection).any(|hop| name.eq_ignore_ascii_case(hop))
}

/// The header names a `Connection` header's values list.
fn connection_names<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<&'a str> {
    values
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect()
}

/// A byte stream to an agent: TCP, or TLS over it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// An agent's advertised base URL taken apart (`http://host:port` or `https://host:port`).
#[derive(Debug, PartialEq)]
pub struct Destination<'a> {
    tls: bool,
    /// The host without IPv6 brackets.
    host: &'a str,
    port: u16,
    /// `host:port` as advertised: the `Host` header.
    authority: &'a str,
}

impl<'a> Destination<'a> {
    pub fn parse(address: &'a str) -> Option<Self> {
        let (tls, rest) = match address.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, address.strip_prefix("http://")?),
        };
        let authority = rest.trim_end_matches('/');
        // (it goes into the Host header as it is)
        if authority.contains('@') || authority.parse::<warp::http::uri::Authority>().is_err() {
            return None;
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !authority.ends_with(']') => (host, port.parse().ok()?),
            _ => (authority, default_port),
        };
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        (!host.is_empty()).then_some(Self { tls, host, port, authority })
    }

    pub fn authority(&self) -> &'a str {
        self.authority
    }
}

/// A request's head: `method target HTTP/1.1`, `Host`, the caller's headers but the hop-by-hop
/// ones, and `extra` headers, in one buffer.
pub fn request_head(
    method: &Method,
    target: (&str, &str),
    authority: &str,
    headers: &HeaderMap,
    extra: &[(&str, &HeaderValue)],
) -> Vec<u8> {
    let (path, query) = target;
    let mut head = Vec::with_capacity(256 + path.len() + query.len() + headers.len() * 48);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        head.push(b'?');
        head.extend_from_slice(query.as_bytes());
    }
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\n");
    let connection = connection_names(headers.get_all(header::CONNECTION).iter().map(HeaderValue::as_bytes));
    let mut put = |name: &str, value: &HeaderValue| {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    };
    for (name, value) in headers {
        let name = name.as_str();
        if !is_hop_by_hop(name, &connection) && name != "content-length" && name != "expect" {
            put(name, value);
        }
    }
    for (name, value) in extra {
        put(name, value);
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    /// After this many bytes (no body at all: 0).
    Length(u64),
    Chunked,
    /// When the holder closes the connection.
    UntilClose,
}

/// An answer's head: what is relayed, and how to read the body.
pub struct AnswerHead {
    pub status: StatusCode,
    /// Every header but the hop-by-hop ones.
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection can carry another request once the body is read.
    pub keep_alive: bool,
}

/// One connection to an agent, with the bytes read from it and not consumed yet.
pub struct Conn {
    io: Box<dyn Transport>,
    buf: BytesMut,
    /// Some byte of an answer arrived since the request was written.
    answered: bool,
}

impl Conn {
    /// Reads more of the connection; an early end is an error.
    async fn fill(&mut self, at_least: usize) -> io::Result<()> {
        self.buf.reserve(at_least);
        if self.io.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the agent closed the connection"));
        }
        self.answered = true;
        Ok(())
    }

    /// Writes `head` and reads the answer's head (informational answers skipped).
    async fn ask(&mut self, head: &[u8], method: &Method) -> io::Result<AnswerHead> {
        self.answered = false;
        self.io.write_all(head).await?;
        self.io.flush().await?;
        loop {
            if self.buf.is_empty() {
                self.fill(HEAD_READ).await?;
            }
            // (left uninitialised: httparse writes the slots it fills)
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut answer = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut answer, &self.buf, &mut slots)
                .map_err(|err| invalid(format!("a malformed answer: {err}")))?;
            let httparse::Status::Complete(len) = parsed else {
                if self.buf.len() >= MAX_HEAD {
                    return Err(invalid("an answer head larger than 64 KiB"));
                }
                self.fill(HEAD_READ).await?;
                continue;
            };
            let Some((mut head, fields)) = answer_head(&answer, method, self.buf.as_ptr() as usize)? else {
                self.buf.advance(len);
                continue;
            };
            // The values share the head's bytes instead of being copied one by one.
            let bytes = self.buf.split_to(len).freeze();
            for (name, value) in fields {
                let value =
                    HeaderValue::from_maybe_shared(bytes.slice(value)).map_err(|_| invalid("a bad header value"))?;
                head.headers.append(name, value);
            }
            return Ok(head);
        }
    }

    /// The next piece of a body read as `framing` says, `None` at its end; `reading` keeps the
    /// position between calls.
    pub async fn next_piece(&mut self, reading: &mut BodyReading) -> io::Result<Option<Bytes>> {
        loop {
            match *reading {
                BodyReading::Done => return Ok(None),
                BodyReading::Remaining(0) => *reading = BodyReading::Done,
                BodyReading::Remaining(left) => {
                    let piece = self.take(left).await?;
                    *reading = BodyReading::Remaining(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                BodyReading::UntilClose => {
                    if self.buf.is_empty() {
                        self.buf.reserve(BODY_READ);
                        if self.io.read_buf(&mut self.buf).await? == 0 {
                            *reading = BodyReading::Done;
                            continue;
                        }
                    }
                    return Ok(Some(self.piece(self.buf.len())));
                }
                // (httparse takes a line without digits for 0; hyper always writes some)
                BodyReading::ChunkSize if self.buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                    return Err(invalid("a malformed chunk size"));
                }
                BodyReading::ChunkSize => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.advance(used);
                        *reading = if size == 0 { BodyReading::Trailers } else { BodyReading::Chunk(size) };
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_LINE => self.fill(HEAD_READ).await?,
                    _ => return Err(invalid("a malformed chunk size")),
                },
                BodyReading::Chunk(0) => {
                    while self.buf.len() < 2 {
                        self.fill(HEAD_READ).await?;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(invalid("a chunk not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    *reading = BodyReading::ChunkSize;
                }
                BodyReading::Chunk(left) => {
                    let piece = self.take(left).await?;
                    *reading = BodyReading::Chunk(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                BodyReading::Trailers => match self.buf.windows(2).position(|w| w == b"\r\n") {
                    // The empty line ends the body; a trailer field is left out.
                    Some(0) => {
                        self.buf.advance(2);
                        *reading = BodyReading::Done;
                    }
                    Some(end) => self.buf.advance(end + 2),
                    None if self.buf.len() < MAX_LINE => self.fill(HEAD_READ).await?,
                    None => return Err(invalid("a trailer line longer than 4 KiB")),
                },
            }
        }
    }

    /// Up to `left` bytes of the body, reading when none are buffered.
    async fn take(&mut self, left: u64) -> io::Result<Bytes> {
        if self.buf.is_empty() {
            self.fill(BODY_READ.min(usize::try_from(left).unwrap_or(BODY_READ))).await?;
        }
        let n = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        Ok(self.piece(n))
    }

    /// The next `n` buffered bytes as a piece of the body. A piece holds its read buffer while
    /// it is queued, and the body channel's budget counts only its length: a small one (a
    /// follower's frame, a slow sender's few KiB) is copied out and the buffer stays this
    /// connection's for the next read; a large one takes the buffer along, and the connection
    /// keeps none of it.
    fn piece(&mut self, n: usize) -> Bytes {
        if n < COPY_UNDER {
            let piece = Bytes::copy_from_slice(&self.buf[..n]);
            self.buf.advance(n);
            return piece;
        }
        let piece = self.buf.split_to(n).freeze();
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        piece
    }

    /// A body of `len` bytes read whole.
    pub async fn whole_body(&mut self, len: usize) -> io::Result<Bytes> {
        while self.buf.len() < len {
            self.fill(len - self.buf.len()).await?;
        }
        let body = self.buf.split_to(len).freeze();
        if self.buf.is_empty() {
            // (the rest of the allocation stays with the body)
            self.buf = BytesMut::new();
        }
        Ok(body)
    }
}

/// Where reading a body is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BodyReading {
    Remaining(u64),
    UntilClose,
    ChunkSize,
    Chunk(u64),
    Trailers,
    Done,
}

impl From<Framing> for BodyReading {
    fn from(framing: Framing) -> Self {
        match framing {
            Framing::Length(len) => Self::Remaining(len),
            Framing::Chunked => Self::ChunkSize,
            Framing::UntilClose => Self::UntilClose,
        }
    }
}

/// Whether `err` says the peer had closed the connection (or reset it).
fn found_closed(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(err.kind(), UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted)
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A relayed header: its name, and where its value is in the head.
type Field = (HeaderName, Range<usize>);

/// The head of a parsed answer, its headers still to add (`fields`, with their values' places
/// relative to `base`, where the head starts); `None` for an informational answer (skipped).
fn answer_head(
    answer: &httparse::Response<'_, '_>,
    method: &Method,
    base: usize,
) -> io::Result<Option<(AnswerHead, Vec<Field>)>> {
    let code = answer.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| invalid(format!("the status {code}")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid("an answer switching protocols"));
    }
    if status.is_informational() {
        return Ok(None);
    }
    let connection =
        connection_names(answer.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("connection")).map(|h| h.value));
    let mut fields = Vec::with_capacity(answer.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for field in answer.headers.iter() {
        if field.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = Some(
                field
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        }
        if field.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(field.value).ok().and_then(|v| v.trim().parse().ok());
            match (value, length) {
                (Some(value), None) => length = Some(value),
                (Some(value), Some(seen)) if value == seen => {}
                _ => return Err(invalid("a bad or contradictory Content-Length")),
            }
        }
        if is_hop_by_hop(field.name, &connection) {
            continue;
        }
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| invalid("a bad header name"))?;
        // (an empty value's slice need not point into the head)
        let start = if field.value.is_empty() { 0 } else { field.value.as_ptr() as usize - base };
        fields.push((name, start..start + field.value.len()));
    }
    let http11 = answer.version == Some(1);
    let close = connection.iter().any(|token| token.eq_ignore_ascii_case("close"));
    let keep_alive = if http11 { !close } else { connection.iter().any(|t| t.eq_ignore_ascii_case("keep-alive")) };
    let bodiless = *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = match (bodiless, chunked, length) {
        (true, _, _) => Framing::Length(0),
        (false, Some(true), _) => Framing::Chunked,
        (false, Some(false), _) | (false, None, None) => Framing::UntilClose,
        (false, None, Some(len)) => Framing::Length(len),
    };
    let keep_alive = keep_alive && framing != Framing::UntilClose;
    let headers = HeaderMap::with_capacity(fields.len());
    Ok(Some((AnswerHead { status, headers, framing, keep_alive }, fields)))
}

/// An idle connection and since when.
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Connections to the other agents: made on demand, kept alive for reuse, closed after
/// [`IDLE_TIMEOUT`] unused.
pub struct Peers {
    tls: TlsConnector,
    /// By advertised address; an address without idle connections has no entry.
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    reaping: AtomicBool,
}

impl Peers {
    pub fn new(tls: TlsConnector) -> Self {
        Self { tls, idle: Mutex::new(HashMap::new()), reaping: AtomicBool::new(false) }
    }

    /// Sends `head` to `address` and reads the answer's head, on a kept-alive connection when
    /// one is idle and the method is safe to send again.
    pub async fn ask(
        self: &Arc<Self>,
        address: &str,
        destination: &Destination<'_>,
        head: &[u8],
        method: &Method,
    ) -> io::Result<(Conn, AnswerHead)> {
        if matches!(*method, Method::GET | Method::HEAD) {
            while let Some(mut conn) = self.checkout(address) {
                match conn.ask(head, method).await {
                    Ok(answer) => return Ok((conn, answer)),
                    // Closed while idle: nothing was answered, so ask again elsewhere.
                    Err(err) if !conn.answered && found_closed(&err) => continue,
                    Err(err) => return Err(err),
                }
            }
        }
        let mut conn = self.connect(destination).await?;
        let answer = conn.ask(head, method).await?;
        Ok((conn, answer))
    }

    async fn connect(&self, destination: &Destination<'_>) -> io::Result<Conn> {
        let connecting = async {
            let tcp = TcpStream::connect((destination.host, destination.port)).await?;
            tcp.set_nodelay(true)?;
            // A holder that dies or is cut off mid-answer (a follow may be silent for minutes)
            // is noticed by TCP keepalive: probes after 5 s of silence, one a second, three missed.
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(5))
                .with_interval(Duration::from_secs(1))
                .with_retries(3);
            socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
            let io: Box<dyn Transport> = if destination.tls {
                let name =
                    ServerName::try_from(destination.host.to_string()).map_err(|err| invalid(err.to_string()))?;
                Box::new(self.tls.connect(name, tcp).await?)
            } else {
                Box::new(tcp)
            };
            Ok(Conn { io, buf: BytesMut::new(), answered: false })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(connected) => connected,
            Err(_) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no TCP/TLS session within {CONNECT_TIMEOUT:?}")))
            }
        }
    }

    fn checkout(&self, address: &str) -> Option<Conn> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(address)?;
        let fresh_since = Instant::now().checked_sub(IDLE_TIMEOUT);
        let mut found = None;
        while let Some(entry) = list.pop() {
            if fresh_since.is_none_or(|limit| entry.since > limit) {
                found = Some(entry.conn);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(address);
        }
        found
    }

    /// Keeps `conn` for the next request to `address`, when its answer was read to the end and
    /// said the connection stays open (`keep_alive`).
    pub fn checkin(self: &Arc<Self>, address: &str, mut conn: Conn, keep_alive: bool) {
        if !keep_alive || !conn.buf.is_empty() {
            return;
        }
        if conn.buf.capacity() > IDLE_BUFFER {
            // What a streamed body left reserved is not kept idle.
            conn.buf = BytesMut::new();
        }
        {
            let mut idle = lock(&self.idle);
            let list = idle.entry(address.to_string()).or_default();
            if list.len() >= MAX_IDLE_PER_AGENT {
                list.remove(0);
            }
            list.push(Idle { conn, since: Instant::now() });
        }
        if !self.reaping.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }
}

/// Closes connections idle for [`IDLE_TIMEOUT`], for as long as `peers` is in use.
async fn reap(peers: Weak<Peers>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 3).await;
        let Some(peers) = peers.upgrade() else { return };
        let Some(limit) = Instant::now().checked_sub(IDLE_TIMEOUT) else { continue };
        lock(&peers.idle).retain(|_, list| {
            list.retain(|entry| entry.since > limit);
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_taken_apart() {
        let parse = Destination::parse;
        assert_eq!(
            parse("https://10.0.0.5:4646/"),
            Some(Destination { tls: true, host: "10.0.0.5", port: 4646, authority: "10.0.0.5:4646" })
        );
        assert_eq!(
            parse("http://node-1"),
            Some(Destination { tls: false, host: "node-1", port: 80, authority: "node-1" })
        );
        assert_eq!(parse("http://[::1]:4646").map(|d| (d.host, d.port)), Some(("::1", 4646)));
        assert_eq!(parse("https://[::1]").map(|d| (d.host, d.port)), Some(("::1", 443)));
        for bad in [
            "ftp://a:1",
            "http://",
            "http://a:1/x",
            "http://a:x",
            "http://u@a:1",
            "a:1",
            "http://a\r\nx: y:1",
            "http://a b:1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_request_head_leaves_hop_by_hop_headers_behind() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Private-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-private-hop", "1"),
            ("proxy-connection", "keep-alive"),
            ("host", "a:4646"),
            ("content-length", "3"),
            ("x-nomad-token", "secret"),
            ("accept-encoding", "gzip"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let by = HeaderValue::from_static("node-b");
        let head = request_head(
            &Method::GET,
            ("/v1/client/fs/cat/a%20b", "path=x%2Fy"),
            "10.0.0.5:4646",
            &headers,
            &[("x-allocd-forwarded-by", &by)],
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /v1/client/fs/cat/a%20b?path=x%2Fy HTTP/1.1\r\nhost: 10.0.0.5:4646\r\nx-nomad-token: secret\r\n\
             accept-encoding: gzip\r\nx-allocd-forwarded-by: node-b\r\n\r\n"
        );
    }

    /// Parses `wire` as the answer to `method`: its head and the pieces of its body.
    async fn read_answer(wire: &'static [u8], method: Method) -> io::Result<(AnswerHead, Vec<u8>, usize)> {
        let (mut ours, theirs) = tokio::io::duplex(1 << 20);
        let mut conn = Conn { io: Box::new(theirs), buf: BytesMut::new(), answered: false };
        const REQUEST: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        // The answer goes in small pieces, so that every reader meets partial input; then the
        // connection closes.
        tokio::spawn(async move {
            let mut request = [0; REQUEST.len()];
            ours.read_exact(&mut request).await.unwrap();
            for piece in wire.chunks(3) {
                ours.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let head = conn.ask(REQUEST, &method).await?;
        let mut reading = BodyReading::from(head.framing);
        let mut body = Vec::new();
        while let Some(piece) = conn.next_piece(&mut reading).await? {
            body.extend_from_slice(&piece);
        }
        Ok((head, body, conn.buf.len()))
    }

    #[tokio::test]
    async fn answers_are_read_as_framed() {
        let (head, body, left) = read_answer(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\
              connection: keep-alive\r\n\r\n{\"a\":1}",
            Method::GET,
        )
        .await
        .unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!((head.framing, head.keep_alive, left), (Framing::Length(7), true, 0));
        assert_eq!(body, b"{\"a\":1}");
        assert_eq!(head.headers.len(), 2, "{:?}", head.headers);

        let (head, body, _) = read_answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nvary: Origin\r\n\r\n\
              5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nx-trailer: 1\r\n\r\n",
            Method::GET,
        )
        .await
        .unwrap();
        assert_eq!((head.framing, head.keep_alive), (Framing::Chunked, true));
        assert_eq!(body, b"hello world!");
        assert!(head.headers.get("transfer-encoding").is_none());

        let (head, body, _) =
            read_answer(b"HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\nUnknown allocation", Method::GET)
                .await
                .unwrap();
        assert_eq!((head.status, head.framing, head.keep_alive), (StatusCode::NOT_FOUND, Framing::UntilClose, false));
        assert_eq!(body, b"Unknown allocation");

        let (head, body, _) =
            read_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 941\r\n\r\n", Method::HEAD).await.unwrap();
        assert_eq!((head.framing, body.len()), (Framing::Length(0), 0));
        assert_eq!(head.headers["content-length"], "941");
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n",
        ] {
            assert!(read_answer(wire, Method::GET).await.is_err(), "{}", String::from_utf8_lossy(wire));
        }
    }
    /// A plain-TCP peer pool (no TLS is used against 127.0.0.1).
    fn peers() -> Arc<Peers> {
        use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
        let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        Arc::new(Peers::new(TlsConnector::from(Arc::new(config))))
    }

    /// An agent on 127.0.0.1 answering `ok` to every request; with `one_per_connection` it
    /// closes each connection after its first answer (as an idle timeout would, later). Returns
    /// its address and the number of connections it accepted so far.
    async fn agent(one_per_connection: bool) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0; 1024];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = seen.starts_with(b"HEAD ");
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            let answer = if head { &answer[..answer.len() - 2] } else { &answer[..] };
                            socket.write_all(answer).await.unwrap();
                            if one_per_connection {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    /// Asks `address` with `method` and reads the answer whole, keeping the connection.
    async fn ask_ok(peers: &Arc<Peers>, address: &str, method: Method) {
        let destination = Destination::parse(address).unwrap();
        let head = request_head(&method, ("/v1/client/stats", ""), destination.authority(), &HeaderMap::new(), &[]);
        let (mut conn, answer) = peers.ask(address, &destination, &head, &method).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let expected: &[u8] = if method == Method::HEAD { b"" } else { b"ok" };
        let Framing::Length(len) = answer.framing else { panic!("{:?}", answer.framing) };
        assert_eq!(&conn.whole_body(len as usize).await.unwrap()[..], expected);
        peers.checkin(address, conn, answer.keep_alive);
    }

    #[tokio::test]
    async fn a_kept_connection_the_agent_closed_meanwhile_is_replaced() {
        let (address, accepted) = agent(true).await;
        let peers = peers();
        ask_ok(&peers, &address, Method::GET).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        ask_ok(&peers, &address, Method::GET).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the closed connection was replaced once");
    }

    #[tokio::test]
    async fn only_get_and_head_go_on_kept_connections() {
        let (address, accepted) = agent(false).await;
        let peers = peers();
        ask_ok(&peers, &address, Method::GET).await;
        ask_ok(&peers, &address, Method::GET).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        ask_ok(&peers, &address, Method::PUT).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "a PUT is never sent on a kept connection");
        ask_ok(&peers, &address, Method::HEAD).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
