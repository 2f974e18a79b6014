//! A webhook receiver for tests: records every HTTP request sent to it.
//!
//! Pings and Pushgateway pushes leave the process, so a test needs something on the
//! other end that remembers what arrived. This is that, in the standard library only
//! (no runtime to share with the code under test): one thread accepts on
//! `127.0.0.1:0`, each connection gets a thread that reads one HTTP/1.1 request
//! (`Content-Length` or `Transfer-Encoding: chunked` body, `Expect: 100-continue`
//! honoured), records it, then answers with the configured status and
//! `Connection: close`. Dropping the receiver stops it.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query string.
    pub path: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Header names lower-cased, values trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    stop: AtomicBool,
    status: u16,
    body: Vec<u8>,
}

impl Receiver {
    /// Answers `200 OK` with body "OK" to everything.
    pub fn start() -> Receiver {
        Receiver::with_response(200, "OK")
    }

    /// Answers `status` to everything (body: the reason phrase).
    pub fn with_status(status: u16) -> Receiver {
        Receiver::with_response(status, reason(status))
    }

    /// Answers `status` with `body` to everything (the body is not sent for 204 and
    /// 304).
    pub fn with_response(status: u16, body: impl Into<Vec<u8>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            status,
            body: body.into(),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        Receiver {
            url,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Everything received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived and returns them all.
    ///
    /// # Panics
    /// After `timeout`, listing what did arrive.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut requests = self.shared.requests.lock().unwrap();
        while requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "receiver at {}: expected {n} request(s) within {timeout:?}, got {}: {:#?}",
                self.url,
                requests.len(),
                *requests
            );
            requests = self.shared.arrived.wait_timeout(requests, left).unwrap().0;
        }
        requests.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        // Connection threads are detached: each ends after one request or when its
        // read times out.
        std::thread::spawn(move || {
            let _ = serve(stream, &shared);
        });
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);

    let request_line = read_line(&mut reader)?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());

    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };

    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(&mut reader)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad content-length {len:?}")))?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };

    // Recorded before answering, so a client that has its answer can rely on
    // `requests()` already showing the request.
    {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(Request {
            method,
            path,
            body,
            headers,
        });
        shared.arrived.notify_all();
    }

    // 204 and 304 answers have no body, not even an empty one.
    let bodiless = matches!(shared.status, 204 | 304);
    let (status, reason) = (shared.status, reason(shared.status));
    write!(
        writer,
        "HTTP/1.1 {status} {reason}\r\nconnection: close\r\n"
    )?;
    if bodiless {
        writer.write_all(b"\r\n")?;
    } else {
        let length = shared.body.len();
        write!(
            writer,
            "content-type: text/plain\r\ncontent-length: {length}\r\n\r\n"
        )?;
        writer.write_all(&shared.body)?;
    }
    writer.flush()
}

/// One CRLF- (or LF-) terminated line without its terminator.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// A chunked body: `size[;ext]` CRLF data CRLF ..., `0` CRLF, trailers, CRLF.
fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, if any, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(invalid("chunk data longer than its size".to_owned()));
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
