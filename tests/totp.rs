//! Two-step sign-in over HTTP: setting up an authenticator, turning it on and off, and the second
//! step of sign-in, with every refusal (wrong, reused, late, raced and guessed codes).

mod common;

use auravita::auth::totp::{base32_decode, code_at};
use common::{TestApp, User};
use serde_json::json;
use std::time::Duration;

/// The authenticator's code for the step `offset` steps from the app's clock.
fn code(app: &TestApp, secret: &[u8], offset: i64) -> String {
    code_at(secret, app.clock().now().div_euclid(30_000) + offset)
}

/// Sets up and turns on two-step sign-in; returns the raw secret.
async fn turn_on(app: &TestApp, user: &User) -> Vec<u8> {
    let r = app
        .post_empty("/protected/user/totp/setup", &user.cookie)
        .await;
    r.expect(200, "");
    let secret = base32_decode(r.data()["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.len(), 20);
    let sms = app.last_code(&user.phone).await;
    app.post(
        "/protected/user/totp/enable",
        &user.cookie,
        json!({"code": code(app, &secret, 0), "sms_code": sms}),
    )
    .await
    .expect(200, "");
    secret
}

/// Signs in with the SMS code up to the second step; returns its id.
async fn to_second_step(app: &TestApp, phone: &str) -> String {
    to_second_step_from(app, phone, "").await
}

/// `to_second_step` from a browser holding `cookies` (its device cookie).
async fn to_second_step_from(app: &TestApp, phone: &str, cookies: &str) -> String {
    app.clock().advance(Duration::from_secs(61)); // past the previous code's cooldown
    let (id, otp) = app.send_code_from("/auth/signin", phone, cookies).await;
    let r = app
        .post(
            &format!("/auth/signin/verify/{id}"),
            "",
            json!({"otp": otp}),
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["success"], false, "{}", r.body);
    assert!(r.data()["session"].is_null(), "{}", r.body);
    assert!(r.cookie.is_none(), "no session before the second step");
    assert_eq!(r.data()["second_factor"]["method"], "totp");
    r.data()["second_factor"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The `two_step_changed` notices the owner of `cookie` holds, newest first.
async fn two_step_notices(app: &TestApp, cookie: &str) -> Vec<serde_json::Value> {
    let r = app.get("/protected/notification/list", cookie).await;
    r.expect(200, "");
    let all = r.data()["notifications"].as_array().unwrap().clone();
    all.into_iter()
        .filter(|n| n["kind"] == "two_step_changed")
        .collect()
}

async fn second_step(app: &TestApp, id: &str, code: &str) -> common::Resp {
    app.post(
        &format!("/auth/signin/totp/{id}"),
        "",
        json!({ "code": code }),
    )
    .await
}

#[tokio::test]
async fn set_up_turn_on_sign_in_with_both_steps_and_turn_off() {
    let app = TestApp::spawn().await;
    let me = app.signup("Meera Iyer", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    let other_device = app.signin(&me.phone).await;

    let r = app.get("/protected/user/totp", &me.cookie).await;
    r.expect(200, "");
    assert_eq!(
        r.data(),
        &json!({"enabled": false, "enabled_at": null, "pending": false})
    );
    app.post(
        "/protected/user/totp/enable",
        &me.cookie,
        json!({"code": "123456", "sms_code": "123456"}),
    )
    .await
    .expect(404, "NOT_FOUND");

    let r = app
        .post_empty("/protected/user/totp/setup", &me.cookie)
        .await;
    r.expect(200, "");
    let b32 = r.data()["secret"].as_str().unwrap().to_string();
    let uri = r.data()["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Auravita:%2B91"), "{uri}");
    assert!(uri.contains(&format!("secret={b32}&")), "{uri}");
    assert!(
        uri.contains("issuer=Auravita") && uri.contains("period=30") && uri.contains("digits=6")
    );
    let secret = base32_decode(&b32).unwrap();
    let sms = app.last_code(&me.phone).await;
    let r = app.get("/protected/user/totp", &me.cookie).await;
    assert_eq!(r.data()["pending"], true);
    assert_eq!(r.data()["enabled"], false);

    // The secret is stored encrypted: neither its bytes nor its text are in the row.
    let (sealed,): (String,) =
        sqlx::query_as("SELECT secret_enc FROM user_totp WHERE user_id = $1")
            .bind(&me.id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert!(!sealed.contains(&hex::encode(&secret)) && !sealed.contains(&b32));

    // Wrong, malformed, then right.
    let wrong = if code(&app, &secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    app.post(
        "/protected/user/totp/enable",
        &me.cookie,
        json!({ "code": wrong, "sms_code": sms }),
    )
    .await
    // Signed in and refused: 403, so no client mistakes it for a session that ended.
    .expect(403, "TOTP_INVALID");
    let r = app
        .post(
            "/protected/user/totp/enable",
            &me.cookie,
            json!({"code": "12ab56", "sms_code": sms}),
        )
        .await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "code");
    let r = app
        .post(
            "/protected/user/totp/enable",
            &me.cookie,
            json!({"code": code(&app, &secret, 0), "sms_code": "12 456"}),
        )
        .await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "sms_code");
    // The wrong authenticator code above did not use up the SMS code.
    let r = app
        .post(
            "/protected/user/totp/enable",
            &me.cookie,
            json!({"code": code(&app, &secret, 0), "sms_code": sms}),
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["enabled"], true);
    assert_eq!(r.data()["signed_out_sessions"], 1);
    // The owner is told, once, wherever they sign in next.
    let told = two_step_notices(&app, &me.cookie).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["data"]["enabled"], true);
    assert_eq!(told[0]["can_mark_read"], true);
    assert!(told[0]["message"].as_str().unwrap().contains("turned on"));
    // The device that signed in without the second step is out; this one stays.
    app.get("/protected/user/sessionDetail", &other_device)
        .await
        .expect(401, "UNAUTHENTICATED");
    app.get("/protected/user/sessionDetail", &me.cookie)
        .await
        .expect(200, "");
    app.post_empty("/protected/user/totp/setup", &me.cookie)
        .await
        .expect(409, "TOTP_ALREADY_ENABLED");
    app.post(
        "/protected/user/totp/enable",
        &me.cookie,
        json!({"code": code(&app, &secret, 1), "sms_code": sms}),
    )
    .await
    .expect(409, "TOTP_ALREADY_ENABLED");

    // Sign-in now stops after the SMS code until the authenticator's code comes.
    let id = to_second_step(&app, &me.phone).await;
    let r = second_step(&app, &id, wrong).await;
    r.expect(401, "TOTP_INVALID");
    assert_eq!(r.body["error"]["details"]["attempts_left"], 4);
    second_step(&app, &id, "12345")
        .await
        .expect(422, "VALIDATION_FAILED");
    let spent_step = app.clock().now().div_euclid(30_000);
    let r = second_step(&app, &id, &code_at(&secret, spent_step)).await;
    r.expect(200, "");
    assert_eq!(r.data()["success"], true);
    assert!(r.data().get("second_factor").is_none());
    let cookie = r.cookie.clone().expect("session cookie");
    let r = app.get("/protected/user/sessionDetail", &cookie).await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["id"], me.id.as_str());
    // The new sign-in is announced, as any sign-in is.
    let r = app.get("/protected/notification/list", &cookie).await;
    assert!(r.data()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["kind"] == "new_sign_in"));
    second_step(&app, &id, &code(&app, &secret, 1))
        .await
        .expect(410, "SECOND_FACTOR_USED");

    // Turning it off needs a code whose step was not used yet (the step is pinned, so a
    // 30-second boundary passing meanwhile cannot make this a fresh code).
    app.post(
        "/protected/user/totp/disable",
        &cookie,
        json!({"code": code_at(&secret, spent_step)}),
    )
    .await
    .expect(403, "TOTP_INVALID");
    let r = app
        .post(
            "/protected/user/totp/disable",
            &cookie,
            json!({"code": code(&app, &secret, 1)}),
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["enabled"], false);
    app.post(
        "/protected/user/totp/disable",
        &cookie,
        json!({"code": code(&app, &secret, 0)}),
    )
    .await
    .expect(409, "TOTP_NOT_ENABLED");
    // Turning it off is told too; the wrong code and the second try above raised nothing.
    let told = two_step_notices(&app, &me.cookie).await;
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[0]["data"]["enabled"], false);
    assert!(told[0]["message"].as_str().unwrap().contains("turned off"));
    // Back to one step.
    app.clock().advance(Duration::from_secs(61));
    let plain = app.signin(&me.phone).await;
    app.get("/protected/user/sessionDetail", &plain)
        .await
        .expect(200, "");
}

