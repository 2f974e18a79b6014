//! The test webhook receiver (tests/common/receiver.rs) checked against raw HTTP/1.1,
//! so that a failing ping test points at vault and not at its harness.

#[path = "common/receiver.rs"]
mod receiver;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use receiver::Receiver;

/// Sends `raw` to the receiver and returns the whole answer (it closes the connection).
fn exchange(receiver: &Receiver, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(receiver.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn records_content_length_requests_in_order() {
    let r = Receiver::start();
    assert!(r.url.starts_with("http://127.0.0.1:"), "{}", r.url);
    let first = exchange(
        &r,
        b"POST /ping/abc/start?rid=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.ends_with("\r\n\r\nOK"), "{first}");
    exchange(&r, b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n");

    let got = r.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/ping/abc/start?rid=1");
    assert_eq!(got[0].body, b"hello");
    assert_eq!(got[0].header("content-type"), Some("text/plain"));
    assert_eq!(got[0].header("CONTENT-TYPE"), Some("text/plain"));
    assert_eq!(got[0].headers[0], ("host".to_owned(), "x".to_owned()));
    assert_eq!(got[1].method, "GET");
    assert!(got[1].body.is_empty());
    assert_eq!(r.requests().len(), 2);
}

#[test]
fn decodes_chunked_bodies_and_answers_100_continue() {
    let r = Receiver::start();
    let answer = exchange(
        &r,
        b"PUT /metrics/job/app HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\
          Transfer-Encoding: chunked\r\n\r\n\
          4\r\nvaul\r\n3;ext=1\r\nt_u\r\n2\r\np \r\n1\r\n1\r\n0\r\nTrailer: y\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{answer}"
    );
    let got = r.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].text(), "vault_up 1");
}

#[test]
fn answers_the_configured_status() {
    let r = Receiver::with_status(503);
    let answer = exchange(&r, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    let r = Receiver::with_response(500, "database is on fire");
    let answer = exchange(&r, b"GET / HTTP/1.1\r\n\r\n");
    assert!(answer.ends_with("\r\n\r\ndatabase is on fire"), "{answer}");
    assert_eq!(r.requests().len(), 1, "errors are recorded too");

    let r = Receiver::with_status(204);
    let answer = exchange(&r, b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        answer.ends_with("No Content\r\nconnection: close\r\n\r\n"),
        "{answer}"
    );
}

#[test]
#[should_panic(expected = "expected 1 request(s)")]
fn wait_for_panics_on_timeout() {
    let r = Receiver::start();
    r.wait_for(1, Duration::from_millis(50));
}

#[test]
fn stops_when_dropped() {
    let r = Receiver::start();
    let addr = r.url.trim_start_matches("http://").to_owned();
    drop(r);
    assert!(
        TcpStream::connect(&addr).is_err(),
        "still listening on {addr}"
    );
}
