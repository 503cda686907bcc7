//! Notifications over HTTP, reading the real event stream: replay then live, order, resume with
//! Last-Event-ID, read/unread, other users' ids, revoked sessions, the per-user stream limit,
//! the new-sign-in notice, and (with PostgreSQL) two instances on one database.

mod common;

use std::pin::Pin;
use std::time::Duration;

use auravita::notifications::{raise, Kind};
use common::{pg_url, TestApp};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// One SSE frame.
#[derive(Debug, Default)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: String,
    comment: bool,
    retry: Option<String>,
}

enum Next {
    Frame(Frame),
    Ended,
    Timeout,
}

/// A reader of one real event stream.
struct Sse {
    headers: reqwest::header::HeaderMap,
    body: Body,
    buf: String,
}

impl Sse {
    async fn open(app: &TestApp, cookie: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = app
            .http
            .get(app.url("/protected/notification/notify"))
            .header("cookie", cookie)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.expect("open stream");
        assert_eq!(res.status(), 200, "opening the stream");
        Sse {
            headers: res.headers().clone(),
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        }
    }

    async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame::default();
                for line in block.lines() {
                    if line.starts_with(':') {
                        f.comment = true;
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v).to_string();
                        match k {
                            "event" => f.event = Some(v),
                            "id" => f.id = Some(v),
                            "retry" => f.retry = Some(v),
                            "data" => {
                                if !f.data.is_empty() {
                                    f.data.push('\n');
                                }
                                f.data.push_str(&v)
                            }
                            _ => {}
                        }
                    }
                }
                return Next::Frame(f);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Next::Ended,
                Ok(Some(Ok(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
    }

    /// The next notification (keep-alive comments skipped), checked for shape.
    #[track_caller]
    fn check(f: Frame) -> Value {
        assert_eq!(f.event.as_deref(), Some("notification"), "{f:?}");
        let v: Value = serde_json::from_str(&f.data).expect("event data is JSON");
        assert_eq!(
            f.id.as_deref(),
            Some(v["id"].as_i64().unwrap().to_string().as_str())
        );
        for k in ["id", "kind", "message", "data", "created_at", "read"] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
        v
    }

    async fn event(&mut self) -> Value {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Next::Frame(f) if f.comment => continue,
                Next::Frame(f) => return Self::check(f),
                Next::Ended => panic!("the stream ended while an event was expected"),
                Next::Timeout => panic!("no event within 10 s"),
            }
        }
    }

    /// Asserts that no notification arrives for `d` (the stream may stay open).
    async fn quiet(&mut self, d: Duration) {
        loop {
            match self.next(d).await {
                Next::Frame(f) if f.comment => continue,
                Next::Frame(f) => panic!("unexpected event {f:?}"),
                Next::Ended | Next::Timeout => return,
            }
        }
    }

    /// Asserts that the stream ends within `d` without delivering another notification.
    /// Waits for the stream to end; returns the last reconnection delay (`retry:`) it set.
    async fn closes(&mut self, d: Duration) -> Option<String> {
        let mut retry = None;
        loop {
            match self.next(d).await {
                Next::Frame(f) if f.comment => retry = f.retry.or(retry),
                Next::Frame(f) => panic!("expected the stream to close, got {f:?}"),
                Next::Ended => return retry,
                Next::Timeout => panic!("the stream is still open after {d:?}"),
            }
        }
    }
}

