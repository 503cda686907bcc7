//! Sign-up, sign-in and sessions over HTTP: the happy paths and every refusal.

mod common;

use common::{random_phone, TestApp};
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
    assert!(app.sms().iter().all(|m| m["to"] != unknown_phone.as_str()));
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
