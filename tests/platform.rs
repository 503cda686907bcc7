//! The platform around the features: health, metrics, the API document and explorer, the web
//! client, request ids, and the route contract of PRODUCT.md as published in /openapi.json.

mod common;

use common::TestApp;

#[tokio::test]
async fn health_metrics_docs_and_web_client_are_served() {
    let app = TestApp::spawn().await;
    app.get("/health/live", "").await.expect(200, "");
    let r = app.get("/health/ready", "").await;
    r.expect(200, "");
    assert_eq!(r.data()["status"], "ready");

    // Made-up methods are counted as one, whatever their names (no series per name).
    for name in ["FOOBARBAZ", "QUUXLONGMETHOD1"] {
        let method = reqwest::Method::from_bytes(name.as_bytes()).unwrap();
        let r = app
            .http
            .request(method, app.url("/health/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        !text.contains("FOOBARBAZ") && !text.contains("QUUX"),
        "{text}"
    );
    assert!(
        text.contains(
            "auravita_http_requests_total{method=\"OTHER\",route=\"/health/live\",status=\"405\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "auravita_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("auravita_http_request_duration_seconds_count"));

    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));

    let home = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(home.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn every_response_carries_a_request_id_even_errors() {
    let app = TestApp::spawn().await;
    let a = app.get("/protected/user/sessionDetail", "").await;
    let b = app.get("/nope", "").await;
    let ida = a.headers["x-request-id"].to_str().unwrap().to_string();
    let idb = b.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(!ida.is_empty() && ida != idb);
    // A proxy's id is kept; one that could carry text into the logs is replaced.
    let sent = |id: String| {
        let app = &app;
        async move {
            let r = app
                .http
                .get(app.url("/health/live"))
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(sent("4f1c2a9e-nginx.1".into()).await, "4f1c2a9e-nginx.1");
    for bad in ["1 method=DELETE user_id=victim", "a\"b", &"x".repeat(65)] {
        let got = sent(bad.to_string()).await;
        assert_ne!(got, bad);
        assert!(!got.is_empty() && !got.contains(' '), "{got}");
    }
}

#[tokio::test]
async fn openapi_publishes_every_route_of_the_contract_with_schemas() {
    let app = TestApp::spawn().await;
    let doc = app.openapi().await;
    let routes = [
        ("post", "/auth/signup"),
        ("post", "/auth/signup/verify/{id}"),
        ("post", "/auth/signin"),
        ("post", "/auth/signin/verify/{id}"),
        ("post", "/auth/signin/resendotp"),
        ("post", "/auth/signup/resendotp"),
        ("post", "/auth/signout"),
        ("post", "/auth/oidc/register"),
        ("get", "/protected/user/sessionDetail"),
        ("post", "/protected/user/deleteProfile"),
        ("post", "/protected/user/connectionRequest/{doctor_id}"),
        (
            "post",
            "/protected/user/acceptConnectionRequest/{request_id}",
        ),
        (
            "post",
            "/protected/user/rejectConnectionRequest/{request_id}",
        ),
        ("get", "/protected/user/getConnectionRequests"),
        ("post", "/protected/user/deletePendingRequest/{request_id}"),
        ("post", "/protected/user/deleteConnection/{connection_id}"),
        ("get", "/protected/user/searchDoctorByName"),
        ("get", "/protected/user/searchDoctorByNumber"),
        ("post", "/protected/user/updateProfile"),
        ("post", "/protected/user/createPatient"),
        ("get", "/protected/user/connections"),
        ("get", "/protected/user/sessions"),
        ("post", "/protected/user/revokeSession/{id}"),
        ("post", "/protected/user/signoutEverywhere"),
        ("get", "/protected/resource/userFiles"),
        ("post", "/protected/resource/uploadFile"),
        ("get", "/protected/resource/fileURL/{file_id}"),
        ("get", "/protected/resource/sharedFileURL/{access_id}"),
        ("post", "/protected/resource/createFileAccess/{file_id}"),
        ("post", "/protected/resource/revokeFileAccess/{file_id}"),
        ("post", "/protected/resource/tempFileShare/{file_id}"),
        ("get", "/protected/resource/patientFileData/{patient_id}"),
        ("post", "/protected/resource/deleteFile/{file_id}"),
        ("get", "/protected/resource/sharedWithMe"),
        ("get", "/protected/resource/accessLog"),
        ("get", "/protected/notification/notify"),
        (
            "post",
            "/protected/notification/readNotification/{notification_id}",
        ),
        ("get", "/protected/notification/list"),
        ("post", "/protected/notification/readAll"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
    ];
    let mut missing = Vec::new();
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        if op.is_null() {
            missing.push(format!("{method} {path}"));
            continue;
        }
        let ok = op["responses"]["200"].is_object() || op["responses"]["201"].is_object();
        assert!(ok, "{method} {path} documents no success response");
        if path.starts_with("/protected") {
            assert!(
                op["security"].is_array(),
                "{method} {path} documents no security"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
    // What every route may answer besides its own refusals: 403 from the origin check on each
    // route that changes something, 413 on each that takes a body. The session cookie is named
    // as the server names it.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if method != "get" {
                assert!(
                    op["responses"]["403"].is_object(),
                    "{method} {path}: no 403"
                );
            }
            if op["requestBody"].is_object() {
                assert!(
                    op["responses"]["413"].is_object(),
                    "{method} {path}: no 413"
                );
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["session"]["name"],
        app.state.config.cookie_name()
    );
    // Every parameter sits where the route reads it: a path parameter is in the path's
    // template, and the query parameters the seed's table names are in the query, required only
    // where the route cannot do without them.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                if p["in"] == "path" {
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is not in the path"
                    );
                }
            }
        }
    }
    let query = [
        ("get", "/protected/resource/userFiles", "q", false),
        ("get", "/protected/resource/fileURL/{file_id}", "o", false),
        (
            "post",
            "/protected/resource/createFileAccess/{file_id}",
            "p",
            true,
        ),
        (
            "post",
            "/protected/resource/createFileAccess/{file_id}",
            "t",
            false,
        ),
        (
            "post",
            "/protected/resource/createFileAccess/{file_id}",
            "e",
            false,
        ),
        (
            "post",
            "/protected/resource/revokeFileAccess/{file_id}",
            "p",
            true,
        ),
        (
            "post",
            "/protected/resource/tempFileShare/{file_id}",
            "p",
            true,
        ),
        (
            "post",
            "/protected/resource/tempFileShare/{file_id}",
            "t",
            false,
        ),
        ("get", "/protected/resource/accessLog", "page", false),
        ("get", "/protected/user/searchDoctorByName", "name", false),
        ("get", "/protected/notification/list", "page", false),
    ];
    for (method, path, name, required) in query {
        let params = doc["paths"][path][method]["parameters"].as_array().unwrap();
        let p = params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} documents no {name}"));
        assert_eq!(p["in"], "query", "{method} {path} {name}: {p}");
        assert_eq!(
            p["required"].as_bool().unwrap_or(false),
            required,
            "{method} {path} {name}: {p}"
        );
    }
}

/// The server's own accept loop (`app::serve`): an HTTP/1 connection buffers at most 64 KB that
/// it has not handed on, so a request head of 48 KB is served and one of 100 KB is refused (431,
/// in the envelope) without disturbing anything else; each request knows its peer's address; after a stop the
/// port takes no new connections.
#[tokio::test]
async fn the_accept_loop_caps_request_heads_and_stops_cleanly() {
    let app = TestApp::spawn().await;
    let padded = |kb: usize| {
        app.http
            .get(app.url("/health/live"))
            .header("x-padding", "a".repeat(kb * 1024))
            .send()
    };
    assert_eq!(padded(48).await.unwrap().status(), 200);
    let refused = padded(100).await.unwrap();
    assert_eq!(refused.status(), 431);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "HEADERS_TOO_LARGE");
    app.get("/health/live", "").await.expect(200, "");

    // What hyper refuses before any handler runs is answered in the envelope (`wire`), with the
    // security headers, and the connection closed; never a 500: 101 header fields (431; hyper's
    // limit is 100), a request line that is not HTTP, a Content-Length that is not a number
    // (400), a path of 70 KB (414).
    let addr = app.base.trim_start_matches("http://").to_string();
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long_path = "a".repeat(70 * 1024);
    for (raw, status, code) in [
        (
            format!("GET /health/live HTTP/1.1\r\nhost: a\r\n{many}\r\n"),
            431,
            "HEADERS_TOO_LARGE",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), 400, "BAD_REQUEST"),
        (
            "POST /auth/signup HTTP/1.1\r\nhost: a\r\ncontent-length: ten\r\n\r\n".to_string(),
            400,
            "BAD_REQUEST",
        ),
        (
            format!("GET /{long_path} HTTP/1.1\r\nhost: a\r\n\r\n"),
            414,
            "URI_TOO_LONG",
        ),
    ] {
        let answer = raw_exchange(&addr, raw.as_bytes(), false).await;
        let what = &raw[..raw.len().min(40)];
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what:?} got {answer:?}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        for line in [
            "connection: close",
            "content-type: application/json",
            "x-content-type-options: nosniff",
            "cache-control: no-store",
        ] {
            assert!(head.contains(&format!("\r\n{line}")), "{what:?}: {head:?}");
        }
        // Over http, no HSTS (as on the router's answers).
        assert!(!head.contains("strict-transport-security"), "{head:?}");
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["success"], false, "{what:?}");
        assert_eq!(body["error"]["code"], code, "{what:?}");
    }
    // 100 header fields are fine.
    let hundred: String = (0..98).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw_exchange(
        &addr,
        format!("GET /health/live HTTP/1.1\r\nhost: a\r\nconnection: close\r\n{hundred}\r\n")
            .as_bytes(),
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    app.get("/health/live", "").await.expect(200, "");

    // The peer address reaches the handlers (the device list shows where a session signed in).
    let alice = app.signup("Alice", "patient").await;
    let sessions = app.get("/protected/user/sessions", &alice.cookie).await;
    sessions.expect(200, "");
    assert_eq!(
        sessions.data()["sessions"][0]["ip"],
        "127.0.0.1",
        "{:?}",
        sessions.data()
    );

    let url = app.url("/health/live");
    app.stop().await;
    let after = reqwest::Client::new().get(url).send().await;
    assert!(after.is_err(), "a stopped server answered: {after:?}");
}

