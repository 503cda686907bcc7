//! Users, doctors and connections over HTTP, with two patients and two doctors so every route is
//! also tried by the wrong person (who must get 403 or 404 and never another user's data).

mod common;

use auravita::users::admin::{self, DoctorRef, Verification};
use common::{random_phone, Resp, TestApp, User};
use serde_json::{json, Value};
use std::time::Duration;

struct Cast {
    p1: User,
    p2: User,
    d1: User,
    d2: User,
}

async fn cast(app: &TestApp) -> Cast {
    Cast {
        p1: app.signup("Asha Rao", "patient").await,
        p2: app.signup("Bilal Khan", "patient").await,
        d1: app.signup("Dr. Meera Iyer", "doctor").await,
        d2: app.signup("Dr. Vikram Shah", "doctor").await,
    }
}

async fn request(app: &TestApp, from: &User, to: &str) -> Resp {
    app.post_empty(
        &format!("/protected/user/connectionRequest/{to}"),
        &from.cookie,
    )
    .await
}

async fn requests_of(app: &TestApp, u: &User) -> Value {
    let r = app
        .get("/protected/user/getConnectionRequests", &u.cookie)
        .await;
    r.expect(200, "");
    r.data().clone()
}

async fn connections_of(app: &TestApp, u: &User) -> Vec<Value> {
    let r = app.get("/protected/user/connections", &u.cookie).await;
    r.expect(200, "");
    r.data()["connections"].as_array().unwrap().clone()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_route_needs_a_session() {
    let app = TestApp::spawn().await;
    for path in [
        "/protected/user/sessionDetail",
        "/protected/user/getConnectionRequests",
        "/protected/user/connections",
        "/protected/user/sessions",
        "/protected/user/searchDoctorByName?name=a",
        "/protected/user/searchDoctorByNumber?phone=%2B919876543210",
    ] {
        app.get(path, "").await.expect(401, "UNAUTHENTICATED");
    }
    for path in [
        "/protected/user/deleteProfile",
        "/protected/user/connectionRequest/x",
        "/protected/user/acceptConnectionRequest/x",
        "/protected/user/rejectConnectionRequest/x",
        "/protected/user/deletePendingRequest/x",
        "/protected/user/deleteConnection/x",
        "/protected/user/revokeSession/x",
        "/protected/user/signoutEverywhere",
    ] {
        app.post_empty(path, "")
            .await
            .expect(401, "UNAUTHENTICATED");
    }
    app.post("/protected/user/updateProfile", "", json!({"name": "x"}))
        .await
        .expect(401, "UNAUTHENTICATED");
    app.post(
        "/protected/user/createPatient",
        "",
        json!({"name": "x", "phone": random_phone()}),
    )
    .await
    .expect(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn connection_requests_follow_the_rules() {
    let app = TestApp::spawn().await;
    let Cast { p1, p2, d1, d2 } = cast(&app).await;

    // Only patients ask, and only doctors can be asked.
    request(&app, &d2, &d1.id).await.expect(403, "WRONG_ROLE");
    request(&app, &p1, &p2.id).await.expect(404, "NOT_FOUND");
    request(&app, &p1, "no-such-user")
        .await
        .expect(404, "NOT_FOUND");

    // A note is optional; its size and the body's type are checked.
    let long = "x".repeat(201);
    app.post(
        &format!("/protected/user/connectionRequest/{}", d1.id),
        &p1.cookie,
        json!({"note": long}),
    )
    .await
    .expect(422, "VALIDATION_FAILED");
    let r = app
        .http
        .post(app.url(&format!("/protected/user/connectionRequest/{}", d1.id)))
        .header("cookie", &p1.cookie)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    Resp::from(r).await.expect(415, "UNSUPPORTED_MEDIA_TYPE");
    let r = app
        .post(
            &format!("/protected/user/connectionRequest/{}", d1.id),
            &p1.cookie,
            json!({"note": "knee pain since May"}),
        )
        .await;
    r.expect(201, "");
    let req1 = r.data()["request_id"].as_str().unwrap().to_string();
    assert_eq!(r.data()["doctor"]["id"], d1.id.as_str());
    assert_eq!(r.data()["doctor"]["verified"], false);
    // A second pending request to the same doctor is a conflict.
    request(&app, &p1, &d1.id)
        .await
        .expect(409, "REQUEST_PENDING");
    // No body at all is fine.
    let r = request(&app, &p2, &d1.id).await;
    r.expect(201, "");
    let req2 = r.data()["request_id"].as_str().unwrap().to_string();

    // Each side sees only its own requests, with the peer's name, verification, note and status.
    let d1_reqs = requests_of(&app, &d1).await;
    assert_eq!(d1_reqs["outgoing"].as_array().unwrap().len(), 0);
    let incoming = d1_reqs["incoming"].as_array().unwrap();
    assert_eq!(incoming.len(), 2);
    let first = incoming.iter().find(|r| r["id"] == req1.as_str()).unwrap();
    assert_eq!(first["peer"]["name"], "Asha Rao");
    assert_eq!(first["peer"]["role"], "patient");
    assert_eq!(first["note"], "knee pain since May");
    assert_eq!(first["status"], "pending");
    assert!(first["created_at"].is_string());
    let p1_reqs = requests_of(&app, &p1).await;
    assert_eq!(ids(&p1_reqs["outgoing"]), vec![req1.clone()]);
    assert_eq!(p1_reqs["outgoing"][0]["peer"]["name"], "Dr. Meera Iyer");
    assert_eq!(p1_reqs["outgoing"][0]["peer"]["verified"], false);
    assert_eq!(p1_reqs["incoming"].as_array().unwrap().len(), 0);
    let d2_reqs = requests_of(&app, &d2).await;
    assert_eq!(d2_reqs["incoming"].as_array().unwrap().len(), 0);
    assert_eq!(
        ids(&requests_of(&app, &p2).await["outgoing"]),
        vec![req2.clone()]
    );

    // Only the addressed doctor decides; only the sender withdraws.
    let accept = |id: &str| format!("/protected/user/acceptConnectionRequest/{id}");
    let reject = |id: &str| format!("/protected/user/rejectConnectionRequest/{id}");
    let withdraw = |id: &str| format!("/protected/user/deletePendingRequest/{id}");
    app.post_empty(&accept(&req1), &p1.cookie)
        .await
        .expect(403, "WRONG_ROLE");
    app.post_empty(&reject(&req1), &p1.cookie)
        .await
        .expect(403, "WRONG_ROLE");
    app.post_empty(&accept(&req1), &d2.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&reject(&req1), &d2.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&accept("nope"), &d1.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&withdraw(&req1), &p2.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&withdraw(&req1), &d1.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&withdraw(&req1), &d2.cookie)
        .await
        .expect(404, "NOT_FOUND");

    // Accepting creates the connection, for both sides.
    let r = app.post_empty(&accept(&req1), &d1.cookie).await;
    r.expect(200, "");
    let conn = r.data()["connection"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.data()["connection"]["peer"]["id"], p1.id.as_str());
    app.post_empty(&accept(&req1), &d1.cookie)
        .await
        .expect(409, "REQUEST_NOT_PENDING");
    app.post_empty(&reject(&req1), &d1.cookie)
        .await
        .expect(409, "REQUEST_NOT_PENDING");
    app.post_empty(&withdraw(&req1), &p1.cookie)
        .await
        .expect(409, "REQUEST_NOT_PENDING");
    request(&app, &p1, &d1.id)
        .await
        .expect(409, "ALREADY_CONNECTED");
    assert_eq!(
        requests_of(&app, &p1).await["outgoing"][0]["status"],
        "accepted"
    );

    let p1_conns = connections_of(&app, &p1).await;
    assert_eq!(p1_conns.len(), 1);
    assert_eq!(p1_conns[0]["id"], conn.as_str());
    assert_eq!(p1_conns[0]["peer"]["id"], d1.id.as_str());
    assert_eq!(p1_conns[0]["peer"]["verified"], false);
    assert_eq!(p1_conns[0]["peer_phone"], d1.phone.as_str());
    let d1_conns = connections_of(&app, &d1).await;
    assert_eq!(d1_conns.len(), 1);
    assert_eq!(d1_conns[0]["peer"]["id"], p1.id.as_str());
    assert!(connections_of(&app, &p2).await.is_empty());
    assert!(connections_of(&app, &d2).await.is_empty());
    let r = app.get("/protected/user/sessionDetail", &p1.cookie).await;
    r.expect(200, "");
    assert_eq!(r.data()["connections"][0]["id"], conn.as_str());
    let r = app.get("/protected/user/sessionDetail", &p2.cookie).await;
    assert_eq!(r.data()["connections"].as_array().unwrap().len(), 0);

    // Rejecting; after a rejection the patient may ask again, and withdraw.
    let r = app.post_empty(&reject(&req2), &d1.cookie).await;
    r.expect(200, "");
    assert_eq!(
        requests_of(&app, &p2).await["outgoing"][0]["status"],
        "rejected"
    );
    app.post_empty(&accept(&req2), &d1.cookie)
        .await
        .expect(409, "REQUEST_NOT_PENDING");
    assert!(connections_of(&app, &p2).await.is_empty());
    let r = request(&app, &p2, &d1.id).await;
    r.expect(201, "");
    let req3 = r.data()["request_id"].as_str().unwrap().to_string();
    app.post_empty(&withdraw(&req3), &p2.cookie)
        .await
        .expect(200, "");
    app.post_empty(&withdraw(&req3), &p2.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&accept(&req3), &d1.cookie)
        .await
        .expect(404, "NOT_FOUND");
    assert!(!ids(&requests_of(&app, &d1).await["incoming"]).contains(&req3));

    // Ending a connection: only its two sides may, and it goes for both.
    let end = format!("/protected/user/deleteConnection/{conn}");
    app.post_empty(&end, &p2.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&end, &d2.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty(&end, &d1.cookie).await.expect(200, "");
    assert!(connections_of(&app, &p1).await.is_empty());
    assert!(connections_of(&app, &d1).await.is_empty());
    app.post_empty(&end, &p1.cookie)
        .await
        .expect(404, "NOT_FOUND");
    // Once ended, the patient may ask again; this time the patient ends it.
    let r = request(&app, &p1, &d1.id).await;
    r.expect(201, "");
    let req4 = r.data()["request_id"].as_str().unwrap().to_string();
    let r = app.post_empty(&accept(&req4), &d1.cookie).await;
    r.expect(200, "");
    let conn2 = r.data()["connection"]["id"].as_str().unwrap().to_string();
    app.post_empty(
        &format!("/protected/user/deleteConnection/{conn2}"),
        &p1.cookie,
    )
    .await
    .expect(200, "");
    assert!(connections_of(&app, &d1).await.is_empty());
}

#[tokio::test]
async fn racing_decisions_end_in_exactly_one_state() {
    let app = TestApp::spawn().await;
    let Cast { p1, p2, d1, .. } = cast(&app).await;
    for round in 0..4 {
        let patient = if round % 2 == 0 { &p1 } else { &p2 };
        let r = request(&app, patient, &d1.id).await;
        r.expect(201, "");
        let id = r.data()["request_id"].as_str().unwrap().to_string();
        let accept = format!("/protected/user/acceptConnectionRequest/{id}");
        let reject = format!("/protected/user/rejectConnectionRequest/{id}");
        let (a, b) = if round < 2 {
            tokio::join!(
                app.post_empty(&accept, &d1.cookie),
                app.post_empty(&accept, &d1.cookie)
            )
        } else {
            tokio::join!(
                app.post_empty(&accept, &d1.cookie),
                app.post_empty(&reject, &d1.cookie)
            )
        };
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: {} / {}",
            a.body,
            b.body
        );
        let loser = if a.status.as_u16() == 409 { &a } else { &b };
        assert_eq!(loser.code(), "REQUEST_NOT_PENDING");
        let accepted = round < 2 || a.status.as_u16() == 200;
        let status = &requests_of(&app, patient).await["outgoing"][0];
        assert_eq!(status["id"], id.as_str());
        assert_eq!(
            status["status"],
            if accepted { "accepted" } else { "rejected" }
        );
        let conns = connections_of(&app, patient).await;
        assert_eq!(conns.len(), usize::from(accepted), "round {round}");
        for c in conns {
            app.post_empty(
                &format!(
                    "/protected/user/deleteConnection/{}",
                    c["id"].as_str().unwrap()
                ),
                &d1.cookie,
            )
            .await
            .expect(200, "");
        }
    }
}

#[tokio::test]
async fn doctor_search_by_name_and_number() {
    let app = TestApp::spawn().await;
    let Cast { p1, d1, d2, .. } = cast(&app).await;
    let d3 = app.signup("Dr. Iyer_Menon 100%", "doctor").await;
    let _patient_named_iyer = app.signup("Iyer Patient", "patient").await;
    let search = |q: &str| format!("/protected/user/searchDoctorByName?{q}");

    // Case-insensitive substring, doctors only, alphabetical.
    let r = app.get(&search("name=IYER"), &p1.cookie).await;
    r.expect(200, "");
    assert_eq!(
        ids(&r.data()["doctors"]),
        vec![d3.id.clone(), d1.id.clone()]
    );
    assert_eq!(r.data()["doctors"][1]["verified"], false);
    assert_eq!(r.data()["has_more"], false);
    let r = app.get(&search("name=vikram"), &d1.cookie).await;
    assert_eq!(ids(&r.data()["doctors"]), vec![d2.id.clone()]);
    // LIKE's wildcards are matched literally.
    let r = app.get(&search("name=%25"), &p1.cookie).await;
    assert_eq!(ids(&r.data()["doctors"]), vec![d3.id.clone()]);
    let r = app.get(&search("name=r_m"), &p1.cookie).await;
    assert_eq!(ids(&r.data()["doctors"]), vec![d3.id.clone()]);
    let r = app.get(&search("name=zzz"), &p1.cookie).await;
    assert_eq!(r.data()["doctors"].as_array().unwrap().len(), 0);

    // Paged.
    let r = app.get(&search("name=dr.&limit=2"), &p1.cookie).await;
    assert_eq!(r.data()["doctors"].as_array().unwrap().len(), 2);
    assert_eq!(r.data()["has_more"], true);
    let first_page = ids(&r.data()["doctors"]);
    let r = app
        .get(&search("name=dr.&limit=2&page=2"), &p1.cookie)
        .await;
    assert_eq!(r.data()["has_more"], false);
    let second_page = ids(&r.data()["doctors"]);
    assert_eq!(second_page.len(), 1);
    assert!(!first_page.contains(&second_page[0]));

    // Refusals.
    for (q, field) in [
        ("name=", "name"),
        ("name=%20%20", "name"),
        ("limit=5", "name"),
        ("name=a&limit=51", "limit"),
        ("name=a&limit=0", "limit"),
        ("name=a&limit=ten", "limit"),
        ("name=a&page=0", "page"),
    ] {
        let r = app.get(&search(q), &p1.cookie).await;
        r.expect(422, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field, "{q}");
    }

    // By number: doctors only.
    let by_number = |p: &str| {
        format!(
            "/protected/user/searchDoctorByNumber?phone={}",
            p.replace('+', "%2B")
        )
    };
    let r = app.get(&by_number(&d2.phone), &p1.cookie).await;
    r.expect(200, "");
    assert_eq!(r.data()["doctor"]["id"], d2.id.as_str());
    assert_eq!(r.data()["doctor"]["name"], "Dr. Vikram Shah");
    assert_eq!(r.data()["doctor"]["verified"], false);
    app.get(&by_number(&p1.phone), &d1.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.get(&by_number(&random_phone()), &p1.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.get(&by_number("12345"), &p1.cookie)
        .await
        .expect(422, "VALIDATION_FAILED");
    app.get("/protected/user/searchDoctorByNumber", &p1.cookie)
        .await
        .expect(422, "VALIDATION_FAILED");

    // Verification by the operator shows everywhere a doctor is seen. It pins the registration
    // number the operator checked: none on file, or another one, verifies nothing.
    let state = &app.state;
    let verify = |phone: String, number: &'static str| async move {
        admin::set_doctor_verified(
            &state.db,
            DoctorRef::Phone(&phone),
            Verification::Verify {
                registration_number: number,
            },
        )
        .await
    };
    let err = verify(d1.phone.clone(), "KMC-12345").await.unwrap_err();
    assert!(err.to_string().contains("no registration number"), "{err}");
    app.post(
        "/protected/user/updateProfile",
        &d1.cookie,
        json!({"registration_number": "KMC-12345"}),
    )
    .await
    .expect(200, "");
    let err = verify(d1.phone.clone(), "KMC-99999").await.unwrap_err();
    assert!(err.to_string().contains("not KMC-99999"), "{err}");
    let r = app.get(&search("name=meera"), &p1.cookie).await;
    assert_eq!(r.data()["doctors"][0]["verified"], false);
    let doctor = verify(d1.phone.clone(), " kmc-12345 ").await.unwrap();
    assert_eq!(doctor.name, "Dr. Meera Iyer");
    assert_eq!(doctor.registration_number.as_deref(), Some("KMC-12345"));
    assert!(verify(p1.phone.clone(), "KMC-12345").await.is_err());
    assert!(verify(random_phone(), "KMC-12345").await.is_err());
    assert!(verify("not a phone".into(), "KMC-12345").await.is_err());
    let r = app.get(&search("name=meera"), &p1.cookie).await;
    assert_eq!(r.data()["doctors"][0]["verified"], true);
    assert_eq!(
        app.get(&by_number(&d1.phone), &p1.cookie).await.data()["doctor"]["verified"],
        true
    );
    let r = request(&app, &p1, &d1.id).await;
    r.expect(201, "");
    assert_eq!(r.data()["doctor"]["verified"], true);
    assert_eq!(
        requests_of(&app, &p1).await["outgoing"][0]["peer"]["verified"],
        true
    );
    let id = r.data()["request_id"].as_str().unwrap().to_string();
    app.post_empty(
        &format!("/protected/user/acceptConnectionRequest/{id}"),
        &d1.cookie,
    )
    .await
    .expect(200, "");
    assert_eq!(connections_of(&app, &p1).await[0]["peer"]["verified"], true);
    let me = app.get("/protected/user/sessionDetail", &d1.cookie).await;
    assert_eq!(me.data()["profile"]["verified"], true);
    admin::set_doctor_verified(
        &state.db,
        DoctorRef::Phone(&d1.phone),
        Verification::Unverify,
    )
    .await
    .unwrap();
    assert_eq!(
        connections_of(&app, &p1).await[0]["peer"]["verified"],
        false
    );
}

#[tokio::test]
async fn profiles_are_updated_with_field_errors() {
    let app = TestApp::spawn().await;
    let Cast { p1, d1, .. } = cast(&app).await;
    let update = |u: &User, body: Value| {
        let cookie = u.cookie.clone();
        let app = &app;
        async move {
            app.post("/protected/user/updateProfile", &cookie, body)
                .await
        }
    };

    let r = update(&p1, json!({"name": "  Asha R. Rao "})).await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["name"], "Asha R. Rao");
    for (who, body, field) in [
        (
            &p1,
            json!({"specialization": "Cardiology"}),
            "specialization",
        ),
        (
            &p1,
            json!({"years_of_experience": 3}),
            "years_of_experience",
        ),
        (&p1, json!({"name": ""}), "name"),
        // NUL cannot be stored on PostgreSQL: refused on both databases, by field.
        (&p1, json!({"name": "Asha\u{0}Rao"}), "name"),
        (
            &d1,
            json!({"specialization": "Cardio\u{0}"}),
            "specialization",
        ),
        (&d1, json!({"name": "x".repeat(101)}), "name"),
        (
            &d1,
            json!({"years_of_experience": 81}),
            "years_of_experience",
        ),
        (
            &d1,
            json!({"years_of_experience": -1}),
            "years_of_experience",
        ),
        (
            &d1,
            json!({"qualification": "q".repeat(101)}),
            "qualification",
        ),
        (
            &d1,
            json!({"registration_number": "KMC<script>"}),
            "registration_number",
        ),
        (
            &d1,
            json!({"years_of_experience": "ten"}),
            "years_of_experience",
        ),
        (&d1, json!({"nickname": "x"}), "nickname"),
    ] {
        let r = update(who, body.clone()).await;
        r.expect(422, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field, "{body}");
    }

    let r = update(
        &d1,
        json!({"name": "Dr. Meera K. Iyer", "specialization": "Orthopaedics", "qualification": "MBBS, MS",
               "registration_number": "KMC-12345", "years_of_experience": 12}),
    )
    .await;
    r.expect(200, "");
    let p = &r.data()["profile"];
    assert_eq!(p["specialization"], "Orthopaedics");
    assert_eq!(p["qualification"], "MBBS, MS");
    assert_eq!(p["registration_number"], "KMC-12345");
    assert_eq!(p["years_of_experience"], 12);
    // The new name is searchable; the other fields were kept when left out.
    let r = app
        .get(
            "/protected/user/searchDoctorByName?name=k.%20iyer",
            &p1.cookie,
        )
        .await;
    assert_eq!(r.data()["doctors"][0]["specialization"], "Orthopaedics");
    let r = update(&d1, json!({"qualification": ""})).await;
    assert_eq!(r.data()["profile"]["qualification"], Value::Null);
    assert_eq!(r.data()["profile"]["specialization"], "Orthopaedics");

    // A verified doctor who changes the registration number must be checked again.
    let r = update(&d1, json!({"registration_number": "KMC-12345"})).await;
    r.expect(200, "");
    let verified = || {
        admin::set_doctor_verified(
            &app.state.db,
            DoctorRef::Phone(&d1.phone),
            Verification::Verify {
                registration_number: "KMC-12345",
            },
        )
    };
    verified().await.unwrap();
    let r = update(
        &d1,
        json!({"registration_number": "KMC-12345", "years_of_experience": 13}),
    )
    .await;
    assert_eq!(r.data()["profile"]["verified"], true);
    let r = update(&d1, json!({"registration_number": "KMC-99999"})).await;
    assert_eq!(r.data()["profile"]["verified"], false);
    // So must one who changes the name (the same name sent again keeps the badge).
    update(&d1, json!({"registration_number": "KMC-12345"}))
        .await
        .expect(200, "");
    verified().await.unwrap();
    let same = r.data()["user"]["name"].as_str().unwrap().to_string();
    let r = update(&d1, json!({"name": same})).await;
    assert_eq!(r.data()["profile"]["verified"], true);
    let r = update(&d1, json!({"name": "Dr Devi Shetty"})).await;
    assert_eq!(r.data()["profile"]["verified"], false);
    let r = app
        .get("/protected/user/searchDoctorByName?name=shetty", &p1.cookie)
        .await;
    assert_eq!(r.data()["doctors"][0]["verified"], false);
    // Nobody else's profile changed.
    let r = app.get("/protected/user/sessionDetail", &p1.cookie).await;
    assert_eq!(r.data()["user"]["name"], "Asha R. Rao");
    assert_eq!(r.data()["profile"]["specialization"], Value::Null);
}

#[tokio::test]
async fn clinic_registered_patients_are_taken_over_by_their_phone() {
    let app = TestApp::spawn().await;
    let Cast { p1, d1, d2, .. } = cast(&app).await;
    let create = |u: &User, body: Value| {
        let cookie = u.cookie.clone();
        let app = &app;
        async move {
            app.post("/protected/user/createPatient", &cookie, body)
                .await
        }
    };
    let phone = random_phone();
    create(&p1, json!({"name": "Chitra", "phone": phone}))
        .await
        .expect(403, "WRONG_ROLE");
    let r = create(&d1, json!({"name": "", "phone": phone})).await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "name");
    let r = create(&d1, json!({"name": "Chitra", "phone": "98765"})).await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "phone");
    let r = create(&d1, json!({"name": "Chitra Nair", "phone": phone})).await;
    r.expect(201, "");
    let patient_id = r.data()["patient_id"].as_str().unwrap().to_string();
    assert_eq!(r.data()["connection"]["peer"]["id"], patient_id.as_str());
    assert_eq!(r.data()["connection"]["peer_phone"], phone.as_str());
    // A phone with an account: a conflict that says so, whoever registered it.
    let r = create(&d2, json!({"name": "Chitra", "phone": phone})).await;
    r.expect(409, "PHONE_ALREADY_REGISTERED");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already has an account"));
    create(&d2, json!({"name": "Asha", "phone": p1.phone}))
        .await
        .expect(409, "PHONE_ALREADY_REGISTERED");
    // The patient is already connected to that doctor (and to nobody else).
    let conns = connections_of(&app, &d1).await;
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["peer"]["name"], "Chitra Nair");
    assert!(connections_of(&app, &d2).await.is_empty());

    // Signing up as a patient takes the account over.
    let chitra = app.signup_phone(&phone, "Chitra N.", "patient").await;
    assert_eq!(chitra.id, patient_id, "no duplicate account");
    let r = app
        .get("/protected/user/sessionDetail", &chitra.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["phone_verified"], true);
    assert_eq!(r.data()["user"]["name"], "Chitra N.");
    assert_eq!(r.data()["connections"][0]["peer"]["id"], d1.id.as_str());
    // Claiming is not a sign-in to an account someone used: no "new sign-in" alert.
    assert_eq!(sign_in_alerts(&app, &chitra.cookie).await, 0);
    // Once taken over, the phone is an ordinary account: signing up again is a conflict.
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post(
            "/auth/signup",
            "",
            json!({"phone": phone, "name": "Someone", "role": "patient"}),
        )
        .await;
    r.expect(409, "PHONE_ALREADY_REGISTERED");

    // Signing in with a code also takes a clinic-registered account over.
    let phone2 = random_phone();
    let r = create(&d2, json!({"name": "Dev Patel", "phone": phone2})).await;
    r.expect(201, "");
    let dev_id = r.data()["patient_id"].as_str().unwrap().to_string();
    let cookie = app.signin(&phone2).await;
    let r = app.get("/protected/user/sessionDetail", &cookie).await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["id"], dev_id.as_str());
    assert_eq!(r.data()["user"]["phone_verified"], true);
    assert_eq!(r.data()["user"]["name"], "Dev Patel");
    assert_eq!(r.data()["connections"][0]["peer"]["id"], d2.id.as_str());
    assert_eq!(sign_in_alerts(&app, &cookie).await, 0);
    // The next sign-in is to an account in use: that one is announced.
    app.clock().advance(Duration::from_secs(61));
    let again = app.signin(&phone2).await;
    assert_eq!(sign_in_alerts(&app, &again).await, 1);
    app.clock().advance(Duration::from_secs(61));
    let r = app
        .post(
            "/auth/signup",
            "",
            json!({"phone": phone2, "name": "Dev", "role": "patient"}),
        )
        .await;
    r.expect(409, "PHONE_ALREADY_REGISTERED");
}

