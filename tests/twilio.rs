//! The Twilio provider against a local fake Twilio that checks what Twilio checks (account in the
//! path, Basic auth, form encoding, E.164 `To`, the account's `From`, body length, validity), both
//! through the real server (sign-up over HTTP) and through the provider directly.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auravita::sms::twilio::{RetryPolicy, Twilio};
use auravita::sms::{SmsError, SmsSender};
use auravita::Config;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use common::{random_phone, TestApp};
use serde_json::json;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "fake-auth-token-0123456789abcdef";
const FROM: &str = "+14155550100";

#[derive(Default)]
struct FakeState {
    /// Every message Twilio accepted: its form fields.
    accepted: Vec<HashMap<String, String>>,
    /// Every request that reached the Messages resource, accepted or not.
    requests: usize,
    /// Answer 429 (code 20429) this many more times before behaving.
    too_many: usize,
    /// `Retry-After` seconds sent with those 429s.
    retry_after: Option<u64>,
    /// Answer this (status, code) to every authenticated request until cleared.
    error: Option<(u16, i64)>,
}

#[derive(Clone)]
struct FakeTwilio {
    base: String,
    st: Arc<Mutex<FakeState>>,
}

impl FakeTwilio {
    async fn start() -> FakeTwilio {
        let st = Arc::new(Mutex::new(FakeState::default()));
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(messages),
            )
            .with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeTwilio {
            base: format!("http://{addr}"),
            st,
        }
    }

    fn accepted(&self) -> Vec<HashMap<String, String>> {
        self.st.lock().unwrap().accepted.clone()
    }

    fn requests(&self) -> usize {
        self.st.lock().unwrap().requests
    }

    fn too_many(&self, times: usize, retry_after: Option<u64>) {
        let mut st = self.st.lock().unwrap();
        st.too_many = times;
        st.retry_after = retry_after;
    }

    fn fail_with(&self, status: u16, code: i64) {
        self.st.lock().unwrap().error = Some((status, code));
    }

    fn behave(&self) {
        let mut st = self.st.lock().unwrap();
        st.error = None;
        st.too_many = 0;
    }
}

