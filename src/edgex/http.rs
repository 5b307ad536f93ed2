//! The smallest HTTP/1.1 server the bridge needs: one thread per
//! connection up to a cap, keep-alive, `Content-Length` bodies only, a head
//! and a body limit checked before anything is buffered past them, an idle
//! timeout. Heads are parsed by `httparse`.
//!
//! Tenants talk to it from inside their containers, so every limit is
//! enforced here, before a handler sees the request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::tcp_server::{Connections, TcpServer};

/// A request as the handler sees it. `path` is still percent-encoded.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        // EdgeX's services write bodies with json.Encoder: a trailing newline.
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a connection may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line and headers.
    pub head: usize,
    pub body: usize,
    /// A connection with no request for this long is closed.
    pub idle: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head: 8 << 10,
            body: 64 << 10,
            idle: Duration::from_secs(30),
            connections: 8,
        }
    }
}

/// Why no request came out of a connection.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed or went idle between requests: nothing to answer.
    Closed,
    /// A request the server refuses: answer `status` with `message`, close.
    Refused { status: u16, message: String },
}

fn refused(status: u16, message: impl Into<String>) -> ReadError {
    ReadError::Refused {
        status,
        message: message.into(),
    }
}

/// Reads one request. The body is read only after its declared length is
/// checked against the limit.
pub fn read_request(r: &mut impl BufRead, limits: &Limits) -> Result<Request, ReadError> {
    let head = read_head(r, limits.head)?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refused(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refused(431, "more than 64 request headers"));
        }
        Err(e) => return Err(refused(400, format!("malformed request: {e}"))),
    }
    let method = parsed.method.unwrap_or_default().to_string();
    let target = parsed.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut out = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| refused(400, format!("header {} is not UTF-8", h.name)))?;
        out.push((h.name.to_string(), value.trim().to_string()));
    }
    let mut request = Request {
        method,
        path,
        query,
        headers: out,
        body: Vec::new(),
    };
    if request.header("Transfer-Encoding").is_some() {
        return Err(refused(
            411,
            "chunked request bodies are not accepted: send Content-Length",
        ));
    }
    let mut length: Option<usize> = None;
    for (name, value) in &request.headers {
        if !name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        let n = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| refused(400, format!("bad Content-Length `{value}`")))?;
        if length.is_some_and(|l| l != n) {
            return Err(refused(400, "conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    let length = length.unwrap_or(0);
    if length > limits.body {
        return Err(refused(
            413,
            format!(
                "request body of {length} bytes is over the limit of {} bytes",
                limits.body
            ),
        ));
    }
    request.body = vec![0; length];
    r.read_exact(&mut request.body)
        .map_err(|_| refused(400, "request body shorter than its Content-Length"))?;
    Ok(request)
}

/// The bytes up to and including the blank line, consuming nothing after.
fn read_head(r: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Closed),
        };
        if chunk.is_empty() {
            return if head.is_empty() {
                Err(ReadError::Closed)
            } else {
                Err(refused(400, "connection closed inside the request head"))
            };
        }
        let from = head.len().saturating_sub(3);
        let taken = chunk.len();
        head.extend_from_slice(chunk);
        if let Some(pos) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + pos + 4;
            r.consume(taken - (head.len() - end));
            head.truncate(end);
            if end > limit {
                return Err(refused(431, format!("request head over {limit} bytes")));
            }
            return Ok(head);
        }
        r.consume(taken);
        if head.len() > limit {
            return Err(refused(431, format!("request head over {limit} bytes")));
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        423 => "Locked",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn write_response(w: &mut impl Write, resp: &Response, close: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (n, v) in &resp.headers {
        head += &format!("{n}: {v}\r\n");
    }
    head += &format!("Content-Length: {}\r\n", resp.body.len());
    if close {
        head += "Connection: close\r\n";
    }
    head += "\r\n";
    // One write: a head and a body sent apart meet Nagle and delayed ACKs
    // (40 ms a response).
    let mut all = head.into_bytes();
    all.extend_from_slice(&resp.body);
    w.write_all(&all)?;
    w.flush()
}

/// Handles requests; `refusal` shapes the answers to refused requests.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request) -> Response;
    fn refusal(&self, status: u16, message: &str) -> Response;
}