#[tokio::test]
async fn five_wrong_codes_end_the_second_step_and_back_the_phone_off() {
    let app = TestApp::spawn().await;
    let me = app.signup("Kabir", "doctor").await;
    let secret = turn_on(&app, &me).await;
    let id = to_second_step(&app, &me.phone).await;
    let right = code(&app, &secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for left in (1..=4).rev() {
        let r = second_step(&app, &id, wrong).await;
        r.expect(401, "TOTP_INVALID");
        assert_eq!(r.body["error"]["details"]["attempts_left"], left);
    }
    let stopped = || async {
        let r = app.get("/protected/notification/list", &me.cookie).await;
        r.expect(200, "");
        let all = r.data()["notifications"].as_array().unwrap().clone();
        all.into_iter()
            .filter(|n| n["kind"] == "sign_in_stopped")
            .collect::<Vec<_>>()
    };
    assert!(stopped().await.is_empty());
    second_step(&app, &id, wrong).await.expect(410, "TOTP_DEAD");
    // The owner hears that someone had the phone's code but not the authenticator's.
    let told = stopped().await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["can_mark_read"], true);
    assert!(told[0]["message"]
        .as_str()
        .unwrap()
        .contains("authenticator"));
    // Dead means dead, even for the right code now.
    second_step(&app, &id, &right)
        .await
        .expect(410, "TOTP_DEAD");
    // Like a code killed by wrong tries, it backs the phone off new codes.
    app.clock().advance(Duration::from_secs(1));
    let r = app
        .post("/auth/signin", "", json!({"phone": me.phone}))
        .await;
    assert_eq!(r.status.as_u16(), 429, "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn the_second_step_expires_and_unknown_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let me = app.signup("Lata", "patient").await;
    let secret = turn_on(&app, &me).await;
    let id = to_second_step(&app, &me.phone).await;
    app.clock().advance(Duration::from_secs(5 * 60 + 1));
    second_step(&app, &id, &code(&app, &secret, 0))
        .await
        .expect(410, "SECOND_FACTOR_EXPIRED");
    second_step(&app, "no-such-id", &code(&app, &secret, 0))
        .await
        .expect(404, "NOT_FOUND");
    // Sign-up codes never lead to a second step, and sign-in ids are not second-step ids.
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post("/auth/signin", "", json!({"phone": me.phone}))
        .await;
    let signin_id = r.data()["id"].as_str().unwrap().to_string();
    second_step(&app, &signin_id, &code(&app, &secret, 0))
        .await
        .expect(404, "NOT_FOUND");
}

#[tokio::test]
async fn one_code_opens_one_session_however_it_is_raced() {
    let app = TestApp::spawn().await;
    let me = app.signup("Dev", "patient").await;
    let secret = turn_on(&app, &me).await;

    // The same right code sent twice at once to one second step.
    let id = to_second_step(&app, &me.phone).await;
    let c = code(&app, &secret, 0);
    let (a, b) = tokio::join!(second_step(&app, &id, &c), second_step(&app, &id, &c));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 410], "{} / {}", a.body, b.body);

    // One code sent at once to two sign-ins waiting for their second step: it opens one.
    let first = to_second_step(&app, &me.phone).await;
    let second = to_second_step(&app, &me.phone).await;
    let c = code(&app, &secret, 0);
    let (a, b) = tokio::join!(
        second_step(&app, &first, &c),
        second_step(&app, &second, &c)
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{} / {}", a.body, b.body);
    let sessions = app
        .count(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&me.id],
        )
        .await;
    // The sign-up session, and one from each race.
    assert_eq!(sessions, 3);
}

