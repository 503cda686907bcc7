//! Sign-up, sign-in and sessions over HTTP: the happy paths and every refusal.

mod common;

use base64::Engine;
use common::{random_phone, Resp, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn signup_verify_session_detail_signout() {
    let app = TestApp::spawn().await;
    let user = app.signup("Asha Rao", "patient").await;
    let r = app.get("/protected/user/sessionDetail", &user.cookie).await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["name"], "Asha Rao");
    assert_eq!(r.data()["user"]["phone"], user.phone.as_str());
    assert_eq!(r.data()["user"]["role"], "patient");
    assert!(r.data()["connections"].is_array());

    let r = app.post_empty("/auth/signout", &user.cookie).await;
    r.expect(200, "");
    assert!(r
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Max-Age=0")));
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn signin_answers_the_same_for_unknown_phones_and_sends_nothing() {
    let app = TestApp::spawn().await;
    let user = app.signup("Ravi", "doctor").await;
    app.clock().advance(Duration::from_secs(61)); // past the sign-up code's cooldown
    let known = app
        .post("/auth/signin", "", json!({"phone": user.phone}))
        .await;
    let unknown_phone = random_phone();
    let unknown = app
        .post("/auth/signin", "", json!({"phone": unknown_phone}))
        .await;
    known.expect(200, "");
    unknown.expect(200, "");
    assert_eq!(known.data()["message"], unknown.data()["message"]);
    assert_eq!(known.body["message"], unknown.body["message"]);
    assert!(app
        .sms()
        .await
        .iter()
        .all(|m| m["to"] != unknown_phone.as_str()));
    // No code can open the unknown phone's challenge.
    let id = unknown.data()["id"].as_str().unwrap();
    app.post(
        &format!("/auth/signin/verify/{id}"),
        "",
        json!({"otp": "000000"}),
    )
    .await
    .expect(401, "OTP_INVALID");
}

// ---- helpers ----

/// Sends a request built by hand (custom headers or a raw body).
async fn send(req: reqwest::RequestBuilder) -> Resp {
    Resp::from(req.send().await.expect("request")).await
}

fn retry_after(r: &Resp) -> u64 {
    r.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Guesses wrong until the code `code` (of `purpose`'s challenge `id`) dies: four 401s with
/// tries left, then 410 `OTP_DEAD`.
async fn spend_every_try(app: &TestApp, purpose: &str, id: &str, code: &str) {
    for _ in 0..4 {
        verify(app, purpose, id, &wrong(code))
            .await
            .expect(401, "OTP_INVALID");
    }
    verify(app, purpose, id, &wrong(code))
        .await
        .expect(410, "OTP_DEAD");
}

/// A 6-digit code that is certainly not `code`.
fn wrong(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

/// Starts a sign-up and returns (phone, verification id, code).
async fn start_signup(app: &TestApp) -> (String, String, String) {
    let phone = random_phone();
    let r = app
        .post(
            "/auth/signup",
            "",
            json!({"phone": phone, "name": "Test Person", "role": "patient"}),
        )
        .await;
    r.expect(200, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let code = app.last_code(&phone).await;
    (phone, id, code)
}

async fn verify(app: &TestApp, purpose: &str, id: &str, otp: &str) -> Resp {
    app.post(
        &format!("/auth/{purpose}/verify/{id}"),
        "",
        json!({"otp": otp}),
    )
    .await
}

/// A clinic registers the phone (`createPatient`) while its owner's sign-up is being completed:
/// the sign-up waits for it or sees it, and takes the clinic's record over, instead of failing on
/// the phone's uniqueness with its code already spent (PostgreSQL read the phone as free, then
/// met the clinic's row at its insert).
#[tokio::test]
async fn a_sign_up_racing_a_clinic_registration_takes_the_record_over() {
    let app = TestApp::spawn().await;
    let (phone, id, code) = start_signup(&app).await;
    let clinic_record = "clinicrecord0000000000000000000a";
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, phone, name, name_lower, role, phone_verified, doctor_verified, \
         created_at, updated_at) VALUES ($1, $2, 'From Clinic', 'from clinic', 'patient', 0, 0, $3, $3)",
    )
    .bind(clinic_record)
    .bind(&phone)
    .bind(app.clock().now())
    .execute(&mut *tx)
    .await
    .unwrap();
    let committing = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        tx.commit().await.unwrap();
    };
    let (r, ()) = tokio::join!(verify(&app, "signup", &id, &code), committing);
    r.expect(200, "");
    let me = app
        .get(
            "/protected/user/sessionDetail",
            r.cookie.as_deref().unwrap(),
        )
        .await;
    me.expect(200, "");
    assert_eq!(me.data()["user"]["id"], clinic_record);
    assert_eq!(me.data()["user"]["name"], "Test Person");
}

// ---- one-time codes ----

#[tokio::test]
async fn a_code_works_until_its_lifetime_ends_then_answers_410_expired() {
    let app = TestApp::spawn().await;
    let (_, id, code) = start_signup(&app).await;
    app.clock().advance(Duration::from_secs(5 * 60));
    verify(&app, "signup", &id, &code)
        .await
        .expect(410, "OTP_EXPIRED");

    let (_, id, code) = start_signup(&app).await;
    app.clock().advance(Duration::from_secs(4 * 60 + 50));
    verify(&app, "signup", &id, &code).await.expect(200, "");
}

#[tokio::test]
async fn a_used_code_answers_410_used() {
    let app = TestApp::spawn().await;
    let (_, id, code) = start_signup(&app).await;
    verify(&app, "signup", &id, &code).await.expect(200, "");
    verify(&app, "signup", &id, &code)
        .await
        .expect(410, "OTP_USED");
}

#[tokio::test]
async fn malformed_codes_and_unknown_or_cross_purpose_ids_are_refused() {
    let app = TestApp::spawn().await;
    let (_, id, code) = start_signup(&app).await;
    for bad in ["12345", "1234567", "12a456", ""] {
        let r = verify(&app, "signup", &id, bad).await;
        r.expect(422, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], "otp");
    }
    // A sign-up verification id is not a sign-in one.
    verify(&app, "signin", &id, &code)
        .await
        .expect(404, "NOT_FOUND");
    verify(&app, "signup", "no-such-id", &code)
        .await
        .expect(404, "NOT_FOUND");
    // None of that cost the code a try.
    verify(&app, "signup", &id, &code).await.expect(200, "");
}

/// A new code carries the wrong tries of the one it replaces: asking for a new code before the
/// fifth wrong guess does not dodge the phone's back-off.
#[tokio::test]
async fn a_resend_does_not_reset_the_wrong_tries() {
    let app = TestApp::spawn().await;
    let user = app.signup("Kiran", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let (id, code) = app.send_code("/auth/signin", &user.phone).await;
    for _ in 0..4 {
        verify(&app, "signin", &id, &wrong(&code))
            .await
            .expect(401, "OTP_INVALID");
    }
    app.clock().advance(Duration::from_secs(61));
    let (id, code) = app.send_code("/auth/signin/resendotp", &user.phone).await;
    // One wrong try left on the new code: it dies, and the phone backs off.
    verify(&app, "signin", &id, &wrong(&code))
        .await
        .expect(410, "OTP_DEAD");
    verify(&app, "signin", &id, &code)
        .await
        .expect(410, "OTP_DEAD");
    app.post("/auth/signin", "", json!({"phone": user.phone}))
        .await
        .expect(429, "OTP_BACKOFF");
    // After the back-off (and the cooldown), a new code starts with all five tries.
    app.clock().advance(Duration::from_secs(61));
    let (id, code) = app.send_code("/auth/signin", &user.phone).await;
    let r = verify(&app, "signin", &id, &wrong(&code)).await;
    r.expect(401, "OTP_INVALID");
    assert_eq!(r.body["error"]["details"]["attempts_left"], 4);
    verify(&app, "signin", &id, &code).await.expect(200, "");
}

/// Guesses sent at the same moment are each compared and counted in one statement, so however
/// they interleave, no more than five are ever compared with the code: four are told "wrong",
/// one kills the code, the rest are refused without a comparison, and the right code no longer
/// opens it. (When comparing and counting were two statements, concurrent guesses were all
/// compared before their counts landed: seven wrong, then the right code accepted.)
#[tokio::test]
async fn concurrent_guesses_are_compared_at_most_five_times() {
    let app = TestApp::spawn().await;
    let (_, id, code) = start_signup(&app).await;
    let n: u32 = code.parse().unwrap();
    let guesses: Vec<String> = (1..=12)
        .map(|k| format!("{:06}", (n + k) % 1_000_000))
        .collect();
    let answers =
        futures::future::join_all(guesses.iter().map(|g| verify(&app, "signup", &id, g))).await;
    let mut told_wrong = 0;
    let mut dead = 0;
    for r in &answers {
        match (r.status.as_u16(), r.code()) {
            (401, "OTP_INVALID") => told_wrong += 1,
            (410, "OTP_DEAD") => dead += 1,
            other => panic!("unexpected answer {other:?}: {}", r.body),
        }
    }
    assert_eq!(
        (told_wrong, dead),
        (4, 8),
        "compared more than five guesses"
    );
    let attempts = app
        .count("SELECT attempts FROM otp_challenges WHERE id = $1", &[&id])
        .await;
    assert_eq!(attempts, 5);
    verify(&app, "signup", &id, &code)
        .await
        .expect(410, "OTP_DEAD");
}

/// A code killed within its send's cooldown: the phone's 30 s back-off is the reason given, but
/// `Retry-After` is the cooldown's longer wait, and a client that waits exactly that long is
/// served.
#[tokio::test]
async fn retry_after_is_the_longest_wait_that_holds_the_phone() {
    let app = TestApp::spawn().await;
    let (phone, id, code) = start_signup(&app).await;
    app.clock().advance(Duration::from_secs(10));
    spend_every_try(&app, "signup", &id, &code).await;
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(429, "OTP_BACKOFF");
    let wait = retry_after(&r);
    assert!((49..=50).contains(&wait), "{wait}");
    assert_eq!(r.body["error"]["details"]["retry_after"], wait);
    app.clock().advance(Duration::from_secs(wait - 1));
    app.post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await
        .expect(429, "OTP_COOLDOWN");
    app.clock().advance(Duration::from_secs(1));
    app.post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await
        .expect(200, "");
}

#[tokio::test]
async fn five_wrong_codes_kill_the_code_and_the_phone_backs_off_without_resend_resetting_it() {
    let app = TestApp::spawn().await;
    let (phone, id, code) = start_signup(&app).await;
    app.clock().advance(Duration::from_secs(61)); // past the send cooldown, so only the back-off speaks
    for left in (1..=4).rev() {
        let r = verify(&app, "signup", &id, &wrong(&code)).await;
        r.expect(401, "OTP_INVALID");
        assert_eq!(r.body["error"]["details"]["attempts_left"], left);
    }
    verify(&app, "signup", &id, &wrong(&code))
        .await
        .expect(410, "OTP_DEAD");
    verify(&app, "signup", &id, &code)
        .await
        .expect(410, "OTP_DEAD");

    // The phone waits 30 s before the next code, on every way of asking for one.
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(429, "OTP_BACKOFF");
    let wait = retry_after(&r);
    assert!((29..=30).contains(&wait), "{wait}");
    app.post(
        "/auth/signup",
        "",
        json!({"phone": phone, "name": "T", "role": "patient"}),
    )
    .await
    .expect(429, "OTP_BACKOFF");
    let sent = app.sms().await.len();

    app.clock().advance(Duration::from_secs(31));
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(200, "");
    assert_eq!(app.sms().await.len(), sent + 1);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let code = app.last_code(&phone).await;
    app.clock().advance(Duration::from_secs(61));
    spend_every_try(&app, "signup", &id, &code).await;

    // The resend did not reset the history: the second dead code doubles the wait.
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(429, "OTP_BACKOFF");
    let wait = retry_after(&r);
    assert!((59..=60).contains(&wait), "{wait}");
    assert_eq!(r.body["error"]["details"]["retry_after"], wait);
}

#[tokio::test]
async fn a_successful_sign_in_forgives_the_back_off_history() {
    let app = TestApp::spawn().await;
    let (phone, id, code) = start_signup(&app).await;
    for _ in 0..5 {
        verify(&app, "signup", &id, &wrong(&code)).await;
    }
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(200, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    verify(&app, "signup", &id, &app.last_code(&phone).await)
        .await
        .expect(200, "");

    // A later dead code starts again at 30 s, not 60 s.
    app.clock().advance(Duration::from_secs(61));
    let r = app.post("/auth/signin", "", json!({"phone": phone})).await;
    let id = r.data()["id"].as_str().unwrap().to_string();
    let code = app.last_code(&phone).await;
    app.clock().advance(Duration::from_secs(61));
    for _ in 0..5 {
        verify(&app, "signin", &id, &wrong(&code)).await;
    }
    app.clock().advance(Duration::from_secs(31));
    // 31 s after the code died: the 30 s back-off is over (a 60 s one would not be).
    app.post("/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(200, "");
}

#[tokio::test]
async fn a_resend_kills_the_previous_code() {
    let app = TestApp::spawn().await;
    let (phone, old_id, old_code) = start_signup(&app).await;
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["success"], true);
    let new_id = r.data()["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_id);
    verify(&app, "signup", &old_id, &old_code)
        .await
        .expect(410, "OTP_REPLACED");
    verify(&app, "signup", &new_id, &app.last_code(&phone).await)
        .await
        .expect(200, "");

    // The same on sign-in.
    app.clock().advance(Duration::from_secs(61));
    let r = app.post("/auth/signin", "", json!({"phone": phone})).await;
    let old_id = r.data()["id"].as_str().unwrap().to_string();
    let old_code = app.last_code(&phone).await;
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post("/auth/signin/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(200, "");
    let new_id = r.data()["id"].as_str().unwrap().to_string();
    verify(&app, "signin", &old_id, &old_code)
        .await
        .expect(410, "OTP_REPLACED");
    verify(&app, "signin", &new_id, &app.last_code(&phone).await)
        .await
        .expect(200, "");
}

#[tokio::test]
async fn signup_resend_without_a_pending_signup_is_404() {
    let app = TestApp::spawn().await;
    app.post(
        "/auth/signup/resendotp",
        "",
        json!({"phone": random_phone()}),
    )
    .await
    .expect(404, "NOT_FOUND");
}

#[tokio::test]
async fn one_code_per_phone_per_minute() {
    let app = TestApp::spawn().await;
    let (phone, _, _) = start_signup(&app).await;
    let sent = app.sms().await.len();
    app.clock().advance(Duration::from_secs(20));
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(429, "OTP_COOLDOWN");
    let wait = retry_after(&r);
    assert!((39..=40).contains(&wait), "{wait}");
    assert_eq!(app.sms().await.len(), sent, "nothing was sent");
    app.clock().advance(Duration::from_secs(41));
    app.post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await
        .expect(200, "");
}

#[tokio::test]
async fn five_codes_per_phone_per_hour() {
    let app = TestApp::spawn().await;
    let (phone, _, _) = start_signup(&app).await;
    for _ in 0..4 {
        app.clock().advance(Duration::from_secs(61));
        app.post("/auth/signup/resendotp", "", json!({"phone": phone}))
            .await
            .expect(200, "");
    }
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await;
    r.expect(429, "OTP_HOURLY_LIMIT");
    let wait = retry_after(&r);
    let expected = 3600 - 4 * 61 - 61;
    assert!(
        (expected - 2..=expected + 1).contains(&wait),
        "{wait} vs {expected}"
    );
    assert_eq!(
        app.sms()
            .await
            .iter()
            .filter(|m| m["to"] == phone.as_str())
            .count(),
        5
    );
    app.clock().advance(Duration::from_secs(wait));
    app.post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await
        .expect(200, "");
}

/// With the phone's hourly count set at the lane's (4 and 4), the phone's own lane still gets
/// half of it (2 codes), not a single one; the other half stays for the owner's browsers.
#[tokio::test]
async fn a_phone_count_at_the_lanes_leaves_the_phone_half_of_it() {
    let app = TestApp::spawn_with(|cfg| {
        cfg.limits.otp_per_hour = 4;
        cfg.limits.otp_phone_per_hour = 4;
    })
    .await;
    let (phone, _, _) = start_signup(&app).await;
    app.clock().advance(Duration::from_secs(61));
    app.post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await
        .expect(200, "");
    app.clock().advance(Duration::from_secs(61));
    app.post("/auth/signup/resendotp", "", json!({"phone": phone}))
        .await
        .expect(429, "OTP_HOURLY_LIMIT");
}

#[tokio::test]
async fn auth_requests_are_limited_per_client_ip_but_sign_out_always_works() {
    let app = TestApp::spawn_with(|cfg| cfg.limits.auth_ip_per_minute = 4).await;
    let user = app.signup("Kiran", "patient").await; // two requests
                                                     // Every /auth request counts, refused ones too.
    for _ in 0..2 {
        app.post("/auth/signin", "", json!({"phone": "nope"}))
            .await
            .expect(422, "VALIDATION_FAILED");
    }
    let r = app
        .post("/auth/signin", "", json!({"phone": random_phone()}))
        .await;
    r.expect(429, "RATE_LIMITED");
    assert!((1..=60).contains(&retry_after(&r)));
    // Signing out is not limited: from an address whose allowance someone else used up (a
    // clinic's shared one), the session still ends and the cookie is cleared.
    let r = app.post_empty("/auth/signout", &user.cookie).await;
    r.expect(200, "");
    assert!(r.cookie.is_some(), "the cookie is cleared");
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
    // Other routes are not under the /auth limit.
    app.get("/health/live", "").await.expect(200, "");
    app.clock().advance(Duration::from_secs(61));
    app.post("/auth/signin", "", json!({"phone": random_phone()}))
        .await
        .expect(200, "");
}

/// Behind a trusted proxy, IPv6 clients are counted by their /64: one host's many addresses
/// share one allowance.
#[tokio::test]
async fn ipv6_clients_share_their_64s_allowance() {
    let app = TestApp::spawn_with(|cfg| {
        cfg.limits.auth_ip_per_minute = 3;
        cfg.trust_proxy = true;
    })
    .await;
    let app = &app;
    let signin = |from: String| async move {
        app.call_with_headers(
            reqwest::Method::POST,
            "/auth/signin",
            &[("x-forwarded-for", from.as_str())],
            Some(json!({"phone": "nope"})),
        )
        .await
    };
    for k in 1..=3 {
        signin(format!("2001:db8:1:2::{k}"))
            .await
            .expect(422, "VALIDATION_FAILED");
    }
    signin("2001:db8:1:2:abcd::9".into())
        .await
        .expect(429, "RATE_LIMITED");
    signin("2001:db8:1:3::1".into())
        .await
        .expect(422, "VALIDATION_FAILED");
}

#[tokio::test]
async fn signin_resend_for_an_unknown_phone_also_answers_like_a_known_one() {
    let app = TestApp::spawn().await;
    let user = app.signup("Kiran", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let unknown_phone = random_phone();
    let known = app
        .post("/auth/signin/resendotp", "", json!({"phone": user.phone}))
        .await;
    let unknown = app
        .post(
            "/auth/signin/resendotp",
            "",
            json!({"phone": unknown_phone}),
        )
        .await;
    known.expect(200, "");
    unknown.expect(200, "");
    assert_eq!(known.body["message"], unknown.body["message"]);
    let keys = |r: &Resp| {
        let mut k: Vec<String> = r.data().as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&known), keys(&unknown));
    assert_eq!(
        known.data()["id"].as_str().unwrap().len(),
        unknown.data()["id"].as_str().unwrap().len()
    );
    assert!(app
        .sms()
        .await
        .iter()
        .all(|m| m["to"] != unknown_phone.as_str()));
    // The unknown phone is under the same cooldown as a known one: no difference there either.
    app.post("/auth/signin", "", json!({"phone": unknown_phone}))
        .await
        .expect(429, "OTP_COOLDOWN");
    app.post("/auth/signin", "", json!({"phone": user.phone}))
        .await
        .expect(429, "OTP_COOLDOWN");
}

// ---- malformed requests ----

#[tokio::test]
async fn bad_phone_numbers_are_422_on_phone() {
    let app = TestApp::spawn().await;
    for bad in [
        "9876543210",
        "+91abc",
        "+9112",
        "",
        "+1234567890123456",
        "+0001234567",
        "  ",
    ] {
        for (path, body) in [
            (
                "/auth/signup",
                json!({"phone": bad, "name": "A", "role": "patient"}),
            ),
            ("/auth/signin", json!({"phone": bad})),
            ("/auth/signin/resendotp", json!({"phone": bad})),
            ("/auth/signup/resendotp", json!({"phone": bad})),
        ] {
            let r = app.post(path, "", body).await;
            r.expect(422, "VALIDATION_FAILED");
            assert_eq!(r.body["error"]["details"]["field"], "phone", "{path} {bad}");
        }
    }
    assert!(app.sms().await.is_empty());
}

#[tokio::test]
async fn invalid_names_and_roles_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let phone = random_phone();
    for (body, field) in [
        (
            json!({"phone": phone, "name": "   ", "role": "patient"}),
            "name",
        ),
        (
            json!({"phone": phone, "name": "x".repeat(101), "role": "patient"}),
            "name",
        ),
        (
            json!({"phone": phone, "name": "a\u{7}b", "role": "patient"}),
            "name",
        ),
        (
            json!({"phone": phone, "name": "A", "role": "admin"}),
            "role",
        ),
        (
            json!({"phone": phone, "name": 7, "role": "patient"}),
            "name",
        ),
        (json!({"phone": phone, "role": "patient"}), "name"),
        (json!({"name": "A", "role": "patient"}), "phone"),
    ] {
        let r = app.post("/auth/signup", "", body.clone()).await;
        r.expect(422, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
    }
    let r = app.post("/auth/signup/verify/x", "", json!({})).await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "otp");
}

#[tokio::test]
async fn malformed_json_wrong_type_and_oversized_bodies_are_refused_in_the_envelope() {
    let app = TestApp::spawn().await;
    let url = app.url("/auth/signin");
    // Cut short, not JSON at all, or a value followed by anything but whitespace.
    for body in [
        "{\"phone\": ",
        "not json",
        "{\"phone\": \"+919812345678\"} {\"phone\": \"+919812345679\"}",
        "{\"phone\": \"+919812345678\"}]]]",
        "{\"phone\": \"+919812345678\"}\u{1}garbage",
    ] {
        let r = send(
            app.http
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        r.expect(400, "MALFORMED_JSON");
    }
    let r = send(
        app.http
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"phone\": \"+919812345678\"} \n\t "),
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    let r = send(
        app.http
            .post(&url)
            .header("content-type", "text/plain")
            .body("{\"phone\": \"+919812345678\"}"),
    )
    .await;
    r.expect(415, "UNSUPPORTED_MEDIA_TYPE");
    let r = send(app.http.post(&url).body("{\"phone\": \"+919812345678\"}")).await;
    r.expect(415, "UNSUPPORTED_MEDIA_TYPE");
    let r = send(app.http.post(&url).form(&[("phone", "+919812345678")])).await;
    r.expect(415, "UNSUPPORTED_MEDIA_TYPE");
    let big = json!({"phone": "+919812345678", "pad": "x".repeat(65 * 1024)}).to_string();
    let r = send(
        app.http
            .post(&url)
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    r.expect(413, "PAYLOAD_TOO_LARGE");
    // Just under the limit is read (and then refused for what it says, not for its size).
    let fits = json!({"phone": "bad", "pad": "x".repeat(60 * 1024)}).to_string();
    let r = send(
        app.http
            .post(&url)
            .header("content-type", "application/json")
            .body(fits),
    )
    .await;
    r.expect(422, "VALIDATION_FAILED");
    assert!(app.sms().await.is_empty());
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let app = TestApp::spawn().await;
    let r = app.get("/auth/nowhere", "").await;
    r.expect(404, "NOT_FOUND");
    let r = app.post("/no/such/route", "", json!({})).await;
    r.expect(404, "NOT_FOUND");
    let r = app.get("/auth/signup", "").await;
    r.expect(405, "METHOD_NOT_ALLOWED");
    assert!(
        r.headers
            .get("allow")
            .is_some_and(|v| v.to_str().unwrap().contains("POST")),
        "{:?}",
        r.headers
    );
    let r = app
        .call(reqwest::Method::DELETE, "/health/live", "", None)
        .await;
    r.expect(405, "METHOD_NOT_ALLOWED");
}

// ---- sessions ----

#[tokio::test]
async fn protected_routes_need_a_live_session() {
    let app = TestApp::spawn().await;
    app.get("/protected/user/sessionDetail", "")
        .await
        .expect(401, "UNAUTHENTICATED");
    let made_up = "auravita_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    app.get("/protected/user/sessionDetail", made_up)
        .await
        .expect(401, "UNAUTHENTICATED");
    app.get("/protected/user/sessionDetail", "other_cookie=1")
        .await
        .expect(401, "UNAUTHENTICATED");

    // Signing one session out leaves the person's other sessions alone.
    let user = app.signup("Devi", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let second = app.signin(&user.phone).await;
    app.post_empty("/auth/signout", &user.cookie)
        .await
        .expect(200, "");
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
    app.get("/protected/user/sessionDetail", &second)
        .await
        .expect(200, "");
    // Signing out without a session is harmless.
    app.post_empty("/auth/signout", "").await.expect(200, "");
}

#[tokio::test]
async fn an_idle_session_expires_after_30_minutes_and_activity_keeps_it_alive() {
    let app = TestApp::spawn().await;
    let user = app.signup("Idle", "patient").await;
    for _ in 0..3 {
        app.clock().advance(Duration::from_secs(29 * 60));
        app.get("/protected/user/sessionDetail", &user.cookie)
            .await
            .expect(200, "");
    }
    app.clock().advance(Duration::from_secs(31 * 60));
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(401, "SESSION_EXPIRED");
    // Once expired it stays gone.
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&user.id]
        )
        .await,
        0
    );
}

/// Activity is recorded at most once per touch interval (a tenth of the idle timeout, at most a
/// minute), and the interval is added to the idle timeout: a session never ends sooner than the
/// idle timeout after its last request, however short the timeout, and at most an interval later.
#[tokio::test]
async fn a_session_ends_no_sooner_than_the_idle_timeout_after_its_last_request() {
    for (idle_ms, steps) in [
        (65_000u64, [20_000u64, 20_000, 18_000]),
        (4_000, [2_000, 1_900, 1_500]),
    ] {
        let app =
            TestApp::spawn_with(|c| c.limits.session_idle_secs = (idle_ms / 1000) as i64).await;
        let user = app.signup("Idle", "patient").await;
        let get = || app.get("/protected/user/sessionDetail", &user.cookie);
        // Requests closer together than the timeout keep it, recorded or not.
        for _ in 0..3 {
            for step in steps {
                app.clock().advance(Duration::from_millis(step));
                get().await.expect(200, "");
            }
        }
        // Just short of the timeout after the last request: still live.
        app.clock().advance(Duration::from_millis(idle_ms - 1));
        get().await.expect(200, "");
        // Past the timeout and its interval after that request: ended.
        app.clock()
            .advance(Duration::from_millis(idle_ms + idle_ms / 10 + 1));
        get().await.expect(401, "SESSION_EXPIRED");
    }
}

#[tokio::test]
async fn a_session_ends_after_12_hours_however_active() {
    let app = TestApp::spawn().await;
    let user = app.signup("Busy", "doctor").await;
    for step in 1..=35 {
        app.clock().advance(Duration::from_secs(20 * 60));
        let r = app.get("/protected/user/sessionDetail", &user.cookie).await;
        assert_eq!(r.status.as_u16(), 200, "step {step}: {}", r.body);
    }
    app.clock().advance(Duration::from_secs(20 * 60)); // 36 × 20 min = 12 h
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(401, "SESSION_EXPIRED");
}

#[tokio::test]
async fn every_sign_in_makes_a_new_token_and_tokens_are_stored_only_hashed() {
    let app = TestApp::spawn().await;
    let user = app.signup("Hash", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let second = app.signin(&user.phone).await;
    app.clock().advance(Duration::from_secs(61));
    let third = app.signin(&user.phone).await;
    let tokens: Vec<String> = [&user.cookie, &second, &third]
        .iter()
        .map(|c| c.split_once('=').unwrap().1.to_string())
        .collect();
    assert_ne!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    assert_ne!(tokens[0], tokens[2]);
    for t in &tokens {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .expect("base64url token");
        assert_eq!(raw.len(), 32, "256-bit token");
    }
    for c in [&user.cookie, &second, &third] {
        app.get("/protected/user/sessionDetail", c)
            .await
            .expect(200, "");
    }
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&user.id]
        )
        .await,
        3
    );

    let cells = all_cells(&app, "sessions").await;
    for t in &tokens {
        assert!(
            cells.iter().all(|c| !c.contains(t.as_str())),
            "token {t} stored in clear"
        );
        let hashed = auravita::keys::sha256_hex(t.as_bytes());
        assert!(
            cells.contains(&hashed),
            "the hash of each token is what is stored"
        );
    }
}

/// Every cell of every row of `table`, as text (TEXT and BIGINT columns).
async fn all_cells(app: &TestApp, table: &str) -> Vec<String> {
    use sqlx::{Column, Row};
    let rows = sqlx::query(&format!("SELECT * FROM {table}"))
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    assert!(!rows.is_empty(), "{table} is empty");
    let mut out = Vec::new();
    for row in rows {
        for col in row.columns() {
            let i = col.ordinal();
            if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                out.extend(v);
            } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                out.extend(v.map(|n| n.to_string()));
            } else {
                panic!("{table}.{} is neither text nor integer", col.name());
            }
        }
    }
    out
}

#[tokio::test]
async fn codes_are_never_stored_in_clear() {
    let app = TestApp::spawn().await;
    let (_, id, code) = start_signup(&app).await;
    let user = app.signup("Other", "doctor").await;
    app.clock().advance(Duration::from_secs(61));
    app.post("/auth/signin", "", json!({"phone": user.phone}))
        .await
        .expect(200, "");
    let signin_code = app.last_code(&user.phone).await;
    let cells = all_cells(&app, "otp_challenges").await;
    for c in [&code, &signin_code] {
        let as_number = c.parse::<i64>().unwrap().to_string();
        assert!(
            cells
                .iter()
                .all(|v| !v.contains(c.as_str()) && *v != as_number),
            "code {c} found in otp_challenges: {cells:?}"
        );
        // Not a plain (unkeyed) hash either.
        let plain = auravita::keys::sha256_hex(c.as_bytes());
        assert!(!cells.contains(&plain));
    }
    // And the stored hash still opens the challenge.
    verify(&app, "signup", &id, &code).await.expect(200, "");
}

#[tokio::test]
async fn two_concurrent_verifies_of_one_code_make_one_session() {
    let app = TestApp::spawn().await;
    let (phone, id, code) = start_signup(&app).await;
    let (a, b) = tokio::join!(
        verify(&app, "signup", &id, &code),
        verify(&app, "signup", &id, &code)
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 410], "{} / {}", a.body, b.body);
    let loser = if a.status.as_u16() == 410 { &a } else { &b };
    loser.expect(410, "OTP_USED");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE phone = $1", &[&phone])
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.phone = $1",
            &[&phone]
        )
        .await,
        1
    );

    // Sign-in too, with more contenders.
    app.clock().advance(Duration::from_secs(61));
    let r = app.post("/auth/signin", "", json!({"phone": phone})).await;
    let id = r.data()["id"].as_str().unwrap().to_string();
    let code = app.last_code(&phone).await;
    let all = futures::future::join_all((0..6).map(|_| verify(&app, "signin", &id, &code))).await;
    let ok = all.iter().filter(|r| r.status.as_u16() == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        all.iter().map(|r| r.body.to_string()).collect::<Vec<_>>()
    );
    for r in all.iter().filter(|r| r.status.as_u16() != 200) {
        r.expect(410, "OTP_USED");
    }
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.phone = $1",
            &[&phone]
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_phone_with_an_account_cannot_sign_up_again() {
    let app = TestApp::spawn().await;
    let user = app.signup("Taken", "doctor").await;
    app.clock().advance(Duration::from_secs(61));
    app.post(
        "/auth/signup",
        "",
        json!({"phone": user.phone, "name": "X", "role": "doctor"}),
    )
    .await
    .expect(409, "PHONE_ALREADY_REGISTERED");
}