/// Over https, the answers written below the router carry `Strict-Transport-Security` as every
/// other answer does: hyper's own 431 put in the envelope, and the per-client 429.
#[tokio::test]
async fn answers_below_the_router_carry_hsts_over_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|c| {
        c.public_url = "https://auravita.example".parse().unwrap();
        c.limits.max_connections_per_client = 1;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let hsts = "\r\nstrict-transport-security: max-age=31536000; includeSubDomains\r\n";

    // The router's answer carries it; hyper's 431 (101 fields) must too.
    let mut held = connect_from("127.0.0.1", &addr).await;
    held.write_all(b"GET /health/live HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = held.read(&mut first).await.unwrap();
    let first = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    assert!(first.contains(hsts), "{first}");
    drop(held);

    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let mut answer = String::new();
    // The closed connection's slot comes back once the server has seen the close.
    for _ in 0..50 {
        answer = raw_exchange(
            &addr,
            format!("GET /health/live HTTP/1.1\r\nhost: a\r\n{many}\r\n").as_bytes(),
            false,
        )
        .await;
        if !answer.starts_with("HTTP/1.1 429 ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
    let (head, _) = answer.split_once("\r\n\r\n").unwrap();
    assert!(format!("{head}\r\n").contains(hsts), "{head:?}");

    // The second connection of one client is refused (429) below the router.
    let mut held = connect_from("127.0.0.1", &addr).await;
    let mut served = false;
    for _ in 0..50 {
        if raw_health_or_refused(&mut held).await == "HTTP/1.1 200" {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        held = connect_from("127.0.0.1", &addr).await;
    }
    assert!(served, "the client's one connection was never served");
    let mut second = connect_from("127.0.0.1", &addr).await;
    second
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let (_, text) = read_to_close(second, 5, true).await;
    assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
    assert!(format!("{head}\r\n").contains(hsts), "{head}");
    drop(held);
}

/// Writes `raw` on a new connection (then, if `half_close`, ends the sending side: a body cut
/// short) and reads until the server closes it (within 5 s).
async fn raw_exchange(addr: &str, raw: &[u8], half_close: bool) -> String {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw).await.unwrap();
    if half_close {
        conn.shutdown().await.unwrap();
    }
    read_to_close(conn, 5, false).await.1
}

/// Reads what the server sends until it closes `conn` (which must happen within `secs`): how
/// long that took, and the bytes. With `reset_ok`, a reset counts as a close (bytes sent after
/// the server closed make its side answer with one); otherwise the close must be clean.
async fn read_to_close(
    mut conn: tokio::net::TcpStream,
    secs: u64,
    reset_ok: bool,
) -> (std::time::Duration, String) {
    use tokio::io::AsyncReadExt;
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(secs),
        conn.read_to_end(&mut out),
    )
    .await
    .expect("the server kept the connection open");
    match read {
        Err(e) if reset_ok => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        read => {
            read.expect("a clean close");
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

/// A whole answer's head and its JSON body.
fn head_and_json(answer: &str) -> (&str, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    (head, serde_json::from_str(body).expect("a JSON body"))
}

/// What gets past hyper but not past the extractors is answered in the envelope: a body that
/// ends before its Content-Length or holds a broken chunk (400 BAD_BODY), a path parameter that
/// is not UTF-8 once decoded (400 BAD_PATH; 401 first without a session).
#[tokio::test]
async fn cut_bodies_and_undecodable_paths_get_the_envelope() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let post = |framing: &str, body: &str| {
        format!(
            "POST /protected/user/updateProfile HTTP/1.1\r\nhost: a\r\ncookie: {}\r\n\
             content-type: application/json\r\n{framing}\r\n\r\n{body}",
            alice.cookie
        )
    };
    let get = |cookie: &str| {
        format!(
            "GET /protected/resource/fileURL/%FF%FE HTTP/1.1\r\nhost: a\r\ncookie: {cookie}\r\n\
             connection: close\r\n\r\n"
        )
    };
    for (raw, half_close, status, code) in [
        (
            post("content-length: 100", "{\"name\":"),
            true,
            400,
            "BAD_BODY",
        ),
        (
            post("transfer-encoding: chunked", "zz\r\n"),
            true,
            400,
            "BAD_BODY",
        ),
        (get(&alice.cookie), false, 400, "BAD_PATH"),
        (get("auravita_session=none"), false, 401, "UNAUTHENTICATED"),
    ] {
        let answer = raw_exchange(&addr, raw.as_bytes(), half_close).await;
        let (head, body) = head_and_json(&answer);
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // Alice's profile is as it was.
    let me = app
        .get("/protected/user/sessionDetail", &alice.cookie)
        .await;
    me.expect(200, "");
    assert_eq!(me.data()["user"]["name"], "Alice", "{:?}", me.data());
}

/// A connection has `AURAVITA_CLIENT_TIMEOUT_SECS` (1 s here) to send a request's head and
/// may stay idle that long between requests; then the server closes it without an answer. A body
/// that stops arriving for that long is answered 408 and leaves nothing behind. A body that keeps
/// coming, however slowly, and an event stream outlive the timeout.
#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_requests_under_way_are_not() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::{sleep, timeout, Instant};
    let app = TestApp::spawn_with(|c| {
        c.limits.client_timeout_secs = 1;
        c.limits.sse_keepalive_secs = 1;
    })
    .await;
    let alice = app.signup("Alice", "patient").await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Every connection here may be cut while bytes are still coming: a reset is a close.
    let closed_within = |conn, secs| read_to_close(conn, secs, true);

    // Nothing at all: closed after about a second. And an HTTP/2 preface is not served
    // (HTTP/1.1 only), so it cannot open a connection without an idle limit either.
    let conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (after, answer) = closed_within(conn, 5).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert!(after >= Duration::from_millis(800), "{after:?}");
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (_, answer) = closed_within(conn, 5).await;
    assert!(
        !answer.starts_with("HTTP/2") && !answer.contains("HTTP/1.1 200"),
        "{answer:?}"
    );

    // Half a head, then nothing: closed after about a second, nothing answered.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /health/live HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let (after, answer) = closed_within(conn, 5).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert!(after >= Duration::from_millis(800), "{after:?}");

    // A head trickled in over more than the timeout is cut too.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut cut = false;
    for piece in [
        "GET /health/live HTTP/1.1\r\n",
        "host: a\r\n",
        "x-a: b\r\n",
        "x-c: d\r\n",
    ] {
        if conn.write_all(piece.as_bytes()).await.is_err() {
            cut = true;
            break;
        }
        sleep(Duration::from_millis(500)).await;
    }
    if !cut {
        let _ = conn.write_all(b"\r\n").await;
        let (_, answer) = closed_within(conn, 5).await;
        assert!(answer.is_empty(), "a trickled head was served: {answer:?}");
    }

    // Served, then idle: closed after about a second.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /health/live HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    conn.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (after, _) = closed_within(conn, 5).await;
    assert!(after < Duration::from_secs(3), "{after:?}");

    // A body sent slowly, after its head, is read to the end and answered.
    let body = br#"{"name": "Alice Slow"}"#;
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /protected/user/updateProfile HTTP/1.1\r\nhost: a\r\ncookie: {}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            alice.cookie,
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for chunk in body.chunks(8) {
        sleep(Duration::from_millis(700)).await;
        conn.write_all(chunk).await.unwrap();
    }
    let (_, answer) = closed_within(conn, 5).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let me = app
        .get("/protected/user/sessionDetail", &alice.cookie)
        .await;
    assert_eq!(me.data()["user"]["name"], "Alice Slow", "{:?}", me.data());

    // A body that stops arriving (after a part, or before any) is answered 408 in the envelope,
    // and changes nothing.
    for sent in [&body[..8], &b""[..]] {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(
            format!(
                "POST /protected/user/updateProfile HTTP/1.1\r\nhost: a\r\ncookie: {}\r\n\
                 content-type: application/json\r\ncontent-length: 40\r\n\r\n",
                alice.cookie
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        conn.write_all(sent).await.unwrap();
        let (after, answer) = closed_within(conn, 5).await;
        assert!(after >= Duration::from_millis(800), "{after:?}");
        let (head, json) = head_and_json(&answer);
        assert!(head.starts_with("HTTP/1.1 408 "), "{answer}");
        assert_eq!(json["error"]["code"], "TIMEOUT", "{json}");
    }
    let me = app
        .get("/protected/user/sessionDetail", &alice.cookie)
        .await;
    assert_eq!(me.data()["user"]["name"], "Alice Slow", "{:?}", me.data());

    // An upload that stalls inside its file: 408, nothing stored, no temporary file left.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut part =
        b"--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\
                     content-type: application/pdf\r\n\r\n%PDF-1.4\n"
            .to_vec();
    part.extend(std::iter::repeat_n(b'a', 100_000));
    conn.write_all(
        format!(
            "POST /protected/resource/uploadFile HTTP/1.1\r\nhost: a\r\ncookie: {}\r\n\
             content-type: multipart/form-data; boundary=XyZ\r\ncontent-length: 5000000\r\n\r\n",
            alice.cookie
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    conn.write_all(&part).await.unwrap();
    let (_, answer) = closed_within(conn, 5).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"TIMEOUT\""), "{answer}");
    let files = app
        .get("/protected/resource/userFiles?q=1", &alice.cookie)
        .await;
    assert_eq!(files.data()["total"], 0, "{:?}", files.data());
    let tmp = std::fs::read_dir(app.state.storage.tmp_dir())
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "a stalled upload left its temporary file");

    // An event stream stays open past the timeout (keep-alive comments keep coming).
    let res = app
        .http
        .get(app.url("/protected/notification/notify"))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    let started = Instant::now();
    let mut comments = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        let chunk = timeout(
            Duration::from_secs(3),
            futures::StreamExt::next(&mut stream),
        )
        .await
        .expect("the stream went silent")
        .expect("the stream ended")
        .unwrap();
        comments += String::from_utf8_lossy(&chunk).matches("\n:").count()
            + usize::from(chunk.starts_with(b":"));
    }
    assert!(comments >= 2, "{comments} keep-alive comments in 3.5 s");

    // And the server still serves.
    app.get("/health/live", "").await.expect(200, "");
}

/// `/health/live` over a raw connection, kept open; the answer's status line's start.
async fn raw_health(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncWriteExt;
    conn.write_all(b"GET /health/live HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    read_response(conn).await
}
/// One whole response (head and a `content-length` body); its status line's start.
async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text[..12].to_string();
            }
        }
    }
}

/// `/metrics` is for the operator's scraper: loopback and private addresses get it; behind a
/// trusted proxy the client's forwarded address decides, and a public one is refused (403 in the
/// envelope), as `deploy/nginx.conf` allows it.
#[tokio::test]
async fn metrics_are_served_to_private_addresses_only() {
    let app = TestApp::spawn_with(|c| c.trust_proxy = true).await;
    let from = |ip: &'static str| {
        let app = &app;
        async move {
            let r = app
                .http
                .get(app.url("/metrics"))
                .header("x-forwarded-for", ip)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    // A hop may carry a port or brackets; one that cannot be read is an unknown client.
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.9.9",
        "192.168.1.20",
        "fd00::7",
        "::1",
        "10.0.0.1:5000",
        "[fd00::1]:443",
        "8.8.8.8, 10.9.9.9",
    ] {
        let (status, body) = from(ip).await;
        assert_eq!(status, 200, "{ip}: {body}");
        assert!(body.contains("auravita_http_requests_total"), "{ip}");
    }
    for ip in [
        "203.0.113.7",
        "8.8.8.8",
        "172.32.0.1",
        "2001:db8::1",
        "::ffff:8.8.8.8",
        "8.8.8.8:443",
        "[2001:db8::1]",
        "garbage",
        "10.0.0.1, nonsense",
        "",
    ] {
        let (status, body) = from(ip).await;
        assert_eq!(status, 403, "{ip}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "FORBIDDEN", "{ip}");
    }
    // Without a proxy the peer decides: this test's loopback connection is served.
    let direct = TestApp::spawn().await;
    let r = direct
        .http
        .get(direct.url("/metrics"))
        .header("x-forwarded-for", "8.8.8.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// At `AURAVITA_MAX_CONNECTIONS` open connections the server accepts no more until one closes:
/// the next waits (in the kernel's queue) and is served as soon as a slot frees.
#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_for_a_slot() {
    use std::time::Duration;
    use tokio::time::timeout;
    let app = TestApp::spawn_with(|c| {
        c.limits.max_connections = 2;
        c.limits.client_timeout_secs = 30;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Two connections, served and kept open: the cap is reached.
    let mut a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(raw_health(&mut a).await, "HTTP/1.1 200");
    assert_eq!(raw_health(&mut b).await, "HTTP/1.1 200");
    // A third connects (the kernel queues it) but is not served while both stay open.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let waiting = timeout(Duration::from_millis(1500), raw_health(&mut c)).await;
    assert!(waiting.is_err(), "served past the cap: {waiting:?}");
    // The open ones keep working.
    assert_eq!(raw_health(&mut a).await, "HTTP/1.1 200");
    // One closes: the waiting connection is served (its request was already sent).
    drop(b);
    let served = timeout(Duration::from_secs(5), read_response(&mut c))
        .await
        .expect("the waiting connection was not served after a slot freed");
    assert_eq!(served, "HTTP/1.1 200");
}

/// A connection from `ip` (any address of the loopback network, so one test can be two clients).
async fn connect_from(ip: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// One client holds at most `AURAVITA_MAX_CONNECTIONS_PER_CLIENT` connections: the next is
/// answered 429 in the envelope and closed, while other clients are served; a closed connection
/// gives its slot back. Behind a proxy (`AURAVITA_TRUST_PROXY`) the limit is the proxy's.
#[tokio::test]
async fn one_client_cannot_hold_more_than_its_share_of_connections() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|c| c.limits.max_connections_per_client = 2).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut a = connect_from("127.0.0.1", &addr).await;
    let mut b = connect_from("127.0.0.1", &addr).await;
    assert_eq!(raw_health(&mut a).await, "HTTP/1.1 200");
    assert_eq!(raw_health(&mut b).await, "HTTP/1.1 200");

    // The same client's third: refused with an answer, then closed.
    let mut c = connect_from("127.0.0.1", &addr).await;
    c.write_all(b"GET /health/live HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
        .await
        .expect("the refused connection was not closed")
        .unwrap();
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
    assert!(text.contains("x-content-type-options: nosniff"), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS");

    // Another client is served meanwhile, and the first client's open ones keep working.
    let mut other = connect_from("127.0.0.2", &addr).await;
    assert_eq!(raw_health(&mut other).await, "HTTP/1.1 200");
    assert_eq!(raw_health(&mut a).await, "HTTP/1.1 200");

    // One closes: the client may open another (once the server has seen the close).
    drop(b);
    let mut served = false;
    for _ in 0..50 {
        let mut d = connect_from("127.0.0.1", &addr).await;
        if raw_health_or_refused(&mut d).await == "HTTP/1.1 200" {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the closed connection's slot never came back");

    // Behind a proxy every connection has the proxy's address: no limit of this kind.
    let proxied = TestApp::spawn_with(|c| {
        c.limits.max_connections_per_client = 2;
        c.trust_proxy = true;
    })
    .await;
    let addr = proxied.base.trim_start_matches("http://").to_string();
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut conn = connect_from("127.0.0.1", &addr).await;
        assert_eq!(raw_health(&mut conn).await, "HTTP/1.1 200");
        open.push(conn);
    }
}

/// Refused connections do not hold the global cap's slots while they wait for their answer: a
/// client opening connections in a loop (and never reading) does not keep others waiting.
#[tokio::test]
async fn refused_connections_do_not_fill_the_global_cap() {
    use std::time::Duration;
    let app = TestApp::spawn_with(|c| {
        c.limits.max_connections = 8;
        c.limits.max_connections_per_client = 1;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut held = connect_from("127.0.0.1", &addr).await;
    assert_eq!(raw_health(&mut held).await, "HTTP/1.1 200");
    // Twenty more from the same client, all refused, none of them reading or closing.
    let mut refused = Vec::new();
    for _ in 0..20 {
        refused.push(connect_from("127.0.0.1", &addr).await);
    }
    // Another client is served well within the 2 s a refusal may take.
    let mut other = connect_from("127.0.0.2", &addr).await;
    let served = tokio::time::timeout(Duration::from_secs(1), raw_health(&mut other)).await;
    assert_eq!(
        served.expect("another client waited behind the refusals"),
        "HTTP/1.1 200"
    );
    drop(refused);
}

/// `/health/live` on a connection that may be refused: the status line's start either way.
async fn raw_health_or_refused(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = conn
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: a\r\n\r\n")
        .await;
    let mut head = [0u8; 12];
    match conn.read_exact(&mut head).await {
        Ok(_) => String::from_utf8_lossy(&head).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// A handler that panics is answered 500 in the envelope, with the security headers, and is
/// counted in `/metrics` like any other answer (the panic is caught inside the metrics layer).
#[tokio::test]
async fn a_panicking_handler_is_answered_500_and_counted() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let app = TestApp::spawn().await;
    let routes = axum::Router::new().route(
        "/boom",
        axum::routing::get(|| async {
            if std::hint::black_box(true) {
                panic!("a handler's bug");
            }
            "never"
        }),
    );
    let svc = auravita::app::layered(routes, app.state.clone());
    let res = svc
        .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(res.headers().contains_key("x-request-id"));
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "INTERNAL", "{body}");
    let text = app.state.metrics.render(0, 0);
    assert!(
        text.contains(r#"auravita_http_requests_total{method="GET",route="/boom",status="500"} 1"#),
        "{text}"
    );
}

/// Over https the session cookie is `__Host-auravita_session`, and the document says so.
#[tokio::test]
async fn the_document_names_the_session_cookie_as_set_over_https() {
    let app =
        TestApp::spawn_with(|c| c.public_url = "https://auravita.example".parse().unwrap()).await;
    let doc = app.openapi().await;
    assert_eq!(
        doc["components"]["securitySchemes"]["session"]["name"],
        "__Host-auravita_session"
    );
}

/// A request whose client goes away is dropped wherever it is waiting, in the middle of a
/// transaction's `BEGIN` too. sqlx's `begin` is not safe to drop half way: on PostgreSQL a
/// connection could go back to the pool inside a transaction nobody would end, and every later
/// write on it would answer success and never commit. Dropped at many points, no `BEGIN` leaves
/// one behind: what the pool writes afterwards is seen from a connection of its own.
#[tokio::test]
async fn a_transaction_begun_for_a_request_that_went_away_leaves_nothing_open() {
    use sqlx::Connection;
    // Two connections, so that the writes below meet the ones the dropped BEGINs had.
    let app = TestApp::spawn_with(|cfg| cfg.limits.db_max_connections = 2).await;
    let db = &app.state.db;
    // Dropped after 0, 2, 4, … scheduler turns (before, during and after the round trip), each
    // followed by a write outside any transaction.
    let rounds: Vec<usize> = (0..400).step_by(2).collect();
    for &turns in &rounds {
        tokio::select! {
            biased;
            _ = db.begin() => {}
            _ = async {
                for _ in 0..turns {
                    tokio::task::yield_now().await;
                }
            } => {}
        }
        sqlx::query("INSERT INTO server_settings (name, value) VALUES ($1, 'probe')")
            .bind(format!("probe{turns}"))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let mut outside = sqlx::AnyConnection::connect(db.url()).await.unwrap();
    let (seen,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM server_settings WHERE value = 'probe'")
            .fetch_one(&mut outside)
            .await
            .unwrap();
    assert_eq!(
        seen,
        rounds.len() as i64,
        "writes answered as done but not committed"
    );
}

/// A transaction that sqlx counts as open although the database has ended it (SQLite rolls back
/// by itself on a full disk, and the ROLLBACK that follows fails) must not make every later
/// transaction on that connection fail: the pool closes such a connection instead of handing it
/// out again.
#[tokio::test]
async fn a_connection_whose_transaction_was_ended_behind_sqlx_is_not_reused() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let mut tx = db.begin().await.unwrap();
    sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
    drop(tx);
    for i in 0..16 {
        let mut tx = db.begin().await.expect("a transaction begins");
        sqlx::query("INSERT INTO server_settings (name, value) VALUES ($1, 'after')")
            .bind(format!("after{i}"))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM server_settings WHERE value = $1",
            &["after"]
        )
        .await,
        16
    );
}

/// Every instance on one database needs the same secret: with another, codes sent by one fail
/// on the next (each try counted wrong), its links are refused, and authenticator keys sealed by
/// one cannot be opened by the other. An instance started with another secret refuses to start
/// and says why; one with the same secret starts.
#[tokio::test]
async fn an_instance_with_another_secret_on_the_same_database_refuses_to_start() {
    let app = TestApp::spawn().await;
    let peer = app.spawn_peer().await;
    peer.get("/health/ready", "").await.expect(200, "");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::base_config(dir.path(), app.state.db.url());
    cfg.secret = Some(
        "another-secret-another-secret-0123456789"
            .to_string()
            .into(),
    );
    let refused = auravita::AppState::build(cfg).await.err().expect("refused");
    let why = format!("{refused:#}");
    assert!(why.contains("AURAVITA_SECRET"), "{why}");
    // Without AURAVITA_SECRET, a data folder's own generated key is another secret too.
    let mut cfg = common::base_config(dir.path(), app.state.db.url());
    cfg.secret = None;
    assert!(auravita::AppState::build(cfg).await.is_err());
}