fn twilio_error(status: u16, code: i64, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// The Messages resource, checked in the order Twilio checks.
async fn messages(
    State(st): State<Arc<Mutex<FakeState>>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = st.lock().unwrap();
    st.requests += 1;

    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
    );
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(expected.as_str()) {
        return twilio_error(401, 20003, "Authenticate");
    }
    if sid != SID {
        return twilio_error(404, 20404, "The requested resource was not found");
    }
    let form_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !form_ct {
        return twilio_error(
            400,
            20001,
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    if st.too_many > 0 {
        st.too_many -= 1;
        let mut res = twilio_error(429, 20429, "Too Many Requests");
        if let Some(secs) = st.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return res;
    }
    if let Some((status, code)) = st.error {
        return twilio_error(status, code, "scripted failure");
    }

    let fields: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let to = fields.get("To").map(String::as_str).unwrap_or("");
    let from = fields.get("From").map(String::as_str).unwrap_or("");
    let text = fields.get("Body").map(String::as_str).unwrap_or("");
    if to.is_empty() {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    }
    if !is_e164(to) {
        return twilio_error(
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if from.is_empty() {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    }
    if !is_e164(from) {
        return twilio_error(
            400,
            21212,
            &format!("The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."),
        );
    }
    if from != FROM {
        return twilio_error(
            400,
            21606,
            &format!("The 'From' phone number provided ({from}) is not a valid message-capable Twilio phone number for this destination."),
        );
    }
    if text.trim().is_empty() {
        return twilio_error(400, 21602, "Message body is required.");
    }
    if text.chars().count() > 1600 {
        return twilio_error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    if let Some(v) = fields.get("ValidityPeriod") {
        match v.parse::<i64>() {
            Ok(n) if (1..=36_000).contains(&n) => {}
            _ => {
                return twilio_error(
                    400,
                    21609,
                    "Invalid ValidityPeriod: an integer from 1 to 36000",
                )
            }
        }
    }
    let msg_sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    st.accepted.push(fields.clone());
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "sid": msg_sid,
            "account_sid": SID,
            "to": to,
            "from": from,
            "body": text,
            "status": "queued",
            "num_segments": "1",
            "uri": format!("/2010-04-01/Accounts/{SID}/Messages/{msg_sid}.json"),
        })),
    )
        .into_response()
}

fn twilio_config(cfg: &mut Config, fake: &FakeTwilio) {
    cfg.sms = "twilio".into();
    cfg.twilio_account_sid = Some(SID.into());
    cfg.twilio_auth_token = Some(TOKEN.to_string().into());
    cfg.twilio_from = Some(FROM.into());
    cfg.twilio_api_base = fake.base.clone();
}

async fn app_with(fake: &FakeTwilio, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let fake = fake.clone();
    TestApp::spawn_with(move |cfg| {
        twilio_config(cfg, &fake);
        tweak(cfg);
    })
    .await
}

fn signup_body(phone: &str) -> serde_json::Value {
    json!({"phone": phone, "name": "Meera Iyer", "role": "patient"})
}

// ---- through the real server ----

#[tokio::test]
async fn signup_sends_one_message_with_the_code_lifetime_and_the_code_verifies() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    let phone = random_phone();
    let r = app.post("/auth/signup", "", signup_body(&phone)).await;
    r.expect(200, "");
    let id = r.data()["id"].as_str().unwrap().to_string();

    let sent = fake.accepted();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(fake.requests(), 1);
    let m = &sent[0];
    assert_eq!(m["To"], phone);
    assert_eq!(m["From"], FROM);
    assert_eq!(m["ValidityPeriod"], "300");
    let code = &m["Body"][..6];
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{}", m["Body"]);

    // The outbox still records the same message when configured.
    let outbox = app.sms().await;
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["to"], phone.as_str());
    assert_eq!(outbox[0]["body"], m["Body"].as_str());

    let r = app
        .post(
            &format!("/auth/signup/verify/{id}"),
            "",
            json!({"otp": code}),
        )
        .await;
    r.expect(200, "");
    let cookie = r.cookie.clone().expect("session cookie");
    app.get("/protected/user/sessionDetail", &cookie)
        .await
        .expect(200, "");
}

#[tokio::test]
async fn validity_period_follows_the_configured_code_lifetime() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |cfg| cfg.limits.otp_ttl_secs = 120).await;
    app.post("/auth/signup", "", signup_body(&random_phone()))
        .await
        .expect(200, "");
    assert_eq!(fake.accepted()[0]["ValidityPeriod"], "120");
}

#[tokio::test]
async fn an_undeliverable_destination_answers_422_on_phone_and_gives_the_cooldown_back() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    let phone = random_phone();
    fake.fail_with(400, 21614);
    let r = app.post("/auth/signup", "", signup_body(&phone)).await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "phone");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a mobile number"));
    assert_eq!(fake.requests(), 1, "a destination problem is not retried");
    assert!(fake.accepted().is_empty());

    // The code was never delivered: the person may try again at once.
    fake.behave();
    app.post("/auth/signup", "", signup_body(&phone))
        .await
        .expect(200, "");
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn bad_credentials_answer_503_sms_unavailable_without_retrying() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |cfg| {
        cfg.twilio_auth_token = Some("not-the-token".to_string().into());
    })
    .await;
    let r = app
        .post("/auth/signup", "", signup_body(&random_phone()))
        .await;
    r.expect(503, "SMS_UNAVAILABLE");
    // Nothing of Twilio's answer reaches the client.
    assert!(!r.body.to_string().contains("20003"), "{}", r.body);
    assert_eq!(fake.requests(), 1);
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn a_wrong_sender_answers_503_sms_unavailable() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |cfg| cfg.twilio_from = Some("+14155550199".into())).await;
    app.post("/auth/signup", "", signup_body(&random_phone()))
        .await
        .expect(503, "SMS_UNAVAILABLE");
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn rate_limited_twice_then_accepted_is_retried_and_answers_200() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    fake.too_many(2, None);
    let phone = random_phone();
    let r = app.post("/auth/signup", "", signup_body(&phone)).await;
    r.expect(200, "");
    assert_eq!(fake.requests(), 3);
    let sent = fake.accepted();
    assert_eq!(sent.len(), 1);
    // The delivered code is the one that verifies.
    let id = r.data()["id"].as_str().unwrap();
    app.post(
        &format!("/auth/signup/verify/{id}"),
        "",
        json!({"otp": &sent[0]["Body"][..6]}),
    )
    .await
    .expect(200, "");
}