#[tokio::test]
async fn guessing_to_turn_it_off_is_rate_limited_and_it_is_per_account() {
    let app = TestApp::spawn().await;
    let me = app.signup("Nila", "patient").await;
    let someone = app.signup("Omar", "patient").await;
    let secret = turn_on(&app, &me).await;
    let right = code(&app, &secret, 1);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut refused = 0;
    let mut limited = false;
    for _ in 0..12 {
        let r = app
            .post(
                "/protected/user/totp/disable",
                &me.cookie,
                json!({ "code": wrong }),
            )
            .await;
        match r.status.as_u16() {
            403 => refused += 1,
            429 => {
                r.expect(429, "RATE_LIMITED");
                limited = true;
                break;
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert!(limited, "guesses were never limited");
    // Set-up and turn-on counted too: ten attempts in all.
    assert_eq!(refused, 8);
    // Once limited, even the right code waits.
    app.post(
        "/protected/user/totp/disable",
        &me.cookie,
        json!({ "code": right }),
    )
    .await
    .expect(429, "RATE_LIMITED");
    // Another account is not affected by this one's limit, and cannot touch its second factor.
    app.get("/protected/user/totp", &someone.cookie)
        .await
        .expect(200, "");
    app.post(
        "/protected/user/totp/disable",
        &someone.cookie,
        json!({ "code": right }),
    )
    .await
    .expect(409, "TOTP_NOT_ENABLED");
    app.clock().advance(Duration::from_secs(15 * 60 + 1));
    app.post(
        "/protected/user/totp/disable",
        &me.cookie,
        json!({"code": code(&app, &secret, 0)}),
    )
    .await
    .expect(200, "");
}

#[tokio::test]
async fn every_totp_route_needs_a_session_and_erasing_the_account_removes_the_secret() {
    let app = TestApp::spawn().await;
    app.get("/protected/user/totp", "")
        .await
        .expect(401, "UNAUTHENTICATED");
    for path in ["/protected/user/totp/setup", "/protected/user/totp/sms"] {
        app.post_empty(path, "")
            .await
            .expect(401, "UNAUTHENTICATED");
    }
    for path in [
        "/protected/user/totp/enable",
        "/protected/user/totp/disable",
    ] {
        app.post(path, "", json!({"code": "123456"}))
            .await
            .expect(401, "UNAUTHENTICATED");
    }
    let me = app.signup("Priya", "patient").await;
    turn_on(&app, &me).await;
    app.post_empty("/protected/user/deleteProfile", &me.cookie)
        .await
        .expect(200, "");
    let left = app
        .count(
            "SELECT COUNT(*) FROM user_totp WHERE user_id = $1",
            &[&me.id],
        )
        .await;
    assert_eq!(left, 0);
    // The phone signs up again as a new account, with one step.
    app.clock().advance(Duration::from_secs(61));
    let again = app.signup_phone(&me.phone, "Priya", "patient").await;
    let r = app.get("/protected/user/totp", &again.cookie).await;
    assert_eq!(r.data()["enabled"], false);
}

/// Turning the second step on needs a sign-in from the last 10 minutes: an old session (a
/// stolen cookie, say) cannot lock the owner out by turning it on.
#[tokio::test]
async fn turning_it_on_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let me = app.signup("Meera Iyer", "patient").await;
    // Kept alive (within the idle timeout) but signed into 11 minutes ago.
    for _ in 0..11 {
        app.clock().advance(Duration::from_secs(60));
        app.get("/protected/user/sessionDetail", &me.cookie)
            .await
            .expect(200, "");
    }
    let r = app
        .post_empty("/protected/user/totp/setup", &me.cookie)
        .await;
    r.expect(403, "REAUTH_REQUIRED");
    // A setup made while the sign-in was recent cannot be finished once it is not.
    let fresh = app.signin(&me.phone).await;
    let r = app.post_empty("/protected/user/totp/setup", &fresh).await;
    r.expect(200, "");
    let secret = base32_decode(r.data()["secret"].as_str().unwrap()).unwrap();
    let sms = app.last_code(&me.phone).await;
    app.clock().advance(Duration::from_secs(9 * 60));
    app.get("/protected/user/sessionDetail", &fresh)
        .await
        .expect(200, "");
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post(
            "/protected/user/totp/enable",
            &fresh,
            json!({"code": code(&app, &secret, 0), "sms_code": sms}),
        )
        .await;
    r.expect(403, "REAUTH_REQUIRED");
    let r = app.get("/protected/user/totp", &fresh).await;
    assert_eq!(r.data()["enabled"], false);
    // Signed in again: it goes on.
    let again = app.signin(&me.phone).await;
    let r = app.post_empty("/protected/user/totp/setup", &again).await;
    r.expect(200, "");
    let secret = base32_decode(r.data()["secret"].as_str().unwrap()).unwrap();
    let sms = app.last_code(&me.phone).await;
    app.post(
        "/protected/user/totp/enable",
        &again,
        json!({"code": code(&app, &secret, 0), "sms_code": sms}),
    )
    .await
    .expect(200, "");
}

/// A sign-in that reaches its decision while turn-on is committing waits for it and asks for
/// the second step, instead of making a session the turn-on's sign-out of other devices misses
/// (PostgreSQL: the sign-in read the account's row without waiting).
#[tokio::test]
async fn a_sign_in_racing_turn_on_asks_for_the_second_step() {
    let app = TestApp::spawn().await;
    let me = app.signup("Meera Iyer", "patient").await;
    let r = app
        .post_empty("/protected/user/totp/setup", &me.cookie)
        .await;
    r.expect(200, "");
    app.clock().advance(Duration::from_secs(61));
    let (id, otp) = app.send_code("/auth/signin", &me.phone).await;
    // Turn-on's transaction, held open: enabled, then every other session signed out.
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("UPDATE user_totp SET enabled_at = $2 WHERE user_id = $1")
        .bind(&me.id)
        .bind(app.clock().now())
        .execute(&mut *tx)
        .await
        .unwrap();
    let verify = format!("/auth/signin/verify/{id}");
    let verifying = app.post(&verify, "", json!({ "otp": otp }));
    let turning_on = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(&me.id)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    let (r, ()) = tokio::join!(verifying, turning_on);
    r.expect(200, "");
    assert_eq!(r.data()["success"], false, "{}", r.body);
    assert!(r.cookie.is_none(), "no session without the second step");
    assert_eq!(r.data()["second_factor"]["method"], "totp");
    let n = app
        .count(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&me.id],
        )
        .await;
    assert_eq!(n, 0);
}

/// Turning the second step on also takes a code sent by SMS to the account's phone, so a session
/// used by someone else (who has the cookie, not the phone) cannot turn it on with an
/// authenticator of their own and lock the owner out.
#[tokio::test]
async fn turning_it_on_takes_the_code_sent_to_the_phone() {
    let app = TestApp::spawn().await;
    let me = app.signup("Meera Iyer", "patient").await;
    let sent_before = app.sms().await.len();
    let r = app
        .post_empty("/protected/user/totp/setup", &me.cookie)
        .await;
    r.expect(200, "");
    let secret = base32_decode(r.data()["secret"].as_str().unwrap()).unwrap();
    let sms = app.sms().await;
    assert_eq!(sms.len(), sent_before + 1, "one SMS for the set-up");
    assert_eq!(sms.last().unwrap()["to"], me.phone.as_str());
    let text = sms.last().unwrap()["body"].as_str().unwrap();
    assert!(
        text.contains("to turn on two-step sign-in") && text.contains("sign out everywhere"),
        "the SMS says what its code is for: {text}"
    );
    let first = app.last_code(&me.phone).await;
    let shown = r.data()["sms"]["sent_to"].as_str().unwrap();
    assert!(shown.ends_with(&me.phone[me.phone.len() - 4..]), "{shown}");
    assert!(!shown.contains(&me.phone[3..me.phone.len() - 4]), "{shown}");
    assert!(r.data()["sms"]["expires_at"].is_string());
    let enable = |totp: String, sms: &str| {
        app.post(
            "/protected/user/totp/enable",
            &me.cookie,
            json!({"code": totp, "sms_code": sms}),
        )
    };
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };

    // Without the SMS code the authenticator's code is not enough.
    let r = app
        .post(
            "/protected/user/totp/enable",
            &me.cookie,
            json!({"code": code(&app, &secret, 0)}),
        )
        .await;
    r.expect(422, "VALIDATION_FAILED");
    let r = enable(code(&app, &secret, 0), wrong).await;
    r.expect(403, "OTP_INVALID");
    assert_eq!(r.body["error"]["details"]["field"], "sms_code");
    assert_eq!(r.body["error"]["details"]["attempts_left"], 4);
    let r = app.get("/protected/user/totp", &me.cookie).await;
    assert_eq!(r.data()["enabled"], false);

    // A new code replaces the first; the resend keeps the 60 s cooldown.
    app.post_empty("/protected/user/totp/sms", &me.cookie)
        .await
        .expect(429, "OTP_COOLDOWN");
    app.clock().advance(Duration::from_secs(61));
    let r = app.post_empty("/protected/user/totp/sms", &me.cookie).await;
    r.expect(200, "");
    assert_eq!(r.data()["sent_to"], shown);
    let second = app.last_code(&me.phone).await;
    // The count starts again with the new code.
    let mut left = 5;
    if second != first {
        let r = enable(code(&app, &secret, 0), &first).await;
        r.expect(403, "OTP_INVALID");
        left -= 1;
        assert_eq!(r.body["error"]["details"]["attempts_left"], left);
    }
    // Wrong until the code dies: then even the right one is refused, and the phone is not
    // backed off for sign-in (the owner can still sign in).
    while left > 1 {
        let r = enable(code(&app, &secret, 0), wrong).await;
        r.expect(403, "OTP_INVALID");
        left -= 1;
        assert_eq!(r.body["error"]["details"]["attempts_left"], left);
    }
    let r = enable(code(&app, &secret, 0), wrong).await;
    r.expect(410, "OTP_DEAD");
    enable(code(&app, &secret, 0), &second)
        .await
        .expect(410, "OTP_DEAD");
    app.clock().advance(Duration::from_secs(61));
    app.post("/auth/signin", "", json!({"phone": me.phone}))
        .await
        .expect(200, "");

    let r = app.get("/protected/user/totp", &me.cookie).await;
    assert_eq!(r.data()["enabled"], false);
}