/// The phone's owner may be a doctor: signing up as one over a clinic record nobody claimed
/// replaces that record (its connections go, and the doctors who had it are told). A record
/// claimed between the sign-up's start and its code stays, and the sign-up is refused.
#[tokio::test]
async fn a_doctor_signs_up_over_an_unclaimed_clinic_record() {
    let app = TestApp::spawn().await;
    let Cast { d1, .. } = cast(&app).await;
    let phone = random_phone();
    let r = app
        .post(
            "/protected/user/createPatient",
            &d1.cookie,
            json!({"name": "Meera Iyer", "phone": phone}),
        )
        .await;
    r.expect(201, "");
    let record = r.data()["patient_id"].as_str().unwrap().to_string();
    assert_eq!(connections_of(&app, &d1).await.len(), 1);

    let meera = app.signup_phone(&phone, "Dr. Meera Iyer", "doctor").await;
    assert_ne!(meera.id, record, "a new account, not the patient record");
    let r = app
        .get("/protected/user/sessionDetail", &meera.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["role"], "doctor");
    assert_eq!(r.data()["user"]["phone"], phone.as_str());
    assert!(connections_of(&app, &meera).await.is_empty());
    // The record is gone, with its connection; the doctor who registered it is told.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE id = $1", &[&record])
            .await,
        0
    );
    assert!(connections_of(&app, &d1).await.is_empty());
    let l = app.get("/protected/notification/list", &d1.cookie).await;
    let told = &l.data()["notifications"][0];
    assert_eq!(told["kind"], "connection_ended", "{}", l.body);
    assert_eq!(told["data"]["by"], record.as_str());
    assert!(told["message"].as_str().unwrap().contains("Meera Iyer"));

    // Claimed meanwhile (a code sent to the phone replaces the sign-up's, so the claim is made
    // here as another instance would commit it): the sign-up is refused at its code, and the
    // account stays with its connection.
    let phone2 = random_phone();
    let r = app
        .post(
            "/protected/user/createPatient",
            &d1.cookie,
            json!({"name": "Ravi", "phone": phone2}),
        )
        .await;
    r.expect(201, "");
    let ravi = r.data()["patient_id"].as_str().unwrap().to_string();
    let r = app
        .post(
            "/auth/signup",
            "",
            json!({"phone": phone2, "name": "Dr. Ravi", "role": "doctor"}),
        )
        .await;
    r.expect(200, "");
    let pending = r.data()["id"].as_str().unwrap().to_string();
    sqlx::query("UPDATE users SET phone_verified = 1 WHERE id = $1")
        .bind(&ravi)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let r = app
        .post(
            &format!("/auth/signup/verify/{pending}"),
            "",
            json!({"otp": app.last_code(&phone2).await}),
        )
        .await;
    r.expect(409, "PHONE_ALREADY_REGISTERED");
    let q = "SELECT COUNT(*) FROM users WHERE id = $1 AND role = 'patient'";
    assert_eq!(app.count(q, &[&ravi]).await, 1);
    let q = "SELECT COUNT(*) FROM connections WHERE patient_id = $1";
    assert_eq!(app.count(q, &[&ravi]).await, 1);
}