#[tokio::test]
async fn persistent_server_errors_answer_503_after_a_few_tries() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    fake.fail_with(503, 20500);
    let phone = random_phone();
    let r = app.post("/auth/signup", "", signup_body(&phone)).await;
    r.expect(503, "DEPENDENCY_UNAVAILABLE");
    assert_eq!(fake.requests(), RetryPolicy::default().attempts as usize);
    assert!(fake.accepted().is_empty());
    // The outbox records what we tried to send even when the provider fails.
    assert_eq!(app.sms().await.len(), 1);

    // Once Twilio recovers, the person can ask again at once (the cooldown was given back).
    fake.behave();
    app.post("/auth/signup", "", signup_body(&phone))
        .await
        .expect(200, "");
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn an_unreachable_twilio_answers_503() {
    // A port that was just free: connection refused on every try.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = TestApp::spawn_with(move |cfg| {
        cfg.sms = "twilio".into();
        cfg.twilio_account_sid = Some(SID.into());
        cfg.twilio_auth_token = Some(TOKEN.to_string().into());
        cfg.twilio_from = Some(FROM.into());
        cfg.twilio_api_base = format!("http://127.0.0.1:{port}");
    })
    .await;
    app.post("/auth/signup", "", signup_body(&random_phone()))
        .await
        .expect(503, "DEPENDENCY_UNAVAILABLE");
}

#[tokio::test]
async fn signin_for_an_unknown_phone_sends_nothing_to_twilio() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    app.post("/auth/signin", "", json!({"phone": random_phone()}))
        .await
        .expect(200, "");
    assert_eq!(fake.requests(), 0);
}

// ---- the provider directly ----

fn direct_config(fake: &FakeTwilio) -> Config {
    let dir = std::env::temp_dir();
    let mut cfg = Config::defaults_in(&dir);
    twilio_config(&mut cfg, fake);
    cfg
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(3),
        budget: Duration::from_secs(10),
    }
}

fn provider(fake: &FakeTwilio) -> Twilio {
    Twilio::from_config(&direct_config(fake))
        .unwrap()
        .with_retry(fast_retries())
}

const TTL: Duration = Duration::from_secs(300);