/// Raises a notification for `user_id` the way a feature does: inside a committed transaction.
async fn raise_for(app: &TestApp, user_id: &str, message: &str) {
    let mut tx = app.state.db.pool.begin().await.unwrap();
    raise(
        &mut tx,
        &app.state,
        user_id,
        Kind::FileShared,
        message,
        json!({"n": message}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn messages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn replays_unread_oldest_first_then_live() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    for m in ["one", "two", "three"] {
        raise_for(&app, &alice.id, m).await;
    }
    let list = app.get("/protected/notification/list", &alice.cookie).await;
    list.expect(200, "");
    let two = list.data()["notifications"][1]["id"].as_i64().unwrap();
    assert_eq!(list.data()["notifications"][1]["message"], "two");
    app.post_empty(
        &format!("/protected/notification/readNotification/{two}"),
        &alice.cookie,
    )
    .await
    .expect(200, "");

    let mut s = Sse::open(&app, &alice.cookie, None).await;
    assert!(s.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(s.headers["x-accel-buffering"], "no");
    assert_eq!(s.headers["cache-control"], "no-store");
    let a = s.event().await;
    let c = s.event().await;
    assert_eq!(messages(&[a.clone(), c.clone()]), ["one", "three"]);
    assert_eq!(a["kind"], "file_shared");
    assert_eq!(a["read"], false);
    assert_eq!(a["data"], json!({"n": "one"}));
    assert!(a["id"].as_i64() < c["id"].as_i64());
    s.quiet(Duration::from_millis(300)).await;

    raise_for(&app, &alice.id, "four").await;
    let d = s.event().await;
    assert_eq!(d["message"], "four");
    assert!(d["id"].as_i64() > c["id"].as_i64());
}

#[tokio::test]
async fn a_stream_shows_only_its_own_users_notifications_in_order() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let bob = app.signup("Bob", "doctor").await;
    let mut sa = Sse::open(&app, &alice.cookie, None).await;
    let mut sb = Sse::open(&app, &bob.cookie, None).await;
    for i in 0..10 {
        raise_for(&app, &alice.id, &format!("a{i}")).await;
        raise_for(&app, &bob.id, &format!("b{i}")).await;
    }
    let mut last = 0;
    for i in 0..10 {
        let e = sa.event().await;
        assert_eq!(e["message"], format!("a{i}"));
        assert!(e["id"].as_i64().unwrap() > last);
        last = e["id"].as_i64().unwrap();
        assert_eq!(sb.event().await["message"], format!("b{i}"));
    }
    sa.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn concurrent_raisers_are_delivered_once_each_in_id_order() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let mut s = Sse::open(&app, &alice.cookie, None).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let state = app.state.clone();
        let uid = alice.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = state.db.pool.begin().await.unwrap();
            raise(
                &mut tx,
                &state,
                &uid,
                Kind::FileShared,
                &format!("c{i}"),
                json!({}),
            )
            .await
            .unwrap();
            // Commits land in a different order from the inserts' start.
            tokio::time::sleep(Duration::from_millis((i * 7 % 5) as u64)).await;
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut last = 0;
    for _ in 0..40 {
        let e = s.event().await;
        let id = e["id"].as_i64().unwrap();
        assert!(id > last, "ids must increase: {id} after {last}");
        last = id;
        assert!(seen.insert(e["message"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), 40);
    s.quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_failed_action_raises_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let mut s = Sse::open(&app, &alice.cookie, None).await;
    let mut tx = app.state.db.pool.begin().await.unwrap();
    raise(
        &mut tx,
        &app.state,
        &alice.id,
        Kind::FileShared,
        "never",
        json!({}),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    s.quiet(Duration::from_millis(500)).await;
    raise_for(&app, &alice.id, "after").await;
    assert_eq!(s.event().await["message"], "after");
    let list = app.get("/protected/notification/list", &alice.cookie).await;
    assert_eq!(list.data()["total"], 1);
}

#[tokio::test]
async fn last_event_id_resumes_with_nothing_lost_or_repeated() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let mut s = Sse::open(&app, &alice.cookie, None).await;
    for i in 1..=5 {
        raise_for(&app, &alice.id, &format!("m{i}")).await;
    }
    let _m1 = s.event().await;
    let m2 = s.event().await;
    assert_eq!(m2["message"], "m2");
    drop(s); // the connection drops after m2 (m3..m5 were sent or not: the client did not see them)
    for i in 6..=7 {
        raise_for(&app, &alice.id, &format!("m{i}")).await;
    }
    // Read elsewhere meanwhile: still part of what this client missed, flagged as read.
    let list = app.get("/protected/notification/list", &alice.cookie).await;
    let m3 = list.data()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["message"] == "m3")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    app.post_empty(
        &format!("/protected/notification/readNotification/{m3}"),
        &alice.cookie,
    )
    .await
    .expect(200, "");

    let last = m2["id"].as_i64().unwrap().to_string();
    let mut s = Sse::open(&app, &alice.cookie, Some(&last)).await;
    let mut got = Vec::new();
    for _ in 3..=7 {
        got.push(s.event().await);
    }
    assert_eq!(messages(&got), ["m3", "m4", "m5", "m6", "m7"]);
    assert_eq!(got[0]["read"], true);
    assert_eq!(got[1]["read"], false);
    s.quiet(Duration::from_millis(300)).await;
    raise_for(&app, &alice.id, "m8").await;
    assert_eq!(s.event().await["message"], "m8");

    // Resuming from m7 gives only m8.
    let m7 = got[4]["id"].as_i64().unwrap();
    let mut s2 = Sse::open(&app, &alice.cookie, Some(&m7.to_string())).await;
    let e = s2.event().await;
    assert_eq!(e["message"], "m8");
    s2.quiet(Duration::from_millis(300)).await;

    for bad in ["abc", "-1", "1.5"] {
        let r = app
            .http
            .get(app.url("/protected/notification/notify"))
            .header("cookie", &alice.cookie)
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        let r = common::Resp::from(r).await;
        r.expect(400, "BAD_LAST_EVENT_ID");
    }
}

#[tokio::test]
async fn read_one_read_all_and_the_paged_list() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    for i in 0..25 {
        raise_for(&app, &alice.id, &format!("n{i}")).await;
    }
    let p1 = app.get("/protected/notification/list", &alice.cookie).await;
    p1.expect(200, "");
    let items = p1.data()["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(items[0]["message"], "n24");
    assert_eq!(items[19]["message"], "n5");
    assert_eq!(p1.data()["total"], 25);
    assert_eq!(p1.data()["unread"], 25);
    assert_eq!(p1.data()["page"], 1);
    assert_eq!(p1.data()["page_size"], 20);
    let p2 = app
        .get("/protected/notification/list?page=2", &alice.cookie)
        .await;
    let items2 = p2.data()["notifications"].as_array().unwrap();
    assert_eq!(messages(items2), ["n4", "n3", "n2", "n1", "n0"]);
    let p3 = app
        .get("/protected/notification/list?page=3", &alice.cookie)
        .await;
    assert_eq!(p3.data()["notifications"], json!([]));

    let id = items[3]["id"].as_i64().unwrap();
    let path = format!("/protected/notification/readNotification/{id}");
    app.post_empty(&path, &alice.cookie).await.expect(200, "");
    app.post_empty(&path, &alice.cookie).await.expect(200, ""); // idempotent
    let p1 = app.get("/protected/notification/list", &alice.cookie).await;
    assert_eq!(p1.data()["unread"], 24);
    assert_eq!(p1.data()["notifications"][3]["read"], true);
    assert_eq!(p1.data()["notifications"][2]["read"], false);

    let r = app
        .post_empty("/protected/notification/readAll", &alice.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["updated"], 24);
    let p1 = app.get("/protected/notification/list", &alice.cookie).await;
    assert_eq!(p1.data()["unread"], 0);
    assert_eq!(p1.data()["total"], 25);
    assert!(p1.data()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["read"] == true));
    let r = app
        .post_empty("/protected/notification/readAll", &alice.cookie)
        .await;
    assert_eq!(r.data()["updated"], 0);

    // Everything read: a fresh stream replays nothing.
    let mut s = Sse::open(&app, &alice.cookie, None).await;
    s.quiet(Duration::from_millis(300)).await;

    for bad in ["0", "-3", "abc", "99999999"] {
        app.get(
            &format!("/protected/notification/list?page={bad}"),
            &alice.cookie,
        )
        .await
        .expect(422, "VALIDATION_FAILED");
    }
    app.get("/protected/notification/list", "")
        .await
        .expect(401, "UNAUTHENTICATED");
    app.post_empty("/protected/notification/readAll", "")
        .await
        .expect(401, "UNAUTHENTICATED");
    app.post_empty(&path, "")
        .await
        .expect(401, "UNAUTHENTICATED");
    app.get("/protected/notification/notify", "")
        .await
        .expect(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn another_users_notification_is_not_found() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let bob = app.signup("Bob", "doctor").await;
    raise_for(&app, &alice.id, "for alice").await;
    let id = app
        .get("/protected/notification/list", &alice.cookie)
        .await
        .data()["notifications"][0]["id"]
        .as_i64()
        .unwrap();
    let theirs = app
        .post_empty(
            &format!("/protected/notification/readNotification/{id}"),
            &bob.cookie,
        )
        .await;
    theirs.expect(404, "NOT_FOUND");
    let missing = app
        .post_empty(
            &format!("/protected/notification/readNotification/{}", id + 1000),
            &bob.cookie,
        )
        .await;
    missing.expect(404, "NOT_FOUND");
    assert_eq!(
        theirs.body["error"]["message"],
        missing.body["error"]["message"]
    );
    app.post_empty("/protected/notification/readNotification/abc", &bob.cookie)
        .await
        .expect(404, "NOT_FOUND");
    // Bob's readAll and list do not touch or show Alice's.
    let r = app
        .post_empty("/protected/notification/readAll", &bob.cookie)
        .await;
    assert_eq!(r.data()["updated"], 0);
    assert_eq!(
        app.get("/protected/notification/list", &bob.cookie)
            .await
            .data()["total"],
        0
    );
    let a = app.get("/protected/notification/list", &alice.cookie).await;
    assert_eq!(a.data()["unread"], 1);
}

#[tokio::test]
async fn a_revoked_sessions_stream_is_closed() {
    let app = TestApp::spawn_with(|c| c.limits.sse_keepalive_secs = 1).await;
    let alice = app.signup("Alice", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let second = app.signin(&alice.phone).await;
    app.get("/protected/notification/list", &alice.cookie)
        .await
        .expect(200, "");

    // Revoked, then an event: the revoked stream closes without delivering it; the other gets it.
    let mut keep = Sse::open(&app, &alice.cookie, Some("0")).await;
    let _sign_in_notice = keep.event().await;
    let mut gone = Sse::open(&app, &second, Some("0")).await;
    let _ = gone.event().await;
    app.post_empty("/auth/signout", &second)
        .await
        .expect(200, "");
    raise_for(&app, &alice.id, "after sign-out").await;
    gone.closes(Duration::from_secs(5)).await;
    assert_eq!(keep.event().await["message"], "after sign-out");

    // Revoked with nothing to deliver: the next keep-alive check closes it.
    let third = {
        app.clock().advance(Duration::from_secs(61));
        app.signin(&alice.phone).await
    };
    app.post_empty("/protected/notification/readAll", &third)
        .await
        .expect(200, "");
    let mut quiet = Sse::open(&app, &third, None).await;
    // Keep-alive comments flow while the session lives.
    match quiet.next(Duration::from_secs(3)).await {
        Next::Frame(f) => assert!(f.comment, "{f:?}"),
        _ => panic!("expected a keep-alive within 3 s"),
    }
    app.post_empty("/auth/signout", &third)
        .await
        .expect(200, "");
    quiet.closes(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn keep_alive_comments_are_sent() {
    let app = TestApp::spawn_with(|c| c.limits.sse_keepalive_secs = 1).await;
    let alice = app.signup("Alice", "patient").await;
    let mut s = Sse::open(&app, &alice.cookie, None).await;
    let started = std::time::Instant::now();
    match s.next(Duration::from_secs(3)).await {
        Next::Frame(f) => {
            assert!(f.comment, "{f:?}");
            assert!(f.event.is_none() && f.id.is_none());
        }
        _ => panic!("no keep-alive"),
    }
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn too_many_streams_close_the_oldest() {
    let app = TestApp::spawn_with(|c| c.limits.max_streams_per_user = 2).await;
    let alice = app.signup("Alice", "patient").await;
    let bob = app.signup("Bob", "patient").await;
    let mut s1 = Sse::open(&app, &alice.cookie, None).await;
    let mut s2 = Sse::open(&app, &alice.cookie, None).await;
    let mut b1 = Sse::open(&app, &bob.cookie, None).await;
    let mut s3 = Sse::open(&app, &alice.cookie, None).await;
    // Told to wait an hour before reconnecting: a browser reconnecting at once would close the
    // next-oldest stream, and so on round the tabs.
    assert_eq!(
        s1.closes(Duration::from_secs(5)).await.as_deref(),
        Some("3600000")
    );
    raise_for(&app, &alice.id, "hello").await;
    assert_eq!(s2.event().await["message"], "hello");
    assert_eq!(s3.event().await["message"], "hello");
    // Another user's streams are not counted against Alice.
    raise_for(&app, &bob.id, "bob").await;
    assert_eq!(b1.event().await["message"], "bob");
    let mut s4 = Sse::open(&app, &alice.cookie, None).await;
    s2.closes(Duration::from_secs(5)).await;
    raise_for(&app, &alice.id, "again").await;
    assert_eq!(s3.event().await["message"], "again");
    // s4 replays the two unread ones, then the live one.
    assert_eq!(s4.event().await["message"], "hello");
    assert_eq!(s4.event().await["message"], "again");
}

#[tokio::test]
async fn a_new_sign_in_is_announced_with_device_and_ip() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    // The sign-up itself is not news to its owner.
    let l = app.get("/protected/notification/list", &alice.cookie).await;
    assert_eq!(l.data()["total"], 0);
    let mut s = Sse::open(&app, &alice.cookie, None).await;

    app.clock().advance(Duration::from_secs(61));
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let r = app
        .http
        .post(app.url("/auth/signin"))
        .header("user-agent", ua)
        .json(&json!({"phone": alice.phone}))
        .send()
        .await
        .unwrap();
    let r = common::Resp::from(r).await;
    let id = r.data()["id"].as_str().unwrap().to_string();
    // A wrong code signs nobody in and announces nothing.
    let wrong = app
        .post(
            &format!("/auth/signin/verify/{id}"),
            "",
            json!({"otp": "000000"}),
        )
        .await;
    assert_eq!(wrong.status, 401);
    s.quiet(Duration::from_millis(300)).await;
    let code = app.last_code(&alice.phone).await;
    let r = app
        .http
        .post(app.url(&format!("/auth/signin/verify/{id}")))
        .header("user-agent", ua)
        .json(&json!({"otp": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let e = s.event().await;
    assert_eq!(e["kind"], "new_sign_in");
    assert_eq!(e["data"]["device"], "Firefox on Linux");
    assert_eq!(e["data"]["ip"], "127.0.0.1");
    assert!(e["message"].as_str().unwrap().contains("Firefox on Linux"));
    assert!(e["message"].as_str().unwrap().contains("127.0.0.1"));
    let l = app.get("/protected/notification/list", &alice.cookie).await;
    assert_eq!(l.data()["total"], 1);
    assert_eq!(l.data()["unread"], 1);
}

/// A sign-in alert is news to the devices signed in before the session it reports. While that
/// session lives, only an older session may mark it read: not the session itself (whoever holds a
/// stolen code), nor a newer one (a second stolen code), one by one or all at once; it is not
/// counted or replayed as unread there. Once the reported session has ended, any session may.
#[tokio::test]
async fn a_sign_in_alert_is_for_the_sessions_signed_in_before_it() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let bob = app.signup("Bob", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let b = app.signin(&alice.phone).await;
    app.clock().advance(Duration::from_secs(61));
    let c = app.signin(&alice.phone).await;
    let list = |cookie: &str| {
        let cookie = cookie.to_string();
        let app = &app;
        async move {
            let l = app.get("/protected/notification/list", &cookie).await;
            assert_eq!(l.status, 200, "{}", l.body);
            l
        }
    };
    let read = |cookie: &str, id: i64| {
        let cookie = cookie.to_string();
        let app = &app;
        async move {
            let path = format!("/protected/notification/readNotification/{id}");
            app.post(&path, &cookie, json!({})).await
        }
    };
    // Newest first: the alert about C, then the one about B.
    let l = list(&b).await;
    assert_eq!(l.data()["total"], 2);
    let (about_c, about_b) = (&l.data()["notifications"][0], &l.data()["notifications"][1]);
    assert_eq!(about_b["kind"], "new_sign_in");
    let (nc, nb) = (
        about_c["id"].as_i64().unwrap(),
        about_b["id"].as_i64().unwrap(),
    );
    // B sees its own alert as its own, not as news; C's (newer) as news it may mark read.
    assert_eq!(about_b["this_session"], true);
    assert_eq!(about_b["can_mark_read"], false);
    assert_eq!(about_c["this_session"], false);
    assert_eq!(about_c["can_mark_read"], true);
    assert_eq!(l.data()["unread"], 1);
    // C may mark neither: its own, and B's (older and live).
    let l = list(&c).await;
    assert_eq!(l.data()["unread"], 0);
    assert_eq!(l.data()["notifications"][0]["can_mark_read"], false);
    assert_eq!(l.data()["notifications"][1]["can_mark_read"], false);
    for id in [nb, nc] {
        read(&c, id).await.expect(403, "SIGN_IN_ALERT_NOT_YOURS");
    }
    read(&b, nb).await.expect(403, "SIGN_IN_ALERT_NOT_YOURS");
    for cookie in [&b, &c] {
        let r = app
            .post("/protected/notification/readAll", cookie, json!({}))
            .await;
        r.expect(200, "");
        // B's readAll marks C's alert; C's marks nothing.
        let expected = if cookie == &b { 1 } else { 0 };
        assert_eq!(r.data()["updated"], expected);
    }
    // Another account is told there is no such notification, as before.
    read(&bob.cookie, nb).await.expect(404, "NOT_FOUND");

    // The streams agree: B's fresh stream does not replay its own alert; resumed from the start
    // it shows it as its own. The first device's fresh stream replays it as news.
    let mut fresh = Sse::open(&app, &b, None).await;
    fresh.quiet(Duration::from_millis(300)).await;
    let mut resumed = Sse::open(&app, &b, Some("0")).await;
    let replayed = resumed.event().await;
    assert_eq!(replayed["id"], nb);
    assert_eq!(replayed["this_session"], true);
    assert_eq!(replayed["can_mark_read"], false);
    let mut first = Sse::open(&app, &alice.cookie, None).await;
    let news = first.event().await;
    assert_eq!(news["id"], nb);
    assert_eq!(news["can_mark_read"], true);
    let l = list(&alice.cookie).await;
    assert_eq!(l.data()["unread"], 1);

    // Once B has ended, its alert is still for the sessions older than it while one lives: not
    // C's to mark, the first device's. Read, it stays read for everyone, and marking it again is
    // a no-op that answers 200.
    app.post_empty("/auth/signout", &b).await.expect(200, "");
    let l = list(&c).await;
    assert_eq!(l.data()["notifications"][1]["can_mark_read"], false);
    assert_eq!(l.data()["unread"], 0);
    read(&c, nb).await.expect(403, "SIGN_IN_ALERT_NOT_YOURS");
    assert_eq!(list(&alice.cookie).await.data()["unread"], 1);
    read(&alice.cookie, nb).await.expect(200, "");
    assert_eq!(list(&alice.cookie).await.data()["unread"], 0);
    read(&c, nb).await.expect(200, "");
    // C's own alert, which B marked read before: a no-op for C too.
    read(&c, nc).await.expect(200, "");
}

/// Two stolen codes cannot clear both alerts. The older session may mark the newer one's alert
/// read, but then the newer cannot sign the older out and clear its alert too: an alert about
/// an ended session is still for the sessions older than it, while one lives, and the owner's
/// device keeps seeing it. With no older session left (the owner signed out everywhere and
/// back in), any session may mark it: a device signing in again is not left with alerts no one
/// can clear.
#[tokio::test]
async fn two_stolen_codes_cannot_clear_both_alerts() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Alice", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let t1 = app.signin(&owner.phone).await;
    app.clock().advance(Duration::from_secs(61));
    let t2 = app.signin(&owner.phone).await;
    let read_all = |cookie: &str| {
        let cookie = cookie.to_string();
        let app = &app;
        async move {
            let r = app
                .post("/protected/notification/readAll", &cookie, json!({}))
                .await;
            r.expect(200, "");
            r.data()["updated"].as_i64().unwrap()
        }
    };
    assert_eq!(read_all(&t1).await, 1);
    // T2 signs T1 out (the middle of the three sessions by age), then tries to clear its alert.
    let r = app.get("/protected/user/sessions", &t2).await;
    let mut sessions = r.data()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3);
    sessions.sort_by_key(|s| s["created_at"].as_str().unwrap().to_string());
    let t1_id = sessions[1]["id"].as_str().unwrap();
    app.post_empty(&format!("/protected/user/revokeSession/{t1_id}"), &t2)
        .await
        .expect(200, "");
    assert_eq!(read_all(&t2).await, 0);
    let l = app.get("/protected/notification/list", &owner.cookie).await;
    assert_eq!(l.data()["unread"], 1);
    let about_t1 = &l.data()["notifications"][1];
    assert_eq!(about_t1["read"], false);
    assert_eq!(about_t1["can_mark_read"], true);
    let id = about_t1["id"].as_i64().unwrap();
    let read = format!("/protected/notification/readNotification/{id}");
    app.post(&read, &t2, json!({}))
        .await
        .expect(403, "SIGN_IN_ALERT_NOT_YOURS");
    // The owner's device signs out: no session older than T1 is left, so T2 may.
    app.post_empty("/auth/signout", &owner.cookie)
        .await
        .expect(200, "");
    app.post(&read, &t2, json!({})).await.expect(200, "");
}

#[tokio::test]
async fn shutdown_ends_the_streams() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice", "patient").await;
    let mut s = Sse::open(&app, &alice.cookie, None).await;
    let stop = tokio::spawn(app.stop());
    s.closes(Duration::from_secs(5)).await;
    tokio::time::timeout(Duration::from_secs(6), stop)
        .await
        .expect("shutdown waited for the stream")
        .unwrap();
}

/// Two instances on one PostgreSQL database: an event caused on A reaches a stream on B, and a
/// reconnect to A with Last-Event-ID resumes exactly where B's stream stopped.
#[tokio::test]
async fn two_instances_share_events_through_postgres() {
    if pg_url().is_none() {
        eprintln!("skipped: set AURAVITA_TEST_DATABASE_URL to run the two-instance test");
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.spawn_peer().await;
    let alice = a.signup("Alice", "patient").await;
    // The session made on A is valid on B: nothing lives in one process.
    let mut on_b = Sse::open(&b, &alice.cookie, None).await;

    // A real action on A: a sign-in.
    a.clock().advance(Duration::from_secs(61));
    let _second = a.signin(&alice.phone).await;
    let first = on_b.event().await;
    assert_eq!(first["kind"], "new_sign_in");
    // And an event raised on B reaches B's stream too.
    raise_for(&b, &alice.id, "raised on B").await;
    let second = on_b.event().await;
    assert_eq!(second["message"], "raised on B");
    drop(on_b);

    // While Alice is disconnected, A raises two more.
    raise_for(&a, &alice.id, "missed 1").await;
    raise_for(&a, &alice.id, "missed 2").await;
    let last = second["id"].as_i64().unwrap().to_string();
    let mut on_a = Sse::open(&a, &alice.cookie, Some(&last)).await;
    let m1 = on_a.event().await;
    let m2 = on_a.event().await;
    assert_eq!(messages(&[m1, m2]), ["missed 1", "missed 2"]);
    on_a.quiet(Duration::from_millis(300)).await;
    // Live again, this time caused on B and seen on A.
    raise_for(&b, &alice.id, "from B to A").await;
    assert_eq!(on_a.event().await["message"], "from B to A");
    b.stop().await;
    a.stop().await;
}