/// How many "new sign-in" alerts the account behind `cookie` has.
async fn sign_in_alerts(app: &TestApp, cookie: &str) -> usize {
    let l = app.get("/protected/notification/list", cookie).await;
    l.expect(200, "");
    l.data()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "new_sign_in")
        .count()
}

async fn get_with_agent(app: &TestApp, path: &str, cookie: &str, agent: &str) -> Resp {
    let r = app
        .http
        .get(app.url(path))
        .header("cookie", cookie)
        .header("user-agent", agent)
        .send()
        .await
        .unwrap();
    Resp::from(r).await
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let app = TestApp::spawn().await;
    let Cast { p1, p2, .. } = cast(&app).await;
    app.clock().advance(Duration::from_secs(61));
    // A second session for p1, from a phone's browser.
    let r = app
        .http
        .post(app.url("/auth/signin"))
        .header("user-agent", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36")
        .json(&json!({"phone": p1.phone}))
        .send()
        .await
        .unwrap();
    let r = Resp::from(r).await;
    r.expect(200, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let r = app
        .http
        .post(app.url(&format!("/auth/signin/verify/{id}")))
        .header("user-agent", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36")
        .json(&json!({"otp": app.last_code(&p1.phone).await}))
        .send()
        .await
        .unwrap();
    let phone_cookie = Resp::from(r).await.cookie.unwrap();

    let r = get_with_agent(&app, "/protected/user/sessions", &p1.cookie, "curl/8.5.0").await;
    r.expect(200, "");
    let sessions = r.data()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["device"], "Chrome on Android");
    assert_eq!(other["ip"], "127.0.0.1");
    assert!(other["created_at"].is_string() && other["last_seen_at"].is_string());
    let other_id = other["id"].as_str().unwrap().to_string();
    let current_id = current[0]["id"].as_str().unwrap().to_string();

    // p2 sees only their own session and cannot end p1's.
    let r = app.get("/protected/user/sessions", &p2.cookie).await;
    let theirs = r.data()["sessions"].as_array().unwrap();
    assert_eq!(theirs.len(), 1);
    assert!(theirs
        .iter()
        .all(|s| s["id"] != other_id.as_str() && s["id"] != current_id.as_str()));
    app.post_empty(
        &format!("/protected/user/revokeSession/{other_id}"),
        &p2.cookie,
    )
    .await
    .expect(404, "NOT_FOUND");
    app.get("/protected/user/sessionDetail", &phone_cookie)
        .await
        .expect(200, "");

    // p1 ends the phone's session: it stops working at once.
    app.post_empty(
        &format!("/protected/user/revokeSession/{other_id}"),
        &p1.cookie,
    )
    .await
    .expect(200, "");
    app.get("/protected/user/sessionDetail", &phone_cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
    app.post_empty(
        &format!("/protected/user/revokeSession/{other_id}"),
        &p1.cookie,
    )
    .await
    .expect(404, "NOT_FOUND");
    app.get("/protected/user/sessionDetail", &p1.cookie)
        .await
        .expect(200, "");

    // Signing out everywhere ends every session of p1, and only p1's.
    app.clock().advance(Duration::from_secs(61));
    let another = app.signin(&p1.phone).await;
    let r = app
        .post_empty("/protected/user/signoutEverywhere", &p1.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["ended"], 2);
    app.get("/protected/user/sessionDetail", &p1.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
    app.get("/protected/user/sessionDetail", &another)
        .await
        .expect(401, "UNAUTHENTICATED");
    app.get("/protected/user/sessionDetail", &p2.cookie)
        .await
        .expect(200, "");
}

#[tokio::test]
async fn deleting_an_account_erases_it_everywhere() {
    let app = TestApp::spawn().await;
    let Cast { p1, p2, d1, d2 } = cast(&app).await;
    // d1 is connected to p1 and has a pending request from p2.
    let r = request(&app, &p1, &d1.id).await;
    let id = r.data()["request_id"].as_str().unwrap().to_string();
    app.post_empty(
        &format!("/protected/user/acceptConnectionRequest/{id}"),
        &d1.cookie,
    )
    .await
    .expect(200, "");
    request(&app, &p2, &d1.id).await.expect(201, "");
    request(&app, &p2, &d2.id).await.expect(201, "");
    app.clock().advance(Duration::from_secs(61));
    let second_session = app.signin(&d1.phone).await;

    let r = app
        .post_empty("/protected/user/deleteProfile", &d1.cookie)
        .await;
    r.expect(200, "");
    assert!(r
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Max-Age=0")));
    // Every session is dead at once.
    app.get("/protected/user/sessionDetail", &d1.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
    app.get("/protected/user/sessionDetail", &second_session)
        .await
        .expect(401, "UNAUTHENTICATED");
    // Gone from search and from every peer's lists.
    let r = app
        .get("/protected/user/searchDoctorByName?name=meera", &p1.cookie)
        .await;
    assert_eq!(r.data()["doctors"].as_array().unwrap().len(), 0);
    let by_number = format!(
        "/protected/user/searchDoctorByNumber?phone={}",
        d1.phone.replace('+', "%2B")
    );
    app.get(&by_number, &p1.cookie)
        .await
        .expect(404, "NOT_FOUND");
    assert!(connections_of(&app, &p1).await.is_empty());
    assert!(requests_of(&app, &p1).await["outgoing"]
        .as_array()
        .unwrap()
        .is_empty());
    let p2_out = requests_of(&app, &p2).await["outgoing"].clone();
    assert_eq!(p2_out.as_array().unwrap().len(), 1);
    assert_eq!(p2_out[0]["peer"]["id"], d2.id.as_str());
    request(&app, &p2, &d1.id).await.expect(404, "NOT_FOUND");

    // The durable record drives the purge, which finishes it.
    let row: (Option<i64>, i64) =
        sqlx::query_as("SELECT done_at, attempts FROM deleted_users WHERE user_id = $1")
            .bind(&d1.id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(row, (None, 0));
    assert_eq!(
        auravita::users::purge::run_once(&app.state).await.unwrap(),
        1
    );
    let row: (Option<i64>, i64) =
        sqlx::query_as("SELECT done_at, attempts FROM deleted_users WHERE user_id = $1")
            .bind(&d1.id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert!(row.0.is_some());
    assert_eq!(row.1, 1);
    assert_eq!(
        auravita::users::purge::run_once(&app.state).await.unwrap(),
        0
    );

    // The phone can sign up again, as a new account with nothing of the old one.
    app.clock().advance(Duration::from_secs(61));
    let again = app.signup_phone(&d1.phone, "Meera Again", "patient").await;
    assert_ne!(again.id, d1.id);
    let r = app
        .get("/protected/user/sessionDetail", &again.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["role"], "patient");
    assert!(r.data()["connections"].as_array().unwrap().is_empty());
    assert!(requests_of(&app, &again).await["outgoing"]
        .as_array()
        .unwrap()
        .is_empty());

    // A patient can leave too; their doctor's lists forget them.
    app.post_empty("/protected/user/deleteProfile", &p2.cookie)
        .await
        .expect(200, "");
    assert!(requests_of(&app, &d2).await["incoming"]
        .as_array()
        .unwrap()
        .is_empty());
    app.post_empty("/protected/user/deleteProfile", &p2.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn every_user_route_is_documented() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", "").await.body;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("sessionDetail", "get"),
        ("deleteProfile", "post"),
        ("connectionRequest/{doctor_id}", "post"),
        ("acceptConnectionRequest/{request_id}", "post"),
        ("rejectConnectionRequest/{request_id}", "post"),
        ("getConnectionRequests", "get"),
        ("deletePendingRequest/{request_id}", "post"),
        ("deleteConnection/{connection_id}", "post"),
        ("searchDoctorByName", "get"),
        ("searchDoctorByNumber", "get"),
        ("updateProfile", "post"),
        ("createPatient", "post"),
        ("connections", "get"),
        ("sessions", "get"),
        ("revokeSession/{id}", "post"),
        ("signoutEverywhere", "post"),
    ] {
        let op = &paths[&format!("/protected/user/{path}")][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(op["security"].is_array(), "{path} has no security");
        assert!(
            op["responses"]["401"].is_object(),
            "{path} does not document 401"
        );
    }
    let body = &paths["/protected/user/connectionRequest/{doctor_id}"]["post"]["requestBody"];
    assert_ne!(body["required"], true, "the note body is optional: {body}");
}

/// Search drives from the name's 3-character windows: they must follow every name change.
#[tokio::test]
async fn doctor_search_follows_names_through_their_windows() {
    let app = TestApp::spawn().await;
    let meera = app.signup("Meera Krishnan", "doctor").await;
    let _ravi = app.signup("Ravi Kumar", "doctor").await;
    let _kris = app.signup("Krishna Patel", "patient").await;
    let _ab = app.signup("Ab", "doctor").await;
    let asker = app.signup("Asha", "patient").await;
    let names = |r: &common::Resp| -> Vec<String> {
        r.data()["doctors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    let search = |q: &str| format!("/protected/user/searchDoctorByName?name={q}");

    let r = app.get(&search("KRISH"), &asker.cookie).await;
    r.expect(200, "");
    assert_eq!(
        names(&r),
        vec!["Meera Krishnan"],
        "patients are never found"
    );
    let r = app.get(&search("zzq"), &asker.cookie).await;
    assert!(names(&r).is_empty());
    let r = app.get(&search("ra"), &asker.cookie).await;
    assert_eq!(names(&r), vec!["Meera Krishnan", "Ravi Kumar"]);
    let r = app.get(&search("ab"), &asker.cookie).await;
    assert_eq!(
        names(&r),
        vec!["Ab"],
        "a name shorter than a window is still found"
    );
    let r = app.get(&search("i%20k"), &asker.cookie).await;
    assert_eq!(names(&r), vec!["Ravi Kumar"], "windows span the space");

    app.post(
        "/protected/user/updateProfile",
        &meera.cookie,
        json!({"name": "Meera Iyer"}),
    )
    .await
    .expect(200, "");
    let r = app.get(&search("krish"), &asker.cookie).await;
    assert!(names(&r).is_empty(), "the old name's windows are gone");
    let r = app.get(&search("iyer"), &asker.cookie).await;
    assert_eq!(names(&r), vec!["Meera Iyer"]);
}

/// A doctor erasing their account while registering patients: every patient registered (201)
/// either went with the erase's clean-up (connection ended, told the doctor closed their
/// account) or was refused (409); none is left pointing at the erased doctor, and nothing is
/// answered 500. (PostgreSQL: the erase now holds the account's row from its start.)
#[tokio::test]
async fn erasing_a_doctor_while_they_register_patients_leaves_nothing_behind() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        let doctor = app.signup("Dr. Leaving", "doctor").await;
        let create = |_| {
            let cookie = doctor.cookie.clone();
            let app = &app;
            async move {
                app.post(
                    "/protected/user/createPatient",
                    &cookie,
                    json!({"name": "Clinic Patient", "phone": random_phone()}),
                )
                .await
            }
        };
        let erase = app.post_empty("/protected/user/deleteProfile", &doctor.cookie);
        let (erased, created) = tokio::join!(erase, futures::future::join_all((0..6).map(create)));
        erased.expect(200, "");
        for r in &created {
            assert!(
                matches!(r.status.as_u16(), 201 | 401 | 409),
                "createPatient answered {}: {}",
                r.status,
                r.body
            );
        }
        let left = app
            .count(
                "SELECT COUNT(*) FROM users WHERE created_by = $1",
                &[&doctor.id],
            )
            .await;
        assert_eq!(left, 0, "patients still point at the erased doctor");
        // Every patient that was registered was told the doctor left.
        for r in created.iter().filter(|r| r.status.as_u16() == 201) {
            let patient = r.data()["patient_id"].as_str().unwrap();
            let told = app.count("SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND kind = 'connection_ended'", &[patient]).await;
            assert_eq!(told, 1, "patient {patient} was not told the doctor left");
        }
    }
}

/// One doctor registers at most 30 patients an hour (answered or refused with 409): the 409
/// says whether a phone has an account, so it must not be askable in bulk.
#[tokio::test]
async fn registering_patients_is_limited_per_doctor() {
    let app = TestApp::spawn().await;
    let doctor = app.signup("Dr. Busy", "doctor").await;
    let other = app.signup("Dr. Other", "doctor").await;
    let taken = app.signup("Asha Rao", "patient").await;
    let register = |who: &User, phone: String| {
        let cookie = who.cookie.clone();
        let app = &app;
        async move {
            app.post(
                "/protected/user/createPatient",
                &cookie,
                json!({"name": "Clinic Patient", "phone": phone}),
            )
            .await
        }
    };
    register(&doctor, taken.phone.clone())
        .await
        .expect(409, "PHONE_ALREADY_REGISTERED");
    for _ in 1..auravita::users::profile::CREATE_PATIENT_PER_HOUR {
        register(&doctor, random_phone()).await.expect(201, "");
    }
    let r = register(&doctor, taken.phone.clone()).await;
    r.expect(429, "RATE_LIMITED");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    register(&other, random_phone()).await.expect(201, "");
    // An hour later (signed in again: the session idled out meanwhile) it is allowed again.
    app.clock().advance(std::time::Duration::from_secs(3601));
    let again = User {
        cookie: app.signin(&doctor.phone).await,
        ..doctor
    };
    register(&again, random_phone()).await.expect(201, "");
}

/// Sending and withdrawing a request in a loop cannot bury a doctor in notices: a patient sends
/// at most 20 requests an hour.
#[tokio::test]
async fn connection_requests_are_limited_per_patient() {
    let app = TestApp::spawn().await;
    let Cast { p1, p2, d1, .. } = cast(&app).await;
    // Refusals reach no doctor and use up nothing: a mistyped id, a patient's id, a second click.
    let per_hour = auravita::users::connections::REQUESTS_PER_HOUR as usize;
    for _ in 0..per_hour {
        request(&app, &p1, "no-such-doctor")
            .await
            .expect(404, "NOT_FOUND");
        request(&app, &p1, &p2.id).await.expect(404, "NOT_FOUND");
    }
    let r = request(&app, &p1, &d1.id).await;
    r.expect(201, "");
    for _ in 0..per_hour {
        request(&app, &p1, &d1.id)
            .await
            .expect(409, "REQUEST_PENDING");
    }
    app.post_empty(
        &format!(
            "/protected/user/deletePendingRequest/{}",
            r.data()["request_id"].as_str().unwrap()
        ),
        &p1.cookie,
    )
    .await
    .expect(200, "");
    for _ in 1..auravita::users::connections::REQUESTS_PER_HOUR {
        let r = request(&app, &p1, &d1.id).await;
        r.expect(201, "");
        let id = r.data()["request_id"].as_str().unwrap().to_string();
        app.post_empty(
            &format!("/protected/user/deletePendingRequest/{id}"),
            &p1.cookie,
        )
        .await
        .expect(200, "");
    }
    request(&app, &p1, &d1.id).await.expect(429, "RATE_LIMITED");
    let notices = app
        .count(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1",
            &[&d1.id],
        )
        .await;
    // Each withdrawal took its notice back, but each was pushed to the doctor's open streams as
    // it came: the limit is what bounds those.
    assert_eq!(notices, 0);
    // Another patient is not held back.
    request(&app, &p2, &d1.id).await.expect(201, "");
}

/// A doctor accepting a request while the patient's erase is under way (the erase holds the
/// account's row from its start, then deletes the requests): the accept waits for the erase and
/// finds the request gone (404), and no connection outlives the account. On PostgreSQL the accept
/// used to update the request first and then wait for the account's row, while the erase held
/// the account and waited for the request: a deadlock, one side answered 503.
#[tokio::test]
async fn an_accept_racing_the_patients_erase_waits_for_it() {
    let app = TestApp::spawn().await;
    let patient = app.signup("Asha Rao", "patient").await;
    let doctor = app.signup("Dr. Meera Iyer", "doctor").await;
    let r = request(&app, &patient, &doctor.id).await;
    r.expect(201, "");
    let request_id = r.data()["request_id"].as_str().unwrap().to_string();
    let mut tx = app.erase_started(&patient.id).await;
    let erase = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("DELETE FROM connection_requests WHERE patient_id = $1")
            .bind(&patient.id)
            .execute(&mut *tx)
            .await
            .expect("the erase's delete of the requests");
        tx.commit().await.unwrap();
    };
    let accept = format!("/protected/user/acceptConnectionRequest/{request_id}");
    let (r, ()) = tokio::join!(app.post_empty(&accept, &doctor.cookie), erase);
    r.expect(404, "NOT_FOUND");
    let n = app.count("SELECT COUNT(*) FROM connections", &[]).await;
    assert_eq!(n, 0);
}

/// A name must show: one made only of zero-width or blank characters is refused, as is one with
/// bidirectional controls (a doctor's name shown backwards in patients' lists). Names in other
/// scripts, joiners included, are kept as sent. Sign-up, profile and clinic registration alike.
#[tokio::test]
async fn names_must_show_and_keep_their_direction() {
    let app = TestApp::spawn().await;
    let doctor = app.signup("Dr. Meera Iyer", "doctor").await;
    let refused = [
        "\u{200B}\u{200B}",
        "\u{FEFF}",
        "\u{00AD}",
        "\u{3164}",
        "\u{2800}",
        "\u{E0041}",
        "Dr \u{202E}oaR",
        "\u{2067}Rao",
        "Rao\u{200F}",
        "a\u{2028}b",
    ];
    for name in refused {
        let r = app
            .post(
                "/protected/user/updateProfile",
                &doctor.cookie,
                json!({ "name": name }),
            )
            .await;
        r.expect(422, "VALIDATION_FAILED");
        let r = app
            .post(
                "/protected/user/createPatient",
                &doctor.cookie,
                json!({ "name": name, "phone": random_phone() }),
            )
            .await;
        r.expect(422, "VALIDATION_FAILED");
        let r = app
            .post(
                "/auth/signup",
                "",
                json!({ "name": name, "phone": random_phone(), "role": "patient" }),
            )
            .await;
        r.expect(422, "VALIDATION_FAILED");
    }
    // A doctor's professional fields and a request's note are shown to others too.
    for field in ["specialization", "qualification"] {
        for text in ["Cardio\u{202E}ygolo", "a\u{2028}b", "\u{2066}x"] {
            let r = app
                .post(
                    "/protected/user/updateProfile",
                    &doctor.cookie,
                    json!({ field: text }),
                )
                .await;
            r.expect(422, "VALIDATION_FAILED");
        }
    }
    let patient = app.signup("Asha Rao", "patient").await;
    let r = app
        .post(
            &format!("/protected/user/connectionRequest/{}", doctor.id),
            &patient.cookie,
            json!({ "note": "please \u{202E}tcennoc" }),
        )
        .await;
    r.expect(422, "VALIDATION_FAILED");
    for name in ["अमित क्\u{200D}षत्रिय", "Zoë O'Brien", "山田 太郎", "R2"]
    {
        let r = app
            .post(
                "/protected/user/updateProfile",
                &doctor.cookie,
                json!({ "name": name }),
            )
            .await;
        r.expect(200, "");
        assert_eq!(r.data()["user"]["name"], name);
    }
}

async fn notifications_of(app: &TestApp, u: &User) -> Vec<Value> {
    let r = app.get("/protected/notification/list", &u.cookie).await;
    r.expect(200, "");
    r.data()["notifications"].as_array().unwrap().clone()
}

/// An erased account vanishes from its peers' notifications: nothing a doctor was told still
/// carries the patient's id, name or request note, and the notice that the patient left names
/// no one. What others told the doctor stays.
#[tokio::test]
async fn an_erased_account_leaves_nothing_in_its_peers_notifications() {
    let app = TestApp::spawn().await;
    let patient = app.signup("Secret Patient", "patient").await;
    let other = app.signup("Other Patient", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    let r = app
        .post(
            &format!("/protected/user/connectionRequest/{}", doctor.id),
            &patient.cookie,
            json!({"note": "I have condition X"}),
        )
        .await;
    r.expect(201, "");
    let request_id = r.data()["request_id"].as_str().unwrap().to_string();
    app.post_empty(
        &format!("/protected/user/acceptConnectionRequest/{request_id}"),
        &doctor.cookie,
    )
    .await
    .expect(200, "");
    request(&app, &other, &doctor.id).await.expect(201, "");
    let before = notifications_of(&app, &doctor).await;
    assert!(before.iter().any(|n| n.to_string().contains("condition X")));
    app.post_empty("/protected/user/deleteProfile", &patient.cookie)
        .await
        .expect(200, "");
    let after = notifications_of(&app, &doctor).await;
    for n in &after {
        let text = n.to_string();
        for secret in [patient.id.as_str(), "Secret Patient", "condition X"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    let ended: Vec<&Value> = after
        .iter()
        .filter(|n| n["kind"] == "connection_ended")
        .collect();
    assert_eq!(ended.len(), 1, "{after:?}");
    assert_eq!(
        ended[0]["message"],
        "Someone you were connected with closed their account"
    );
    assert!(after
        .iter()
        .any(|n| n["kind"] == "connection_requested" && n.to_string().contains(&other.id)));
}

/// Withdrawing a request takes its notice (and so its note) back from the doctor; a request that
/// is not withdrawn, and the notice of one that was decided, stay.
#[tokio::test]
async fn a_withdrawn_request_takes_its_notice_back() {
    let app = TestApp::spawn().await;
    let patient = app.signup("Nita", "patient").await;
    let other = app.signup("Other Patient", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    let r = ask(
        &app,
        &doctor,
        &patient,
        "please see my results for condition Y",
    )
    .await;
    r.expect(201, "");
    let withdrawn = r.data()["request_id"].as_str().unwrap().to_string();
    ask(&app, &doctor, &other, "a second opinion, please")
        .await
        .expect(201, "");
    let requested = |all: &[Value]| {
        all.iter()
            .filter(|n| n["kind"] == "connection_requested")
            .map(|n| n["data"]["note"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(requested(&notifications_of(&app, &doctor).await).len(), 2);
    // Someone else's withdrawal of it is refused and takes nothing.
    app.post_empty(
        &format!("/protected/user/deletePendingRequest/{withdrawn}"),
        &other.cookie,
    )
    .await
    .expect(404, "NOT_FOUND");
    assert_eq!(requested(&notifications_of(&app, &doctor).await).len(), 2);
    app.post_empty(
        &format!("/protected/user/deletePendingRequest/{withdrawn}"),
        &patient.cookie,
    )
    .await
    .expect(200, "");
    let left = notifications_of(&app, &doctor).await;
    assert_eq!(requested(&left), vec!["a second opinion, please"]);
    assert!(!Value::from(left).to_string().contains("condition Y"));
    let r = app
        .get("/protected/notification/list", &doctor.cookie)
        .await;
    assert_eq!(r.data()["unread"], 1, "{}", r.body);

    // Asked again and rejected: the notice stays, the doctor has seen it.
    let r = ask(&app, &doctor, &patient, "asking again").await;
    r.expect(201, "");
    let again = r.data()["request_id"].as_str().unwrap().to_string();
    app.post_empty(
        &format!("/protected/user/rejectConnectionRequest/{again}"),
        &doctor.cookie,
    )
    .await
    .expect(200, "");
    assert_eq!(
        requested(&notifications_of(&app, &doctor).await),
        vec!["asking again", "a second opinion, please"]
    );
}

/// `who` asks `doctor` to connect, with `note`.
async fn ask(app: &TestApp, doctor: &User, who: &User, note: &str) -> common::Resp {
    app.post(
        &format!("/protected/user/connectionRequest/{}", doctor.id),
        &who.cookie,
        json!({ "note": note }),
    )
    .await
}

/// A doctor's long history of decided requests never hides one still waiting: pending requests
/// come first in `getConnectionRequests`, however old, then decided ones up to the list's bound.
#[tokio::test]
async fn a_long_history_does_not_hide_a_pending_request() {
    let app = TestApp::spawn().await;
    let first = app.signup("First", "patient").await;
    let later = app.signup("Later", "patient").await;
    let doctor = app.signup("Dr Busy", "doctor").await;
    let r = request(&app, &first, &doctor.id).await;
    r.expect(201, "");
    let waiting = r.data()["request_id"].as_str().unwrap().to_string();
    // A bound's worth of decided requests, all newer than the waiting one.
    let listed = auravita::users::connections::REQUESTS_LISTED;
    let start = app.clock().now() + 1_000;
    for i in 0..listed {
        sqlx::query(
            "INSERT INTO connection_requests (id, patient_id, doctor_id, status, created_at, decided_at) \
             VALUES ($1, $2, $3, 'rejected', $4, $4)",
        )
        .bind(format!("old{i:04}"))
        .bind(&later.id)
        .bind(&doctor.id)
        .bind(start + i)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    }
    let incoming = requests_of(&app, &doctor).await["incoming"].clone();
    let incoming = incoming.as_array().unwrap();
    assert_eq!(incoming.len() as i64, listed);
    assert_eq!(incoming[0]["id"], waiting.as_str());
    assert_eq!(incoming[0]["status"], "pending");
    // Then the decided ones, newest first.
    assert_eq!(incoming[1]["id"], format!("old{:04}", listed - 1).as_str());
    let outgoing = requests_of(&app, &later).await["outgoing"].clone();
    assert_eq!(outgoing.as_array().unwrap().len() as i64, listed);
}

/// Erasing cannot be undone, so an old session (a stolen cookie, say) may not do it: it takes a
/// sign-in from the last 10 minutes, and a refused erase leaves everything in place.
#[tokio::test]
async fn erasing_needs_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let me = app.signup("Kiran", "patient").await;
    app.clock().advance(std::time::Duration::from_secs(9 * 60));
    // Still in use, so the session has not idled out; it is now 11 minutes old.
    app.get("/protected/user/sessionDetail", &me.cookie)
        .await
        .expect(200, "");
    app.clock().advance(std::time::Duration::from_secs(2 * 60));
    let r = app
        .post_empty("/protected/user/deleteProfile", &me.cookie)
        .await;
    r.expect(403, "REAUTH_REQUIRED");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("erasing your account"));
    app.get("/protected/user/sessionDetail", &me.cookie)
        .await
        .expect(200, "");
    // Signed in again, with the phone's code: it goes.
    let fresh = app.signin(&me.phone).await;
    app.post_empty("/protected/user/deleteProfile", &fresh)
        .await
        .expect(200, "");
    app.get("/protected/user/sessionDetail", &me.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
}

/// Requests sent at the same moment to the same doctor (a double click): one is created, the
/// others are refused with 409, and only the created one counts towards the hour's 20.
#[tokio::test]
async fn racing_duplicate_requests_count_once() {
    let app = TestApp::spawn().await;
    let Cast { p1, d1, .. } = cast(&app).await;
    let per_hour = auravita::users::connections::REQUESTS_PER_HOUR;
    let mut created = 0;
    for _ in 0..per_hour {
        let rs = futures::future::join_all((0..3).map(|_| request(&app, &p1, &d1.id))).await;
        let made: Vec<&common::Resp> = rs.iter().filter(|r| r.status.as_u16() == 201).collect();
        assert_eq!(
            made.len(),
            1,
            "{:?}",
            rs.iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        for r in rs.iter().filter(|r| r.status.as_u16() != 201) {
            r.expect(409, "REQUEST_PENDING");
        }
        created += 1;
        app.post_empty(
            &format!(
                "/protected/user/deletePendingRequest/{}",
                made[0].data()["request_id"].as_str().unwrap()
            ),
            &p1.cookie,
        )
        .await
        .expect(200, "");
    }
    assert_eq!(created, per_hour);
    request(&app, &p1, &d1.id).await.expect(429, "RATE_LIMITED");
}