#[tokio::test]
async fn twilio_error_codes_map_to_clear_errors() {
    let fake = FakeTwilio::start().await;
    let tw = provider(&fake);
    for code in [21211, 21614, 21610, 21408, 21612] {
        fake.fail_with(400, code);
        let e = tw
            .send("+919812345678", "123456 is your code", TTL)
            .await
            .unwrap_err();
        assert!(matches!(e, SmsError::Undeliverable(_)), "{code}: {e:?}");
    }
    for (status, code) in [
        (401, 20003),
        (400, 21212),
        (400, 21606),
        (400, 21608),
        (404, 20404),
        (403, 10001),
        (400, 0),
    ] {
        fake.fail_with(status, code);
        let before = fake.requests();
        let e = tw
            .send("+919812345678", "123456 is your code", TTL)
            .await
            .unwrap_err();
        assert!(matches!(e, SmsError::Rejected(_)), "{code}: {e:?}");
        assert_eq!(fake.requests(), before + 1, "{code} must not be retried");
    }
    for (status, code) in [(500, 20500), (502, 0), (503, 20503)] {
        fake.fail_with(status, code);
        let before = fake.requests();
        let e = tw
            .send("+919812345678", "123456 is your code", TTL)
            .await
            .unwrap_err();
        assert!(matches!(e, SmsError::Unavailable(_)), "{code}: {e:?}");
        assert_eq!(fake.requests(), before + 4, "{status} is retried");
    }
    fake.behave();
    tw.send("+919812345678", "123456 is your code", TTL)
        .await
        .unwrap();
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn the_real_checks_refuse_bad_credentials_account_and_sender() {
    let fake = FakeTwilio::start().await;

    let mut cfg = direct_config(&fake);
    cfg.twilio_auth_token = Some("wrong".to_string().into());
    let e = Twilio::from_config(&cfg)
        .unwrap()
        .send("+919812345678", "x", TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SmsError::Rejected(m) if m.contains("20003")),
        "{e:?}"
    );

    let mut cfg = direct_config(&fake);
    cfg.twilio_from = Some("Auravita!".into());
    let e = Twilio::from_config(&cfg)
        .unwrap()
        .send("+919812345678", "x", TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SmsError::Rejected(m) if m.contains("21212")),
        "{e:?}"
    );

    // A destination Twilio itself finds invalid (our server never sends one; the mapping holds).
    let tw = provider(&fake);
    let e = tw.send("+0123", "x", TTL).await.unwrap_err();
    assert!(matches!(e, SmsError::Undeliverable(_)), "{e:?}");
    // Twilio's own limits on the body.
    let e = tw
        .send("+919812345678", &"x".repeat(1601), TTL)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SmsError::Rejected(m) if m.contains("21617")),
        "{e:?}"
    );
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn validity_is_clamped_to_what_twilio_accepts() {
    let fake = FakeTwilio::start().await;
    let tw = provider(&fake);
    tw.send("+919812345678", "a", Duration::from_millis(200))
        .await
        .unwrap();
    tw.send("+919812345678", "b", Duration::from_secs(100_000))
        .await
        .unwrap();
    let sent = fake.accepted();
    assert_eq!(sent[0]["ValidityPeriod"], "1");
    assert_eq!(sent[1]["ValidityPeriod"], "36000");
}

#[tokio::test]
async fn a_small_retry_after_is_honoured_and_a_long_one_ends_the_tries() {
    let fake = FakeTwilio::start().await;
    let tw = provider(&fake);
    fake.too_many(1, Some(1));
    let started = Instant::now();
    tw.send("+919812345678", "123456", TTL).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests(), 2);

    fake.too_many(1, Some(120));
    let started = Instant::now();
    let e = tw.send("+919812345678", "123456", TTL).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.requests(), 3);

    // Persistent 429s: a few tries, then unavailable.
    fake.too_many(100, None);
    let e = tw.send("+919812345678", "123456", TTL).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    assert_eq!(fake.requests(), 7);
}

#[tokio::test]
async fn a_missing_setting_refuses_to_start_and_names_it() {
    let fake = FakeTwilio::start().await;
    type Unset = fn(&mut Config);
    let cases: [(&str, Unset); 4] = [
        ("AURAVITA_TWILIO_ACCOUNT_SID", |c| {
            c.twilio_account_sid = None
        }),
        ("AURAVITA_TWILIO_AUTH_TOKEN", |c| c.twilio_auth_token = None),
        ("AURAVITA_TWILIO_FROM", |c| {
            c.twilio_from = Some("  ".into())
        }),
        ("AURAVITA_TWILIO_API_BASE", |c| {
            c.twilio_api_base = "not a url".into()
        }),
    ];
    for (name, unset) in cases {
        let mut cfg = direct_config(&fake);
        unset(&mut cfg);
        let err = match auravita::sms::from_config(&cfg) {
            Ok(_) => panic!("{name}: started without it"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(name), "{name}: {err}");
        assert!(!err.contains(TOKEN), "{err}");
    }
    // Through the whole server start, too.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::base_config(
        dir.path(),
        &format!("sqlite://{}/t.db", dir.path().display()),
    );
    twilio_config(&mut cfg, &fake);
    cfg.twilio_account_sid = None;
    let err = format!(
        "{:#}",
        auravita::AppState::build(cfg)
            .await
            .err()
            .expect("must refuse")
    );
    assert!(err.contains("AURAVITA_TWILIO_ACCOUNT_SID"), "{err}");
}