/// An SMS code past its 5 minutes is refused; a resent one turns the second step on.
#[tokio::test]
async fn an_expired_sms_code_is_refused_and_a_resent_one_works() {
    let app = TestApp::spawn().await;
    let me = app.signup("Meera Iyer", "patient").await;
    let r = app
        .post_empty("/protected/user/totp/setup", &me.cookie)
        .await;
    r.expect(200, "");
    let secret = base32_decode(r.data()["secret"].as_str().unwrap()).unwrap();
    let late = app.last_code(&me.phone).await;
    app.clock().advance(Duration::from_secs(5 * 60 + 1));
    let enable = |sms: String| {
        app.post(
            "/protected/user/totp/enable",
            &me.cookie,
            json!({"code": code(&app, &secret, 0), "sms_code": sms}),
        )
    };
    enable(late.clone()).await.expect(410, "OTP_EXPIRED");
    app.post_empty("/protected/user/totp/sms", &me.cookie)
        .await
        .expect(200, "");
    let fresh = app.last_code(&me.phone).await;
    let r = enable(fresh).await;
    r.expect(200, "");
    assert_eq!(r.data()["enabled"], true);
}

/// The resend route needs a set-up waiting, and refuses once the second step is on.
#[tokio::test]
async fn the_sms_code_is_resent_only_for_a_waiting_set_up() {
    let app = TestApp::spawn().await;
    let me = app.signup("Meera Iyer", "patient").await;
    app.clock().advance(Duration::from_secs(61));
    app.post_empty("/protected/user/totp/sms", &me.cookie)
        .await
        .expect(404, "NOT_FOUND");
    turn_on(&app, &me).await;
    app.clock().advance(Duration::from_secs(61));
    app.post_empty("/protected/user/totp/sms", &me.cookie)
        .await
        .expect(409, "TOTP_ALREADY_ENABLED");
}