// ---- browser protections ----

#[tokio::test]
async fn a_foreign_origin_is_refused_on_unsafe_methods_and_the_public_origin_allowed() {
    let app = TestApp::spawn().await;
    let user = app.signup("Origin", "patient").await;
    let public = app.state.config.public_origin();
    let signin = json!({"phone": random_phone()});
    for foreign in ["https://evil.example", "null", "http://127.0.0.1:8081"] {
        let r = send(
            app.http
                .post(app.url("/auth/signin"))
                .header("origin", foreign)
                .json(&signin),
        )
        .await;
        r.expect(403, "ORIGIN_REFUSED");
        let r = send(
            app.http
                .post(app.url("/auth/signout"))
                .header("origin", foreign)
                .header("cookie", &user.cookie),
        )
        .await;
        r.expect(403, "ORIGIN_REFUSED");
    }
    // The refused sign-out did nothing.
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(200, "");
    // A foreign origin may still read (GET is safe; CORS decides what the page sees).
    let r = send(
        app.http
            .get(app.url("/protected/user/sessionDetail"))
            .header("origin", "https://evil.example")
            .header("cookie", &user.cookie),
    )
    .await;
    r.expect(200, "");
    let r = send(
        app.http
            .post(app.url("/auth/signin"))
            .header("origin", &public)
            .json(&signin),
    )
    .await;
    r.expect(200, "");
    let r = send(
        app.http
            .post(app.url("/auth/signout"))
            .header("origin", &public)
            .header("cookie", &user.cookie),
    )
    .await;
    r.expect(200, "");
}

