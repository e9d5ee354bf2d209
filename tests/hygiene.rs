//! The hygiene corpus: malicious and ambiguous requests over raw TCP against
//! a real phigate in front of the demo upstream, which echoes what it got.
//! Each case asserts the exact rejection, or exactly what reached the upstream.

mod common;
use common::*;

enum Expect {
    /// phigate answers with this status itself (nothing forwarded).
    Status(u16),
    /// Forwarded (200), and the upstream never saw this header.
    Stripped(&'static str),
    /// Forwarded (200), and the upstream saw exactly these values of a header.
    Upstream(&'static str, &'static [&'static str]),
    /// Forwarded (200), and the upstream saw this request target.
    Target(&'static str),
    /// Not forwarded and not answered 2xx (400 or a closed connection).
    NotForwarded,
    /// Refused by hyper's HTTP parser itself with a bare 400, before the
    /// pipeline sees a request (counted as a connection event).
    ParserRejects,
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /__echo/p HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n{body}"
    )
    .into_bytes()
}

fn corpus() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let long_path = format!("/__echo/{}", "a".repeat(3000));
    let long_uri = format!("/__echo/x?q={}", "a".repeat(9000));
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "b".repeat(40_000));
    vec![
        // Path ambiguity: 400 before routing.
        ("dot-dot", get("/__echo/../admin", ""), Status(400)),
        ("dot", get("/__echo/./x", ""), Status(400)),
        ("encoded dot-dot", get("/__echo/%2e%2e/admin", ""), Status(400)),
        ("mixed encoded dot-dot", get("/__echo/.%2E/admin", ""), Status(400)),
        ("encoded single dot", get("/__echo/%2e/x", ""), Status(400)),
        ("trailing dot-dot", get("/__echo/x/..", ""), Status(400)),
        ("encoded slash", get("/__echo/a%2fb", ""), Status(400)),
        ("encoded slash traversal", get("/__echo/%2F..%2Fadmin", ""), Status(400)),
        ("encoded backslash", get("/__echo/a%5Cb", ""), Status(400)),
        ("encoded backslash traversal", get("/__echo/%5c..%5cadmin", ""), Status(400)),
        ("raw backslash", get("/__echo/a\\b", ""), Status(400)),
        ("double-encoded dot", get("/__echo/%252e%252e/admin", ""), Status(400)),
        ("double-encoded slash", get("/__echo/a%252Fb", ""), Status(400)),
        ("encoded NUL", get("/__echo/a%00b", ""), Status(400)),
        ("encoded control", get("/__echo/a%0d%0aX-Injected:1", ""), Status(400)),
        ("double slash", get("/__echo//x", ""), Status(400)),
        ("overlong UTF-8 dot", get("/__echo/%C0%AE%C0%AE/admin", ""), Status(400)),
        ("fullwidth dot-dot", get("/__echo/%EF%BC%8E%EF%BC%8E/admin", ""), Status(400)),
        ("fullwidth solidus", get("/__echo/a%EF%BC%8Fadmin", ""), Status(400)),
        ("tomcat dot-dot-semicolon", get("/__echo/..;/admin", ""), Status(400)),
        ("bad escape", get("/__echo/%zz", ""), Status(400)),
        ("truncated escape", get("/__echo/%4", ""), Status(400)),
        ("fragment", get("/__echo/a#frag", ""), Status(400)),
        ("absolute-form, other host", get("http://evil.example/__echo/x", ""), Status(400)),
        ("absolute-form, same host", get("http://localhost/__echo/x", ""), Status(400)),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(), Status(400)),
        ("overlong path", get(&long_path, ""), Status(400)),
        ("overlong uri", get(&long_uri, ""), Status(414)),
        ("duplicate host", get("/__echo/x", "Host: evil.example\r\n"), Status(400)),
        ("bad host", b"GET /__echo/x HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n".to_vec(), NotForwarded),
        // Request smuggling.
        ("CL+TE", post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), Status(400)),
        ("TE+CL", post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", "0\r\n\r\n"), Status(400)),
        ("duplicate CL equal", post("Content-Length: 4\r\nContent-Length: 4\r\n", "abcd"), Status(400)),
        ("duplicate CL differ", post("Content-Length: 4\r\nContent-Length: 5\r\n", "abcd"), NotForwarded),
        ("CL list", post("Content-Length: 4, 4\r\n", "abcd"), ParserRejects),
        ("CL plus sign", post("Content-Length: +4\r\n", "abcd"), NotForwarded),
        ("TE chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), Status(400)),
        ("TE gzip,chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), Status(400)),
        ("TE two headers", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), Status(400)),
        ("TE xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), NotForwarded),
        ("TE vertical tab", post("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"), NotForwarded),
        ("TE in HTTP/1.0", b"POST /__echo/p HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), NotForwarded),
        ("malformed chunk size", post("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), NotForwarded),
        // Limits and methods.
        ("too many headers", get("/__echo/x", &many_headers), Status(431)),
        ("oversized header", get("/__echo/x", &big_header), Status(431)),
        ("body over route limit via ;param", b"POST /__echo/small;x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n".iter().copied().chain(std::iter::repeat_n(b'x', 2048)).collect(), Status(413)),
        ("body over route limit", b"POST /__echo/small HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n".iter().copied().chain(std::iter::repeat_n(b'x', 2048)).collect(), Status(413)),
        ("TRACE", b"TRACE /__echo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(), Status(405)),
        ("unrouted", get("/nothing-here", ""), Status(404)),
        // Spoofed identity and forwarding headers never reach the upstream.
        ("X-Phigate-User", get("/__echo/x", "X-Phigate-User: admin\r\n"), Stripped("x-phigate-user")),
        ("x-PHIGATE-roles case", get("/__echo/x", "x-PHIGATE-roles: admin\r\n"), Stripped("x-phigate-roles")),
        ("X-Forwarded-User", get("/__echo/x", "X-Forwarded-User: admin\r\n"), Stripped("x-forwarded-user")),
        ("X-Forwarded-Email", get("/__echo/x", "X-Forwarded-Email: a@b\r\n"), Stripped("x-forwarded-email")),
        ("X-Remote-User", get("/__echo/x", "X-Remote-User: admin\r\n"), Stripped("x-remote-user")),
        ("X-Auth-Request-User", get("/__echo/x", "X-Auth-Request-User: admin\r\n"), Stripped("x-auth-request-user")),
        ("configured X-Legacy-User", get("/__echo/x", "X-Legacy-User: admin\r\n"), Stripped("x-legacy-user")),
        ("Forwarded", get("/__echo/x", "Forwarded: for=1.2.3.4\r\n"), Stripped("forwarded")),
        ("X-Real-IP", get("/__echo/x", "X-Real-IP: 1.2.3.4\r\n"), Stripped("x-real-ip")),
        ("Proxy-Authorization", get("/__echo/x", "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"), Stripped("proxy-authorization")),
        ("Connection-nominated header", get("/__echo/x", "X-Secret-Hop: 1\r\nConnection: X-Secret-Hop\r\n"), Stripped("x-secret-hop")),
        ("Upgrade on non-websocket route", get("/__echo/x", "Upgrade: websocket\r\nConnection: Upgrade\r\n"), Stripped("upgrade")),
        ("spoofed X-Forwarded-For", get("/__echo/x", "X-Forwarded-For: 1.2.3.4\r\n"), Upstream("x-forwarded-for", &["127.0.0.1"])),
        ("spoofed X-Forwarded-Proto", get("/__echo/x", "X-Forwarded-Proto: https\r\n"), Upstream("x-forwarded-proto", &["http"])),
        ("spoofed X-Forwarded-Host", get("/__echo/x", "X-Forwarded-Host: evil.example\r\n"), Stripped("x-forwarded-host")),
        ("underscore X_Remote_User", get("/__echo/x", "X_Remote_User: drsmith\r\n"), Stripped("x_remote_user")),
        ("underscore X_Forwarded_For", get("/__echo/x", "X_Forwarded_For: 1.2.3.4\r\n"), Stripped("x_forwarded_for")),
        ("underscore X_Original_URL", get("/__echo/x", "X_Original_URL: /admin\r\n"), Stripped("x_original_url")),
        ("X-Original-URL override", get("/__echo/x", "X-Original-URL: /admin\r\n"), Stripped("x-original-url")),
        ("X-HTTP-Method-Override", get("/__echo/x", "X-HTTP-Method-Override: DELETE\r\n"), Stripped("x-http-method-override")),
        ("good X-Request-Id passes", get("/__echo/x", "X-Request-Id: abc-123\r\n"), Upstream("x-request-id", &["abc-123"])),
        // Normalization is what the upstream sees.
        ("unreserved decoded", get("/__echo/%7Euser/%41b", ""), Target("/__echo/~user/Ab")),
        ("reserved kept encoded, hex uppercased", get("/__echo/a%3ab", ""), Target("/__echo/a%3Ab")),
        ("query untouched", get("/__echo/x?a=%2F&b=..%2f", ""), Target("/__echo/x?a=%2F&b=..%2f")),
        ("path params kept", get("/__echo/x;jsessionid=abc/y", ""), Target("/__echo/x;jsessionid=abc/y")),
        ("leading CRLF before request line", b"\r\nGET /__echo/crlf HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(), Target("/__echo/crlf")),
    ]
}

#[test]
fn hygiene_corpus() {
    let upstream = Upstream::demo();
    let body = format!(
        "[hygiene]\nstrip_headers = [\"X-Legacy-User\"]\n\n{}\n{}",
        route_to("echo", "/", &[upstream.origin()], "[upstreams.echo.health_check]\npath = \"/healthz\"\n"),
        "[[routes]]\nname = \"small\"\npath_prefix = \"/__echo/small\"\nupstream = \"echo\"\nmax_body = \"1KiB\"\nauth = { kind = \"public\" }\n",
    );
    let px = Phigate::start(&body.replace("path_prefix = \"/\"", "path_prefix = \"/__echo\""));
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus must stay at least 40 cases");
    let mut failures = Vec::new();
    for (name, request, expect) in &cases {
        let r = px.raw(request);
        let ok = match expect {
            Expect::Status(s) => {
                r.status == *s
                    && (r.status == 404 || r.header("content-type") == Some("application/json"))
                    && !r.body.contains("\"headers\"")
            }
            Expect::NotForwarded => {
                (r.status == 400 || r.status == 0) && !r.body.contains("\"headers\"")
            }
            Expect::ParserRejects => r.status == 400 && r.body.is_empty(),
            Expect::Stripped(h) => r.status == 200 && r.echoed(h).is_empty(),
            Expect::Upstream(h, values) => r.status == 200 && r.echoed(h) == *values,
            Expect::Target(t) => r.status == 200 && r.json()["path"] == *t,
        };
        if !ok {
            failures.push(format!(
                "{name}: got {} {}",
                r.status,
                r.body.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn request_id_is_echoed_or_generated() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&route_to("echo", "/__echo", &[upstream.origin()], ""));
    let r = px.raw(&get("/__echo/x", "X-Request-Id: abc-123\r\n"));
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = px.raw(&get("/__echo/x", "X-Request-Id: <script>\r\n"));
    let id = r.header("x-request-id").expect("generated id").to_string();
    assert_ne!(id, "<script>");
    assert_eq!(r.echoed("x-request-id"), vec![id.clone()]);
    // Rejections carry the id too, in the header and the body.
    let r = px.raw(&get("/__echo/%2e%2e/x", "X-Request-Id: rej-1\r\n"));
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-request-id"), Some("rej-1"));
    assert_eq!(r.json()["request_id"], "rej-1");
    assert_eq!(r.json()["error"], "bad_request");
}

#[test]
fn trusted_proxy_chain_is_believed() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&format!(
        "[hygiene]\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n\n{}",
        route_to("echo", "/__echo", &[upstream.origin()], "")
    ));
    let r = px.raw(&get(
        "/__echo/x",
        "X-Forwarded-For: 203.0.113.9, 10.1.1.1\r\nX-Forwarded-Proto: https\r\n",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echoed("x-forwarded-for"),
        vec!["203.0.113.9, 10.1.1.1, 127.0.0.1".to_string()]
    );
    assert_eq!(r.echoed("x-forwarded-proto"), vec!["https".to_string()]);
    // Entries left of the first untrusted hop cannot be verified and are dropped.
    let r = px.raw(&get(
        "/__echo/x",
        "X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\n",
    ));
    assert_eq!(
        r.echoed("x-forwarded-for"),
        vec!["198.51.100.7, 127.0.0.1".to_string()]
    );
}

#[test]
fn rejections_are_counted_by_reason() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&route_to("echo", "/__echo", &[upstream.origin()], ""));
    px.raw(&get("/__echo/a%2fb", ""));
    px.raw(&get("/elsewhere", ""));
    let m = px.metrics();
    assert_eq!(
        metric_value(&m, "phigate_rejections_total{reason=\"encoded_slash\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "phigate_rejections_total{reason=\"no_route\"}"),
        Some(1.0),
        "{m}"
    );
    // No path, query or header value ever reaches the log.
    let logs = px.logs();
    assert!(
        !logs.contains("a%2fb") && !logs.contains("elsewhere"),
        "{logs}"
    );
}