#[tokio::test]
async fn the_fake_refuses_what_twilio_refuses() {
    // The fake's checks are what give the tests above their teeth: prove each one bites.
    let fake = FakeTwilio::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/2010-04-01/Accounts/{SID}/Messages.json", fake.base);
    let good = |to: &str, from: &str, body: &str, validity: &str| {
        vec![
            ("To".to_string(), to.to_string()),
            ("From".to_string(), from.to_string()),
            ("Body".to_string(), body.to_string()),
            ("ValidityPeriod".to_string(), validity.to_string()),
        ]
    };
    let send = |url: String, user: &str, pass: &str, form: Vec<(String, String)>| {
        let req = http.post(url).basic_auth(user, Some(pass)).form(&form);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v["code"].as_i64().unwrap_or(0))
        }
    };
    let ok = good("+919812345678", FROM, "hello", "300");
    assert_eq!(
        send(url.clone(), SID, "nope", ok.clone()).await,
        (401, 20003)
    );
    let other = format!(
        "{}/2010-04-01/Accounts/ACffffffffffffffffffffffffffffffff/Messages.json",
        fake.base
    );
    assert_eq!(send(other, SID, TOKEN, ok.clone()).await, (404, 20404));
    let r = http
        .post(&url)
        .basic_auth(SID, Some(TOKEN))
        .json(&json!({"To": "+919812345678", "From": FROM, "Body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        send(
            url.clone(),
            SID,
            TOKEN,
            good("9812345678", FROM, "hi", "300")
        )
        .await,
        (400, 21211)
    );
    assert_eq!(
        send(url.clone(), SID, TOKEN, good("", FROM, "hi", "300")).await,
        (400, 21604)
    );
    assert_eq!(
        send(
            url.clone(),
            SID,
            TOKEN,
            good("+919812345678", "", "hi", "300")
        )
        .await,
        (400, 21603)
    );
    assert_eq!(
        send(
            url.clone(),
            SID,
            TOKEN,
            good("+919812345678", "abc", "hi", "300")
        )
        .await,
        (400, 21212)
    );
    assert_eq!(
        send(
            url.clone(),
            SID,
            TOKEN,
            good("+919812345678", FROM, "", "300")
        )
        .await,
        (400, 21602)
    );
    let long = "x".repeat(1601);
    assert_eq!(
        send(
            url.clone(),
            SID,
            TOKEN,
            good("+919812345678", FROM, &long, "300")
        )
        .await,
        (400, 21617)
    );
    for bad in ["0", "36001", "30.5", "soon"] {
        assert_eq!(
            send(
                url.clone(),
                SID,
                TOKEN,
                good("+919812345678", FROM, "hi", bad)
            )
            .await,
            (400, 21609),
            "{bad}"
        );
    }
    assert!(fake.accepted().is_empty());
    assert_eq!(send(url.clone(), SID, TOKEN, ok).await, (201, 0));
    assert_eq!(fake.accepted().len(), 1);
}