fn assert_security_headers(r: &Resp, what: &str) {
    let h = |name: &str| {
        r.headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name} in {:?}", r.headers))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
    let csp = h("content-security-policy");
    for directive in [
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp} lacks {directive}"
        );
    }
    assert!(
        r.headers.get("x-request-id").is_some(),
        "{what}: no x-request-id"
    );
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let app = TestApp::spawn().await;
    let user = app.signup("Headers", "patient").await;
    let responses = [
        ("health", app.get("/health/live", "").await),
        (
            "session detail",
            app.get("/protected/user/sessionDetail", &user.cookie).await,
        ),
        ("401", app.get("/protected/user/sessionDetail", "").await),
        (
            "422",
            app.post("/auth/signin", "", json!({"phone": "x"})).await,
        ),
        ("404", app.get("/nope", "").await),
        ("405", app.get("/auth/signin", "").await),
        ("openapi", app.get("/openapi.json", "").await),
        (
            "403",
            send(
                app.http
                    .post(app.url("/auth/signin"))
                    .header("origin", "https://evil.example")
                    .json(&json!({})),
            )
            .await,
        ),
    ];
    for (what, r) in &responses {
        assert_security_headers(r, what);
        assert!(
            r.headers.get("strict-transport-security").is_none(),
            "{what}: HSTS over http"
        );
    }
    // API answers (personal data and errors alike) are never cached.
    for (what, r) in &responses[..6] {
        assert_eq!(
            r.headers.get("cache-control").unwrap(),
            "no-store",
            "{what}"
        );
    }
    let r = send(app.http.get(app.url("/docs/"))).await;
    assert_security_headers(&r, "docs");
}