/// Device cookies (`auth::device`) in two-step sign-in: a stranger backing the phone off does
/// not stop the owner's browser from setting the second step up (its SMS comes from the
/// browser's own lane), and a second step that dies of wrong codes in that browser backs off
/// its lane, not the phone's.
#[tokio::test]
async fn the_second_step_counts_in_the_browsers_own_lane() {
    let app = TestApp::spawn().await;
    let phone = common::random_phone();
    let r = app.signup_answer(&phone, "Meera", "patient").await;
    let session = r.cookie.clone().unwrap();
    let (device, _) = r.device_cookie().expect("device cookie");
    let both = format!("{session}; {device}");

    // A stranger kills a sign-in code: the phone's lane backs off.
    app.clock().advance(Duration::from_secs(61));
    let (id, otp) = app.send_code("/auth/signin", &phone).await;
    let wrong = format!("{:06}", (otp.parse::<u32>().unwrap() + 1) % 1_000_000);
    for _ in 0..5 {
        app.post(
            &format!("/auth/signin/verify/{id}"),
            "",
            json!({"otp": wrong}),
        )
        .await;
    }
    app.post_empty("/protected/user/totp/setup", &session)
        .await
        .expect(429, "OTP_BACKOFF");
    let r = app.post_empty("/protected/user/totp/setup", &both).await;
    r.expect(200, "");
    let secret = base32_decode(r.data()["secret"].as_str().unwrap()).unwrap();
    let sms = app.last_code(&phone).await;
    app.post(
        "/protected/user/totp/enable",
        &session,
        json!({"code": code(&app, &secret, 0), "sms_code": sms}),
    )
    .await
    .expect(200, "");

    // The owner's browser signs in, and its second step dies of wrong codes.
    let step = to_second_step_from(&app, &phone, &device).await;
    let right = code(&app, &secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..4 {
        second_step(&app, &step, wrong)
            .await
            .expect(401, "TOTP_INVALID");
    }
    second_step(&app, &step, wrong)
        .await
        .expect(410, "TOTP_DEAD");
    // That browser's lane backs off; the phone's (its back-off long over) does not.
    app.post("/auth/signin", &device, json!({"phone": phone}))
        .await
        .expect(429, "OTP_BACKOFF");
    app.post("/auth/signin", "", json!({"phone": phone}))
        .await
        .expect(200, "");
}