/// Serves requests from one connection until it closes, idles out or
/// sends something refused.
fn serve_connection(stream: TcpStream, limits: &Limits, handler: &dyn Handler) {
    if stream.set_nodelay(true).is_err()
        || stream.set_read_timeout(Some(limits.idle)).is_err()
        || stream.set_write_timeout(Some(limits.idle)).is_err()
    {
        return;
    }
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(limits.head.min(16 << 10), stream);
    loop {
        match read_request(&mut reader, limits) {
            Ok(request) => {
                let close = request
                    .header("Connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close"));
                let response = handler.handle(&request);
                if write_response(&mut writer, &response, close).is_err() || close {
                    return;
                }
            }
            Err(ReadError::Closed) => return,
            Err(ReadError::Refused { status, message }) => {
                let _ = write_response(&mut writer, &handler.refusal(status, &message), true);
                linger(&writer, reader.get_mut());
                return;
            }
        }
    }
}

/// A listening socket served on its own threads until dropped.
pub struct Server(TcpServer);

struct Http {
    limits: Limits,
    handler: Arc<dyn Handler>,
}

impl Connections for Http {
    fn serve(&self, conn: TcpStream) {
        serve_connection(conn, &self.limits, self.handler.as_ref());
    }

    fn busy(&self, mut conn: TcpStream, cap: usize) {
        let msg = format!("more than {cap} connections at once");
        let _ = write_response(&mut conn, &self.handler.refusal(503, &msg), true);
    }
}

impl Server {
    pub fn spawn(listener: TcpListener, limits: Limits, handler: Arc<dyn Handler>) -> Server {
        let cap = limits.connections;
        Server(TcpServer::spawn(
            listener,
            cap,
            "http-conn",
            Arc::new(Http { limits, handler }),
        ))
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

/// After refusing a request whose body is still coming: stop writing,
/// then read and drop what the client already sent (a bounded amount, for
/// a short while) so closing does not reset the connection before the
/// client has read the answer.
fn linger(writer: &TcpStream, reader: &mut TcpStream) {
    let _ = writer.shutdown(Shutdown::Write);
    let _ = reader.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 8192];
    let mut left: usize = 1 << 20;
    while left > 0 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], limits: Limits) -> Result<Request, ReadError> {
        read_request(&mut io::BufReader::new(raw), &limits)
    }

    fn status(r: Result<Request, ReadError>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(ReadError::Closed) => 0,
            Err(ReadError::Refused { status, .. }) => status,
        }
    }

    #[test]
    fn requests_are_read_one_after_another() {
        let raw = b"PUT /a%2Fb?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
        let mut r = io::BufReader::new(&raw[..]);
        let one = read_request(&mut r, &Limits::default()).unwrap();
        assert_eq!((one.method.as_str(), one.path.as_str()), ("PUT", "/a%2Fb"));
        assert_eq!(one.query.as_deref(), Some("x=1"));
        assert_eq!(one.body, b"abc");
        assert_eq!(one.header("host"), Some("h"));
        let two = read_request(&mut r, &Limits::default()).unwrap();
        assert_eq!((two.method.as_str(), two.body.len()), ("GET", 0));
        assert!(matches!(
            read_request(&mut r, &Limits::default()),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn limits_and_framing_are_enforced() {
        let small = Limits {
            body: 4,
            head: 64,
            ..Limits::default()
        };
        let big = b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(status(parse(big, small)), 413);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        assert_eq!(status(parse(long.as_bytes(), small)), 431);
        let chunked = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(status(parse(chunked, small)), 411);
        let twice = b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(status(parse(twice, small)), 400);
        let signed = b"PUT / HTTP/1.1\r\nContent-Length: +1\r\n\r\na";
        assert_eq!(status(parse(signed, small)), 400);
        let short = b"PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\na";
        assert_eq!(status(parse(short, small)), 400);
        assert_eq!(status(parse(b"GET / HT", small)), 400);
        assert_eq!(status(parse(b"", small)), 0);
        assert_eq!(status(parse(b"\x00\x01 / HTTP/1.1\r\n\r\n", small)), 400);
    }
}