#[tokio::test]
async fn over_https_the_cookie_is_host_prefixed_and_secure_and_hsts_is_sent() {
    let app =
        TestApp::spawn_with(|cfg| cfg.public_url = "https://auravita.example".parse().unwrap())
            .await;
    let (_, id, code) = start_signup(&app).await;
    let r = verify(&app, "signup", &id, &code).await;
    r.expect(200, "");
    let set = r
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.starts_with("__Host-auravita_session="), "{set}");
    let attrs: Vec<String> = set
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for want in ["secure", "httponly", "path=/", "samesite=lax"] {
        assert!(attrs.iter().any(|a| a == want), "{set} lacks {want}");
    }
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain")),
        "__Host- cookies carry no Domain: {set}"
    );
    let hsts = r
        .headers
        .get("strict-transport-security")
        .expect("HSTS over https");
    assert!(hsts.to_str().unwrap().contains("max-age="));
    assert_security_headers(&r, "verify");

    let cookie = r.cookie.clone().unwrap();
    app.get("/protected/user/sessionDetail", &cookie)
        .await
        .expect(200, "");
    // The unprefixed name is not the session cookie here.
    let plain = cookie.replacen("__Host-", "", 1);
    app.get("/protected/user/sessionDetail", &plain)
        .await
        .expect(401, "UNAUTHENTICATED");
    let r = app.post_empty("/auth/signout", &cookie).await;
    let cleared = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        cleared.starts_with("__Host-auravita_session=;") && cleared.contains("Secure"),
        "{cleared}"
    );
    app.get("/health/live", "")
        .await
        .headers
        .get("strict-transport-security")
        .expect("HSTS on every response");
}

