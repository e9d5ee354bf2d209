//! End-to-end tests over a real `127.0.0.1:0` socket with a raw HTTP/1.1
//! client, so what is checked is exactly what a proxy would see.

use super::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let data = Arc::new(DemoData::generate(42, 10));
    let task = tokio::spawn(serve(listener, data, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(3), self.task).await;
        result.expect("serve returned in time").unwrap().unwrap();
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Writes one raw request and reads one Content-Length-framed response.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Answer {
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: buf[head_end..].to_vec(),
    };
    let len: usize = answer.header("content-length").unwrap().parse().unwrap();
    while answer.body.len() < len {
        let mut chunk = vec![0u8; len - answer.body.len()];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        answer.body.extend_from_slice(&chunk[..n]);
    }
    answer
}

async fn get(stream: &mut TcpStream, target: &str) -> Answer {
    exchange(
        stream,
        format!("GET {target} HTTP/1.1\r\nHost: demo.test\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn serves_reads_and_searches_on_one_keep_alive_connection() {
    let server = start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let read = get(&mut conn, "/fhir/Patient/pat-0001").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.header("content-type"), Some("application/fhir+json"));
    assert_eq!(read.json()["id"], "pat-0001");
    let search = get(
        &mut conn,
        "/fhir/Observation?patient=Patient%2Fpat-0001&_count=2",
    )
    .await;
    assert_eq!(search.status, 200);
    let bundle = search.json();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
    assert!(bundle["link"][1]["url"]
        .as_str()
        .unwrap()
        .starts_with("http://demo.test/fhir/Observation?"));
    assert_eq!(
        get(&mut conn, "/fhir/Patient?gender=male").await.status,
        400
    );
    assert_eq!(get(&mut conn, "/healthz").await.body, b"ok");
    assert_eq!(get(&mut conn, "/elsewhere").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn non_get_under_fhir_is_405() {
    let server = start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let request = b"DELETE /fhir/Patient/pat-0001 HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = exchange(&mut conn, request).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("GET"));
    server.stop().await;
}

#[tokio::test]
async fn echo_reports_duplicate_headers_in_order_and_body_length() {
    let server = start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let request = b"POST /__echo/a%20b?x=1&x=2 HTTP/1.1\r\nHost: up\r\nX-Dup: first\r\n\
                    X-Other: o\r\nX-Dup: second\r\nContent-Length: 5\r\n\r\nhello";
    let echo = exchange(&mut conn, request).await.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/__echo/a%20b?x=1&x=2");
    assert_eq!(echo["body_len"], 5);
    let dups: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-dup")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(dups, ["first", "second"]);
    assert_eq!(echo["headers"][0], serde_json::json!(["host", "up"]));
    server.stop().await;
}

#[tokio::test]
async fn echo_refuses_bodies_over_one_mebibyte() {
    let server = start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let mut request = format!(
        "PUT /__echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        ECHO_BODY_LIMIT + 1
    )
    .into_bytes();
    request.resize(request.len() + ECHO_BODY_LIMIT + 1, b'a');
    assert_eq!(exchange(&mut conn, &request).await.status, 413);
    server.stop().await;
}

#[tokio::test]
async fn bad_bytes_in_the_target_are_400_not_a_panic() {
    let server = start().await;
    for target in [
        &b"/fhir/Patient/%FF"[..],
        b"/fhir/Patient?_id=%C3%28",
        b"/fhir/Pa\xfftient",
        b"/__slow?ms=99999999999999999999",
    ] {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        let request = [&b"GET "[..], target, b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        assert_eq!(
            exchange(&mut conn, &request).await.status,
            400,
            "{}",
            String::from_utf8_lossy(target)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn slow_waits_and_shutdown_lets_it_finish() {
    let server = start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let started = std::time::Instant::now();
    let pending = tokio::spawn(async move { get(&mut conn, "/__slow?ms=300").await.status });
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop().await;
    assert_eq!(pending.await.unwrap(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn shutdown_returns_with_idle_keep_alive_connections_open() {
    let server = start().await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut conn, "/healthz").await.status, 200);
    server.stop().await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), conn.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "idle connection closed by the server"
    );
}
