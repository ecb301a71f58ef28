//! The API under hostile or broken HTTP clients, over raw TCP against a real broker: silent,
//! slow (slowloris) and garbage connections must neither block real clients nor stay open for
//! ever, and bodies are bounded in size and in time, chunked or not.

use std::time::{Duration, Instant};

use api::HttpTimeouts;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{TestApi, MAX_BODY_BYTES};

/// Short deadlines, so the test sees them fire; production uses the `[api]` timeout keys (10 s
/// each by default).
const TIMEOUTS: HttpTimeouts = HttpTimeouts {
    head: Duration::from_secs(3),
    body: Duration::from_secs(2),
    write: Duration::from_secs(2),
};

/// Time allowed on top of a deadline before calling it missed (a loaded 2-core CI machine).
const SLACK: Duration = Duration::from_secs(3);

/// The API on the shared broker with [`TIMEOUTS`] set in code.
async fn start() -> TestApi {
    let mut config = support::config();
    config.api.publish_timeout_ms = 3_000;
    TestApi::start_with_timeouts(&config, TIMEOUTS).await
}

/// Posts an order; returns the status and how long it took.
async fn post_order(api: &TestApi, n: usize) -> (u16, Duration) {
    let started = Instant::now();
    let order =
        json!({"usuario": format!("u{n}"), "produto": "livro", "quantidade": 1, "valor": "9.90"});
    let response = api.post_json(&order).await;
    (response.status().as_u16(), started.elapsed())
}

async fn health(api: &TestApi) -> (u16, Duration) {
    let started = Instant::now();
    let response = api.get("/health").await;
    (response.status().as_u16(), started.elapsed())
}