/// Session checks are batched (`auravita::batch`): many requests in flight at once share a
/// query. Each must still get its own user and connections, a signed-out session must be refused
/// even when its request rides in a batch with live ones, and a sign-out takes effect for the very
/// next burst. `sessionDetail` reads its session and connections in one batch of its own; other
/// routes (`connections` here) check the session through the shared one: both are tried.
#[tokio::test]
async fn concurrent_session_checks_each_answer_for_their_own_session() {
    let app = TestApp::spawn().await;
    let mut users = Vec::new();
    for i in 0..8 {
        let role = if i % 2 == 0 { "patient" } else { "doctor" };
        users.push(app.signup(&format!("Person {i}"), role).await);
    }
    let signed_out = users.pop().unwrap();
    app.post_empty("/auth/signout", &signed_out.cookie)
        .await
        .expect(200, "");
    // Patients 0 and 2 with doctor 1, patient 4 with doctor 5; 3 and 6 have nobody.
    for (patient, doctor) in [(0, 1), (2, 1), (4, 5)] {
        let r = app
            .post_empty(
                &format!("/protected/user/connectionRequest/{}", users[doctor].id),
                &users[patient].cookie,
            )
            .await;
        r.expect(201, "");
        let request = r.data()["request_id"].as_str().unwrap().to_string();
        app.post_empty(
            &format!("/protected/user/acceptConnectionRequest/{request}"),
            &users[doctor].cookie,
        )
        .await
        .expect(200, "");
    }
    let mut peers: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (a, b) in [(0, 1), (2, 1), (4, 5)] {
        for (me, peer) in [(a, b), (b, a)] {
            let list = peers.entry(users[me].id.clone()).or_default();
            list.push(users[peer].id.clone());
            list.sort();
        }
    }

    // A cookie no session ever had rides along in every burst.
    let made_up = common::User {
        id: "made-up".into(),
        phone: String::new(),
        name: String::new(),
        cookie: format!("auravita_session={}", "A".repeat(43)),
    };
    let peer_ids = |list: &serde_json::Value| {
        let mut ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["peer"]["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let burst = |users: Vec<common::User>, mut gone: Vec<String>| {
        let app = &app;
        let peers = &peers;
        gone.extend([signed_out.id.clone(), made_up.id.clone()]);
        let everyone: Vec<common::User> = users
            .into_iter()
            .chain([signed_out.clone(), made_up.clone()])
            .collect();
        async move {
            let calls = (0..8).flat_map(|round| {
                let path = if round % 2 == 0 {
                    "/protected/user/sessionDetail"
                } else {
                    "/protected/user/connections"
                };
                everyone
                    .iter()
                    .map(move |u| async move { (u, path, app.get(path, &u.cookie).await) })
            });
            for (u, path, r) in futures::future::join_all(calls).await {
                if gone.contains(&u.id) {
                    r.expect(401, "UNAUTHENTICATED");
                    continue;
                }
                r.expect(200, "");
                let want = peers.get(&u.id).cloned().unwrap_or_default();
                assert_eq!(peer_ids(&r.data()["connections"]), want, "{path}");
                if path.ends_with("sessionDetail") {
                    assert_eq!(r.data()["user"]["id"], u.id.as_str());
                    assert_eq!(r.data()["user"]["name"], u.name.as_str());
                }
            }
        }
    };
    burst(users.clone(), vec![]).await;
    // Sign one more out; the next burst refuses it and still serves everyone else.
    app.post_empty("/auth/signout", &users[0].cookie)
        .await
        .expect(200, "");
    burst(users.clone(), vec![users[0].id.clone()]).await;
    // The bursts were in fact batched: fewer queries than the requests they answered, on both
    // paths (each burst sends 36 requests down each).
    for (name, (queries, keys)) in [
        ("session", app.state.sessions.counts()),
        ("session_detail", app.state.session_details.counts()),
    ] {
        assert!(
            keys >= 72 && queries < keys,
            "{name}: {queries} queries for {keys} checks"
        );
    }
}

/// PostgreSQL drops every connection (a restart, a failover): a request caught by it gets 503,
/// never 500, and the server is back to 200 on fresh connections soon after: a connection that
/// died, kept between batched reads or idle in the pool, is not reused for long.
#[tokio::test]
async fn requests_recover_when_postgres_drops_every_connection() {
    let Some(admin) = common::pg_url() else {
        eprintln!("skipped: set AURAVITA_TEST_DATABASE_URL to run the PostgreSQL restart test");
        return;
    };
    let app = TestApp::spawn().await;
    let user = app.signup("Asha Rao", "patient").await;
    let routes = [
        "/protected/user/sessionDetail",
        "/protected/user/connections",
    ];
    for route in routes {
        app.get(route, &user.cookie).await.expect(200, "");
    }
    let database = app.state.db.url().rsplit('/').next().unwrap().to_string();
    sqlx::any::install_default_drivers();
    let mut killer = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database)
    .execute(&mut killer)
    .await
    .unwrap();
    let mut refused = 0;
    let mut served_in_a_row = 0;
    for _ in 0..60 {
        for route in routes {
            let r = app.get(route, &user.cookie).await;
            if r.status == 200 {
                served_in_a_row += 1;
            } else {
                r.expect(503, "DEPENDENCY_UNAVAILABLE");
                refused += 1;
                served_in_a_row = 0;
            }
        }
        if served_in_a_row >= 10 {
            break;
        }
    }
    assert!(
        served_in_a_row >= 10,
        "still refusing after {refused} refusals"
    );
    // The kept connections died with the rest, so the drop was felt (and answered with 503).
    assert!(refused >= 1, "no request met a dropped connection");
}

