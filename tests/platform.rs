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

    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
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
}

#[tokio::test]
async fn openapi_publishes_every_route_of_the_contract_with_schemas() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
}

/// The server's own accept loop (`app::serve`): an HTTP/1 connection buffers at most 64 KB that
/// it has not handed on, so a request head of 48 KB is served and one of 100 KB is refused (431)
/// without disturbing anything else; each request knows its peer's address; after a stop the
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
    assert_eq!(padded(100).await.unwrap().status(), 431);
    app.get("/health/live", "").await.expect(200, "");

    // What hyper refuses before any handler runs gets its bare answer and a closed connection,
    // never a 500: 101 header fields (431; hyper's limit is 100), a request line that is not
    // HTTP, a Content-Length that is not a number (400).
    let addr = app.base.trim_start_matches("http://").to_string();
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    for (raw, status) in [
        (
            format!("GET /health/live HTTP/1.1\r\nhost: a\r\n{many}\r\n"),
            431,
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), 400),
        (
            "POST /auth/signup HTTP/1.1\r\nhost: a\r\ncontent-length: ten\r\n\r\n".to_string(),
            400,
        ),
    ] {
        let answer = raw_exchange(&addr, raw.as_bytes(), false).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} got {answer:?}",
            &raw[..raw.len().min(40)]
        );
        assert!(answer.contains("connection: close"), "{answer:?}");
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

/// Writes `raw` on a new connection (then, if `half_close`, ends the sending side: a body cut
/// short) and reads until the server closes it (within 5 s).
async fn raw_exchange(addr: &str, raw: &[u8], half_close: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw).await.unwrap();
    if half_close {
        conn.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut out),
    )
    .await
    .expect("the server closed the connection")
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
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
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
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