/// Everything the server sends until it closes the connection (or `limit` passes), and when
/// the connection ended; `None` if it was still open at `limit`.
async fn read_until_closed(
    mut reader: impl AsyncReadExt + Unpin,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, reader.read(&mut buf)).await {
            Err(_) => return (received, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (received, Some(started.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status code and the body of the first HTTP response in `bytes`.
fn parse_response(bytes: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(bytes);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| serde_json::from_str(body).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, body)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Connects and sends nothing.
    Silent,
    /// Sends a request line and headers a byte at a time, never finishing.
    Slowloris,
    /// Sends bytes that are not HTTP (a TLS ClientHello, then noise).
    Garbage,
    /// Sends a complete head announcing a body, then only part of the body.
    SlowBody,
}

const ATTACKS: [Attack; 4] = [
    Attack::Silent,
    Attack::Slowloris,
    Attack::Garbage,
    Attack::SlowBody,
];

/// Runs one hostile client; returns what the server sent and when it closed the connection.
async fn attack(
    stream: TcpStream,
    kind: Attack,
    seed: usize,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let (reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        match kind {
            Attack::Silent => {}
            Attack::Slowloris => {
                let head = format!(
                    "POST /pedidos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-{seed}: "
                );
                let dribble = head.bytes().chain(std::iter::repeat(b'a'));
                // Never the blank line; stops when the server hangs up (or after 30 s).
                for byte in dribble.take(100) {
                    if writer.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
            Attack::Garbage => {
                let mut bytes = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
                let mut x = seed as u32 | 1;
                bytes.extend((0..500).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                }));
                let _ = writer.write_all(&bytes).await;
            }
            Attack::SlowBody => {
                let request =
                    "POST /pedidos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                               Content-Length: 200\r\n\r\n{\"usuario\": \"slow";
                let _ = writer.write_all(request.as_bytes()).await;
            }
        }
        // Keep the write half open: dropping it would send FIN and end the attack early.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(writer);
    });
    let result = read_until_closed(reader, limit).await;
    writing.abort();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_neither_block_clients_nor_stay_open() {
    let api = start().await;
    // The producer's first record pays for its handshake: not what this test measures.
    assert_eq!(post_order(&api, 0).await.0, 202);

    const CONNECTIONS: usize = 200;
    let limit = TIMEOUTS.head + TIMEOUTS.body + SLACK;
    let mut attackers = Vec::new();
    for i in 0..CONNECTIONS {
        let kind = ATTACKS[i % ATTACKS.len()];
        let stream = api.connect().await;
        attackers.push((kind, tokio::spawn(attack(stream, kind, i, limit))));
    }
    let opened = Instant::now();

    // While all of them hold a connection, real clients are served at once.
    let (status, took) = post_order(&api, 1).await;
    assert_eq!(status, 202, "POST during the attack");
    assert!(
        opened.elapsed() < TIMEOUTS.head,
        "served while every attacker still held its connection"
    );
    assert!(took < Duration::from_secs(2), "POST took {took:?}");
    for n in 2..=10 {
        let (status, took) = post_order(&api, n).await;
        assert_eq!(status, 202, "POST during the attack");
        assert!(took < Duration::from_secs(2), "POST took {took:?}");
        let (status, took) = health(&api).await;
        assert_eq!(status, 200, "/health during the attack");
        assert!(took < Duration::from_secs(1), "/health took {took:?}");
    }

    for (i, (kind, attacker)) in attackers.into_iter().enumerate() {
        let (received, closed) = attacker.await.unwrap();
        let closed =
            closed.unwrap_or_else(|| panic!("{kind:?} connection {i} still open after {limit:?}"));
        match kind {
            Attack::Silent | Attack::Slowloris => {
                assert!(
                    received.is_empty(),
                    "{kind:?}: {:?}",
                    String::from_utf8_lossy(&received)
                );
                assert!(
                    closed >= TIMEOUTS.head - Duration::from_millis(500)
                        && closed < TIMEOUTS.head + SLACK,
                    "{kind:?} connection {i} closed after {closed:?}, the head deadline is {:?}",
                    TIMEOUTS.head
                );
            }
            Attack::Garbage => {
                assert_eq!(parse_response(&received).0, 400, "garbage gets a 400");
                assert!(
                    closed < SLACK,
                    "garbage connection {i} closed after {closed:?}"
                );
            }
            Attack::SlowBody => {
                let (status, body) = parse_response(&received);
                assert_eq!(status, 408, "a body that does not arrive gets a 408");
                assert_eq!(body["error"], "request_timeout", "{body}");
                assert_eq!(body["field"], "body", "{body}");
                assert!(
                    closed < TIMEOUTS.body + TIMEOUTS.head + SLACK,
                    "slow-body connection {i} closed after {closed:?}"
                );
            }
        }
    }

    // And the API is still fine afterwards.
    assert_eq!(post_order(&api, 99).await.0, 202);
    assert_eq!(health(&api).await.0, 200);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_bodies_are_bounded_chunked_or_not() {
    let api = start().await;

    // A keep-alive connection left idle after its response is closed by the head deadline.
    let mut stream = api.connect().await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (received, closed) = read_until_closed(&mut stream, TIMEOUTS.head + SLACK).await;
    assert_eq!(parse_response(&received).0, 200);
    let closed = closed.expect("an idle keep-alive connection is closed");
    assert!(
        closed >= TIMEOUTS.head - Duration::from_millis(500),
        "closed after {closed:?}, before its head deadline"
    );

    // A body announced over the limit is refused before it is sent.
    let mut stream = api.connect().await;
    stream
        .write_all(
            b"POST /pedidos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let (status, body) = parse_response(&buf[..n]);
    assert_eq!(status, 413);
    assert_eq!(body["error"], "payload_too_large", "{body}");

    // A chunked body is counted as it streams: over the limit is a 413 too.
    let mut stream = api.connect().await;
    let mut request = b"POST /pedidos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    let chunk = "a".repeat(1000);
    for _ in 0..(MAX_BODY_BYTES / chunk.len() + 2) {
        request.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let (status, body) = parse_response(&received);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["field"], "body", "{body}");

    // A chunked body within the limit is an ordinary order.
    let mut stream = api.connect().await;
    let order = r#"{"usuario":"chunky","produto":"livro","quantidade":1,"valor":"5.00"}"#;
    let (first, second) = order.split_at(20);
    let request = format!(
        "POST /pedidos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let (status, body) = parse_response(&received);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["usuario"], "chunky");

    // Broken chunked framing is a 400 with a JSON body, not a hang or a 5xx.
    let mut stream = api.connect().await;
    stream
        .write_all(
            b"POST /pedidos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "closed");
    let (status, body) = parse_response(&received);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&received));
    assert_eq!(body["error"], "malformed_body", "{body}");
    assert_eq!(body["field"], "body", "{body}");

    api.stop().await;
}

/// Reads the first HTTP response from `reader` (head and `Content-Length` body); returns it and
/// when its last byte arrived, or what came and `None` if it was not complete within `limit`.
async fn read_response(
    mut reader: impl AsyncReadExt + Unpin,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return (received, Some(started.elapsed()));
            }
        }
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, reader.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return (received, None),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request whose head is complete and whose body (200 bytes announced) never finishes.
const PARTIAL_BODY: &[u8] =
    b"POST /pedidos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                              Content-Length: 200\r\n\r\n{\"usuario\": \"slow";

/// The `[api]` timeout keys, not `with_timeouts`, decide when the running server gives up on
/// a client; every configured value is far from the 10 s defaults, so a server ignoring the
/// configuration fails each check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_http_timeouts_are_the_ones_the_server_applies() {
    let mut config = support::config();
    config.api.head_timeout_ms = 2_000;
    config.api.body_timeout_ms = 1_000;
    let head = Duration::from_millis(config.api.head_timeout_ms);
    let body = Duration::from_millis(config.api.body_timeout_ms);
    let api = TestApi::start(&config).await;

    // Headers and part of a body, then nothing: 408 with the JSON error at the body timeout.
    let mut slow_body = api.connect().await;
    slow_body.write_all(PARTIAL_BODY).await.unwrap();
    // Meanwhile a silent client is disconnected at the head timeout.
    let silent = tokio::spawn(read_until_closed(api.connect().await, head + SLACK));

    let (received, answered) = read_response(&mut slow_body, body + SLACK).await;
    let answered = answered.unwrap_or_else(|| {
        panic!(
            "no complete answer within {:?} of a {body:?} body timeout: {:?}",
            body + SLACK,
            String::from_utf8_lossy(&received)
        )
    });
    let (status, json) = parse_response(&received);
    assert_eq!(status, 408, "{json}");
    assert_eq!(json["error"], "request_timeout", "{json}");
    assert_eq!(json["field"], "body", "{json}");
    assert!(
        answered >= body - Duration::from_millis(200),
        "408 after {answered:?}, before the {body:?} body timeout"
    );

    let (received, closed) = silent.await.unwrap();
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "a silent client still connected {:?} after a {head:?} head timeout",
            head + SLACK
        )
    });
    assert!(
        closed >= head - Duration::from_millis(500),
        "silent client dropped after {closed:?}, before the {head:?} head timeout"
    );
    api.stop().await;

    // On shutdown a request still in flight gets `shutdown_timeout_ms`, not 10 s.
    config.api.head_timeout_ms = 30_000;
    config.api.body_timeout_ms = 30_000;
    config.api.shutdown_timeout_ms = 1_000;
    let grace = Duration::from_millis(config.api.shutdown_timeout_ms);
    let api = TestApi::start(&config).await;
    let mut in_flight = api.connect().await;
    in_flight.write_all(PARTIAL_BODY).await.unwrap();
    // Let the server take the head in, so the request is in flight when the stop comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = api.stop_within(grace + SLACK).await;
    assert!(
        stopped >= grace - Duration::from_millis(300),
        "stopped after {stopped:?}: the in-flight request did not get its {grace:?}"
    );
    let (_, closed) = read_until_closed(&mut in_flight, SLACK).await;
    assert!(
        closed.is_some(),
        "the in-flight connection is cut at shutdown"
    );
}