#[tokio::test]
async fn signin_answers_the_same_for_known_and_unknown_phones_even_when_sending_fails() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    let phone = random_phone();
    let r = app.post("/auth/signup", "", signup_body(&phone)).await;
    let id = r.data()["id"].as_str().unwrap().to_string();
    let code = fake.accepted()[0]["Body"][..6].to_string();
    app.post(
        &format!("/auth/signup/verify/{id}"),
        "",
        json!({"otp": code}),
    )
    .await
    .expect(200, "");
    app.clock().advance(Duration::from_secs(61));

    // An outage, a refused account, an opted-out number: a known phone's sign-in must not
    // answer differently from an unknown phone's (which sends nothing), or it reveals the account.
    // One unknown phone throughout: a phone's history (a new code carries the wrong tries of the
    // one it replaces) is the same whether or not it has an account.
    let unknown = random_phone();
    for (status, code) in [(503, 20503), (401, 20003), (400, 21610)] {
        fake.fail_with(status, code);
        let k = app.post("/auth/signin", "", json!({"phone": phone})).await;
        let u = app
            .post("/auth/signin", "", json!({"phone": unknown}))
            .await;
        k.expect(200, "");
        u.expect(200, "");
        assert_eq!(k.body["message"], u.body["message"]);
        // ... nor its verification id ...
        let mut answers = Vec::new();
        for r in [&k, &u] {
            let id = r.data()["id"].as_str().unwrap();
            let v = app
                .post(
                    &format!("/auth/signin/verify/{id}"),
                    "",
                    json!({"otp": "000000"}),
                )
                .await;
            answers.push((
                v.status,
                v.code().to_string(),
                v.body["error"]["details"].clone(),
            ));
        }
        assert_eq!(answers[0], answers[1]);
        // ... nor the next request (the cooldown is not given back to one only).
        let k = app
            .post("/auth/signin/resendotp", "", json!({"phone": phone}))
            .await;
        let u = app
            .post("/auth/signin/resendotp", "", json!({"phone": unknown}))
            .await;
        k.expect(429, "OTP_COOLDOWN");
        u.expect(429, "OTP_COOLDOWN");
        app.clock().advance(Duration::from_secs(61));
    }
    assert_eq!(
        fake.accepted().len(),
        1,
        "only the sign-up code was delivered"
    );
}

/// Collects every log line written while it is the thread's default subscriber.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn neither_the_auth_token_nor_the_message_is_ever_logged() {
    // #[tokio::test] runs the server on this thread, so a thread-default subscriber sees its logs.
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .without_time() // six-digit fractions of seconds could look like the code
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    let phone = random_phone();
    // Accepted, retried, and refused sends all log something; none may log the secret or the code.
    fake.too_many(1, None);
    app.post("/auth/signup", "", signup_body(&phone))
        .await
        .expect(200, "");
    fake.fail_with(401, 20003);
    app.clock().advance(Duration::from_secs(61));
    app.post("/auth/signup", "", signup_body(&phone))
        .await
        .expect(503, "SMS_UNAVAILABLE");
    fake.fail_with(503, 20503);
    app.post("/auth/signup", "", signup_body(&phone))
        .await
        .expect(503, "DEPENDENCY_UNAVAILABLE");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("Twilio"),
        "the test must see the provider's logs: {text}"
    );
    let code = &fake.accepted()[0]["Body"][..6];
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    for secret in [TOKEN, basic.as_str(), code, "is your Auravita code"] {
        assert!(!text.contains(secret), "{secret:?} in the logs:\n{text}");
    }
}

/// A sign-in code is sent after its answer has told the person "a code is on its way". A
/// shutdown right then (a rolling deploy's SIGTERM) waits for that send, its retries included,
/// instead of dropping it with the cooldown already spent.
#[tokio::test]
async fn shutdown_waits_for_a_sign_in_code_still_being_sent() {
    let fake = FakeTwilio::start().await;
    let app = app_with(&fake, |_| {}).await;
    // A client that keeps no connection open, so that nothing but the send holds the shutdown.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let post = |path: String, body: serde_json::Value| {
        let req = client
            .post(app.url(&path))
            .header("connection", "close")
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let phone = random_phone();
    assert_eq!(post("/auth/signup".into(), signup_body(&phone)).await, 200);
    let sent = fake.accepted();
    let code = sent[0]["Body"][..6].to_string();
    let (challenge,): (String,) = sqlx::query_as("SELECT id FROM otp_challenges")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(
        post(
            format!("/auth/signup/verify/{challenge}"),
            json!({"otp": code})
        )
        .await,
        200
    );
    app.clock().advance(Duration::from_secs(61));

    // Twilio asks for three seconds' patience first.
    fake.too_many(1, Some(3));
    assert_eq!(
        post("/auth/signin".into(), json!({"phone": phone})).await,
        200
    );
    let started = Instant::now();
    app.stop().await;
    let sent = fake.accepted();
    assert_eq!(sent.len(), 2, "the sign-in code was dropped at shutdown");
    assert_eq!(sent[1]["To"], phone.as_str());
    assert!(started.elapsed() < Duration::from_secs(8));
}