/// A resend naming its sign-up keeps that sign-up's name and role, even when someone else
/// started a sign-up for the same phone (as another name and role) in between.
#[tokio::test]
async fn a_resend_naming_its_sign_up_keeps_its_name_and_role() {
    let app = TestApp::spawn().await;
    let phone = common::random_phone();
    let signup = |name: &'static str, role: &'static str| {
        let (app, phone) = (&app, phone.clone());
        async move {
            let r = app
                .post(
                    "/auth/signup",
                    "",
                    json!({"phone": phone, "name": name, "role": role}),
                )
                .await;
            r.expect(200, "");
            r.data()["id"].as_str().unwrap().to_string()
        }
    };
    let mine = signup("Alice Real", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    signup("Mallory", "doctor").await;
    app.clock().advance(Duration::from_secs(61));
    // Naming a sign-up of another phone is not found.
    app.post(
        "/auth/signup/resendotp",
        "",
        json!({"phone": common::random_phone(), "id": mine}),
    )
    .await
    .expect(404, "NOT_FOUND");
    let r = app
        .post(
            "/auth/signup/resendotp",
            "",
            json!({"phone": phone, "id": mine}),
        )
        .await;
    r.expect(200, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let otp = app.last_code(&phone).await;
    let r = app
        .post(
            &format!("/auth/signup/verify/{id}"),
            "",
            json!({"otp": otp}),
        )
        .await;
    r.expect(200, "");
    let cookie = r.cookie.clone().unwrap();
    let me = app.get("/protected/user/sessionDetail", &cookie).await;
    assert_eq!(me.data()["user"]["name"], "Alice Real");
    assert_eq!(me.data()["user"]["role"], "patient");
}

// ---- device cookies: the owner's browser has its own lane of the phone's limits ----

/// POST a JSON body from a browser holding `cookie` (empty: none).
async fn post_from(app: &TestApp, path: &str, cookie: &str, body: serde_json::Value) -> Resp {
    app.post(path, cookie, body).await
}

/// Someone without the owner's browser asks for a sign-in code for `phone` and guesses wrong
/// until it dies: the lane the code was asked in (`cookie`'s, or the phone's) backs off.
async fn kill_a_code(app: &TestApp, phone: &str, cookie: &str) {
    let r = post_from(app, "/auth/signin", cookie, json!({"phone": phone})).await;
    r.expect(200, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let code = app.last_code(phone).await;
    spend_every_try(app, "signin", &id, &code).await;
}

/// A new account signed up from a browser: its phone, and that browser's device cookie.
async fn signed_up_with_device(app: &TestApp) -> (String, String) {
    let phone = random_phone();
    let (device, _) = app
        .signup_answer(&phone, "Asha", "patient")
        .await
        .device_cookie()
        .expect("device cookie");
    (phone, device)
}

/// A lane refused for its cooldown while the phone's count across its lanes is used up for the
/// hour: `Retry-After` is the hour's wait, not the cooldown's, so a client that waits as told is
/// served.
#[tokio::test]
async fn retry_after_covers_the_phones_hour_behind_a_lanes_cooldown() {
    let app = TestApp::spawn().await;
    let (phone, device) = signed_up_with_device(&app).await;
    for _ in 0..3 {
        app.clock().advance(Duration::from_secs(61));
        post_from(&app, "/auth/signin", &device, json!({"phone": phone}))
            .await
            .expect(200, "");
    }
    // The phone's own lane (no device cookie): its share of the phone's hour is now used up.
    app.clock().advance(Duration::from_secs(61));
    post_from(&app, "/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(200, "");
    let r = post_from(&app, "/auth/signin", "", json!({"phone": phone})).await;
    r.expect(429, "OTP_COOLDOWN");
    let wait = retry_after(&r);
    assert!(wait > 3000, "{wait}");
    app.clock().advance(Duration::from_secs(wait - 1));
    post_from(&app, "/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(429, "OTP_HOURLY_LIMIT");
    app.clock().advance(Duration::from_secs(1));
    post_from(&app, "/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(200, "");
}

/// Anyone who knows a phone number can ask for its codes and guess wrong: the phone's lane backs
/// off. A browser that signed in to that phone before has a device cookie, and its codes are
/// counted in a lane of its own: the stranger's wrong tries neither keep it waiting, nor end
/// the code it is typing, nor count against that code; and its own limits still hold.
#[tokio::test]
async fn a_strangers_wrong_codes_do_not_keep_the_owners_browser_out() {
    let app = TestApp::spawn().await;
    let phone = random_phone();
    let (device, set) = app
        .signup_answer(&phone, "Asha", "patient")
        .await
        .device_cookie()
        .expect("device cookie");
    for attr in [
        "; Path=/",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Max-Age=15552000",
    ] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    assert!(!set.contains("Secure"), "http public URL: {set}");

    // A stranger kills a code: the phone's lane backs off, for strangers.
    app.clock().advance(Duration::from_secs(61));
    kill_a_code(&app, &phone, "").await;
    post_from(&app, "/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(429, "OTP_BACKOFF");

    // The owner's browser is served at once, with a fresh code's five tries.
    let r = post_from(&app, "/auth/signin", &device, json!({"phone": phone})).await;
    r.expect(200, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let code = app.last_code(&phone).await;
    let r = verify(&app, "signin", &id, &wrong(&code)).await;
    r.expect(401, "OTP_INVALID");
    assert_eq!(r.body["error"]["details"]["attempts_left"], 4);

    // A stranger's request (once the back-off and cooldown are over) does not end the owner's
    // live code.
    app.clock().advance(Duration::from_secs(61));
    post_from(&app, "/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(200, "");
    let r = verify(&app, "signin", &id, &code).await;
    r.expect(200, "");
    // The browser keeps its device; the cookie is signed anew.
    let (again, _) = r.device_cookie().expect("device cookie");
    assert_ne!(again, device);
    assert_eq!(
        again.split('.').next(),
        device.split('.').next(),
        "the same device"
    );

    // The owner's lane has its own limits: its cooldown ...
    app.clock().advance(Duration::from_secs(61));
    post_from(&app, "/auth/signin", &again, json!({"phone": phone}))
        .await
        .expect(200, "");
    post_from(&app, "/auth/signin", &again, json!({"phone": phone}))
        .await
        .expect(429, "OTP_COOLDOWN");
    // ... and its own back-off.
    app.clock().advance(Duration::from_secs(61));
    kill_a_code(&app, &phone, &again).await;
    let r = post_from(&app, "/auth/signin", &again, json!({"phone": phone})).await;
    r.expect(429, "OTP_BACKOFF");
    // The owner's success did not forgive the stranger's dead code on the phone's lane.
    let dead = app
        .count(
            "SELECT dead_codes FROM phone_limits WHERE phone = $1",
            &[&phone],
        )
        .await;
    assert_eq!(dead, 1);
    // Six codes this hour, three of them through the phone's own lane: strangers have had the
    // phone lane's share of the phone's hour (5 of 10) and wait, though that lane's own count
    // (3 of 5) has room.
    app.clock().advance(Duration::from_secs(61));
    post_from(&app, "/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(429, "OTP_HOURLY_LIMIT");
    let lanes = app
        .count(
            "SELECT COUNT(*) FROM phone_limits WHERE phone = $1 OR phone LIKE $2",
            &[&phone, &format!("{phone}#%")],
        )
        .await;
    assert_eq!(
        lanes, 3,
        "the phone's lane, the one device's, and the phone's count across its lanes"
    );
}

/// A device cookie gives its own lane only for the phone and account it was set for, unchanged,
/// and for `AURAVITA_DEVICE_COOKIE_DAYS` (180) days; anything else is a stranger.
#[tokio::test]
async fn a_device_cookie_counts_only_for_its_phone_unchanged_and_while_young() {
    let app = TestApp::spawn().await;
    let phone = random_phone();
    let r = app.signup_answer(&phone, "Asha", "patient").await;
    let user_id = r.data()["session"]["user_id"].as_str().unwrap().to_string();
    let (device, _) = r.device_cookie().expect("device cookie");
    let other_phone = random_phone();
    let (other_device, _) = app
        .signup_answer(&other_phone, "Other Person", "patient")
        .await
        .device_cookie()
        .expect("device cookie");
    app.clock().advance(Duration::from_secs(61));
    kill_a_code(&app, &phone, "").await;
    kill_a_code(&app, &other_phone, "").await;

    let (name, value) = device.split_once('=').unwrap();
    let parts: Vec<&str> = value.split('.').collect();
    let flip = |s: &str| {
        let last = if s.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &s[..s.len() - 1])
    };
    let set_at: i64 = parts[1].parse().unwrap();
    let earlier = (set_at - 60).to_string();
    let refused = [
        format!("{name}={}.{}.{}", parts[0], parts[1], flip(parts[2])),
        format!("{name}={}.{}.{}", flip(parts[0]), parts[1], parts[2]),
        format!("{name}={}.{}.{}", parts[0], earlier, parts[2]),
        format!("{name}={}.{}", parts[0], parts[1]),
        format!("{name}={value}.x"),
        format!("other_{device}"),
    ];
    for cookie in &refused {
        post_from(&app, "/auth/signin", cookie, json!({"phone": phone}))
            .await
            .expect(429, "OTP_BACKOFF");
    }
    // Not for another phone: not under its own name, nor under the other phone's; while the other
    // phone's own cookie opens its lane, beside this one in the same browser.
    let (other_name, _) = other_device.split_once('=').unwrap();
    assert_ne!(other_name, name, "one cookie per phone");
    for cookie in [device.clone(), format!("{other_name}={value}")] {
        post_from(&app, "/auth/signin", &cookie, json!({"phone": other_phone}))
            .await
            .expect(429, "OTP_BACKOFF");
    }
    post_from(
        &app,
        "/auth/signin",
        &format!("{device}; {other_device}"),
        json!({"phone": other_phone}),
    )
    .await
    .expect(200, "");
    // Among other cookies, and after a stale one of the same name, it still counts.
    let mixed = format!("{}; theme=dark; {device}", refused[0]);
    post_from(&app, "/auth/signin", &mixed, json!({"phone": phone}))
        .await
        .expect(200, "");
    // Signed by an instance whose clock runs ahead: up to five minutes ahead it is the same
    // device (whose lane is now in its cooldown), further ahead a stranger.
    let signed_at = |secs: i64| {
        let at = secs.to_string();
        let mac = app.state.keys.device_mac(&[
            phone.as_bytes(),
            user_id.as_bytes(),
            parts[0].as_bytes(),
            at.as_bytes(),
        ]);
        format!("{name}={}.{at}.{mac}", parts[0])
    };
    let now = app.clock().now() / 1000;
    post_from(
        &app,
        "/auth/signin",
        &signed_at(now + 120),
        json!({"phone": phone}),
    )
    .await
    .expect(429, "OTP_COOLDOWN");
    post_from(
        &app,
        "/auth/signin",
        &signed_at(now + 600),
        json!({"phone": phone}),
    )
    .await
    .expect(429, "OTP_BACKOFF");

    // Until 180 days after it was set; then it is a stranger's again.
    app.clock()
        .advance(Duration::from_secs(180 * 86_400 - 61 - 10));
    kill_a_code(&app, &phone, "").await;
    post_from(&app, "/auth/signin", &device, json!({"phone": phone}))
        .await
        .expect(200, "");
    app.clock().advance(Duration::from_secs(61));
    kill_a_code(&app, &phone, "").await;
    post_from(&app, "/auth/signin", &device, json!({"phone": phone}))
        .await
        .expect(429, "OTP_BACKOFF");
}

/// However many browsers have their own lanes, one phone receives at most
/// `AURAVITA_OTP_PHONE_PER_HOUR` (10) codes an hour in all: lanes cannot be multiplied to send
/// a number more (SMS pumping). A lane's own allowance (5) still holds within that.
#[tokio::test]
async fn lanes_do_not_multiply_what_one_phone_receives() {
    let app = TestApp::spawn().await;
    let (phone, first) = signed_up_with_device(&app).await;
    // A second browser signs in and has a lane of its own.
    app.clock().advance(Duration::from_secs(61));
    let (id, code) = app.send_code("/auth/signin", &phone).await;
    let r = verify(&app, "signin", &id, &code).await;
    r.expect(200, "");
    let (second, _) = r.device_cookie().expect("device cookie");
    assert_ne!(first, second);
    // Two codes so far (the phone's lane); four more in each device's lane.
    for cookie in [&first, &second] {
        for _ in 0..4 {
            app.clock().advance(Duration::from_secs(61));
            post_from(&app, "/auth/signin", cookie, json!({"phone": phone}))
                .await
                .expect(200, "");
        }
    }
    let sent = |msgs: Vec<serde_json::Value>| msgs.iter().filter(|m| m["to"] == phone).count();
    assert_eq!(sent(app.sms().await), 10);
    // Each lane has room left, the phone has none.
    for cookie in [&first, &second, &String::new()] {
        app.clock().advance(Duration::from_secs(61));
        let r = post_from(&app, "/auth/signin", cookie, json!({"phone": phone})).await;
        r.expect(429, "OTP_HOURLY_LIMIT");
        assert!(r.headers.get("retry-after").is_some());
    }
    assert_eq!(sent(app.sms().await), 10);
    // An hour after the first code, it opens again.
    app.clock().advance(Duration::from_secs(3600 - 12 * 61 + 1));
    post_from(&app, "/auth/signin", &first, json!({"phone": phone}))
        .await
        .expect(200, "");
}

/// A device cookie belongs to the account as well as the phone: once the account is erased and
/// the number signs up again (its next holder, say), the old browser is a stranger to it.
#[tokio::test]
async fn an_erased_accounts_device_cookie_counts_for_nothing_on_the_numbers_next_account() {
    let app = TestApp::spawn().await;
    let phone = random_phone();
    let r = app.signup_answer(&phone, "Erin", "patient").await;
    let session = r.cookie.clone().expect("session cookie");
    let (old, _) = r.device_cookie().expect("device cookie");
    app.post_empty("/protected/user/deleteProfile", &session)
        .await
        .expect(200, "");
    app.clock().advance(Duration::from_secs(61));
    let (new, _) = app
        .signup_answer(&phone, "Frank", "patient")
        .await
        .device_cookie()
        .expect("device cookie");
    app.clock().advance(Duration::from_secs(61));
    kill_a_code(&app, &phone, "").await;
    post_from(&app, "/auth/signin", &old, json!({"phone": phone}))
        .await
        .expect(429, "OTP_BACKOFF");
    post_from(&app, "/auth/signin", &new, json!({"phone": phone}))
        .await
        .expect(200, "");
}

/// The phone's hourly count and each lane's run in windows of their own, so a stranger who times
/// the phone's lane across its window's end could take almost all of the phone's count. The
/// phone's own lane may take it only to 10 - 5: the owner's browser keeps five codes an hour.
#[tokio::test]
async fn a_stranger_timing_the_windows_still_leaves_the_owner_five_codes() {
    let app = TestApp::spawn().await;
    let (phone, device) = signed_up_with_device(&app).await;
    let ask = |cookie: &str| {
        let cookie = cookie.to_string();
        let (app, phone) = (&app, phone.clone());
        async move {
            app.clock().advance(Duration::from_secs(61));
            post_from(app, "/auth/signin", &cookie, json!({"phone": phone})).await
        }
    };
    // An hour on, the owner's browser starts the phone's window; the stranger's lane starts its
    // own five minutes later.
    app.clock().advance(Duration::from_secs(3600));
    ask(&device).await.expect(200, "");
    app.clock().advance(Duration::from_secs(240));
    ask("").await.expect(200, "");
    // The phone's window ends first: the stranger spends the rest of its lane's window in the
    // phone's next one, then its lane's next window.
    app.clock()
        .advance(Duration::from_secs(3600 - 61 * 2 - 240 + 1));
    for _ in 0..4 {
        ask("").await.expect(200, "");
    }
    ask("").await.expect(429, "OTP_HOURLY_LIMIT"); // the lane's five
                                                   // The lane's next window: one more brings the phone's window to five, and that is all.
    app.clock().advance(Duration::from_secs(120));
    ask("").await.expect(200, "");
    ask("").await.expect(429, "OTP_HOURLY_LIMIT");
    // In the phone's window the stranger has had 5: the owner's browser has five more.
    for _ in 0..5 {
        ask(&device).await.expect(200, "");
    }
}

/// Instances' clocks differ a little. A code sent through one whose clock runs ahead must not
/// refuse another lane's on the others: the phone's count across lanes is an hourly count, not a
/// cooldown.
#[tokio::test]
async fn a_send_on_an_instance_whose_clock_runs_ahead_does_not_refuse_other_lanes() {
    let app = TestApp::spawn().await;
    let ahead = app.spawn_peer().await;
    let (phone, device) = signed_up_with_device(&app).await;
    app.clock().advance(Duration::from_secs(61));
    let lead = app.clock().now() + 120_000 - ahead.clock().now();
    ahead
        .clock()
        .advance(Duration::from_millis(lead.max(0) as u64));
    post_from(&ahead, "/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(200, "");
    post_from(&app, "/auth/signin", &device, json!({"phone": phone}))
        .await
        .expect(200, "");
}
