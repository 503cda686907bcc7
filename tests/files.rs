//! Medical files over HTTP: uploads and their limits, download links, grants, 30-minute shares,
//! revocation, deletion, the access ledger; every actor trying every route; and the S3 backend
//! against a real S3-compatible server (s3s-fs, started by `.ci/s3.sh`).

mod common;

use std::time::Duration;

use common::{TestApp, User};
use reqwest::StatusCode;
use serde_json::Value;

const MIB: usize = 1024 * 1024;

fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n".to_vec();
    v.extend((0..len.saturating_sub(9)).map(|i| (i * 31 % 251) as u8));
    v
}

fn dicom() -> Vec<u8> {
    let mut v = vec![0u8; 128];
    v.extend_from_slice(b"DICM");
    v.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    v
}

fn webp() -> Vec<u8> {
    let mut v = b"RIFF\x10\x00\x00\x00WEBPVP8 ".to_vec();
    v.extend_from_slice(&[0; 16]);
    v
}

async fn upload_form(app: &TestApp, cookie: &str, form: reqwest::multipart::Form) -> common::Resp {
    let r = app
        .http
        .post(app.url("/protected/resource/uploadFile"))
        .header("cookie", cookie)
        .header("user-agent", "files-test/1.0")
        .multipart(form)
        .send()
        .await;
    match r {
        Ok(r) => common::Resp::from(r).await,
        Err(e) => panic!("upload request failed: {e}"),
    }
}

fn file_form(bytes: Vec<u8>, name: &str, tags: &[&str]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    for t in tags {
        form = form.text("tags[]", t.to_string());
    }
    form
}

async fn upload(app: &TestApp, user: &User, bytes: Vec<u8>, name: &str) -> String {
    let r = upload_form(app, &user.cookie, file_form(bytes, name, &["blood"])).await;
    r.expect(201, "");
    r.data()["file"]["id"].as_str().unwrap().to_string()
}

/// Connections are the users feature's; here a row is enough.
async fn connect(app: &TestApp, patient: &User, doctor: &User) {
    sqlx::query(
        "INSERT INTO connections (id, patient_id, doctor_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(&patient.id)
    .bind(&doctor.id)
    .bind(app.clock().now())
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

/// Fetches a download link. Local links name the public URL; the test server listens elsewhere.
async fn fetch(app: &TestApp, url: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let public = app
        .state
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let target = match url.strip_prefix(&public) {
        Some(rest) => app.url(rest),
        None => url.to_string(),
    };
    let r = app.http.get(target).send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn path(route: &str, id: &str) -> String {
    format!("/protected/resource/{route}/{id}")
}

async fn link(app: &TestApp, user: &User, route: &str) -> String {
    let r = app.get(route, &user.cookie).await;
    r.expect(200, "");
    r.data()["url"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------

/// Upload, list, link, download: the bytes come back identical, as an RFC 6266 attachment.
async fn roundtrip(app: &TestApp) {
    let p = app.signup("Asha", "patient").await;
    let bytes = pdf(300_000);
    let form = file_form(bytes.clone(), "Résumé \"scan\".pdf", &["blood", "2024"])
        .text("report_type", "report")
        .text("report_date", "2024-05-01");
    let r = upload_form(app, &p.cookie, form).await;
    r.expect(201, "");
    let f = r.data()["file"].clone();
    assert_eq!(f["content_type"], "application/pdf");
    assert_eq!(f["size_bytes"], bytes.len());
    assert_eq!(f["sha256"], auravita::keys::sha256_hex(&bytes));
    assert_eq!(f["tags"], serde_json::json!(["blood", "2024"]));
    assert_eq!(f["report_type"], "report");
    assert_eq!(f["report_date"], "2024-05-01");
    let id = f["id"].as_str().unwrap();

    let r = app
        .get("/protected/resource/userFiles?q=1", &p.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["total"], 1);
    assert_eq!(r.data()["files"][0]["id"], id);
    assert_eq!(r.data()["files"][0]["file_name"], "Résumé \"scan\".pdf");

    let url = link(app, &p, &format!("{}?o=t", path("fileURL", id))).await;
    let url_path = url.split('?').next().unwrap();
    assert!(
        !url_path.contains("sum"),
        "the object key must not carry the file name: {url}"
    );
    let (status, headers, body) = fetch(app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(body, bytes, "downloaded bytes differ from the upload");
    if !app.state.storage.is_s3() {
        let cd = headers["content-disposition"].to_str().unwrap();
        assert_eq!(
            cd,
            "attachment; filename=\"R_sum_ _scan_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22scan%22.pdf"
        );
        assert_eq!(headers["content-type"], "application/pdf");
        // The contract's directives, and a sandbox: the file is never a page of this site.
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "sandbox",
            "default-src 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} missing: {csp}");
        }
    } else {
        assert!(
            url.contains("response-content-disposition=attachment"),
            "{url}"
        );
    }
}

#[tokio::test]
async fn upload_download_roundtrip() {
    let app = TestApp::spawn().await;
    roundtrip(&app).await;
}

#[tokio::test]
async fn upload_rules() {
    let app = TestApp::spawn().await;
    let p = app.signup("Asha", "patient").await;
    let d = app.signup("Dr Rao", "doctor").await;

    // Exactly the limit is fine; one byte more is refused while streaming.
    let max = 5 * MIB;
    upload_form(&app, &p.cookie, file_form(pdf(max), "big.pdf", &[]))
        .await
        .expect(201, "");
    let r = upload_form(&app, &p.cookie, file_form(pdf(max + 1), "big.pdf", &[])).await;
    r.expect(413, "FILE_TOO_LARGE");
    let r = upload_form(&app, &p.cookie, file_form(pdf(3 * max), "huge.pdf", &[])).await;
    r.expect(413, "FILE_TOO_LARGE");

    // The type comes from the bytes, not the name.
    let r = upload_form(
        &app,
        &p.cookie,
        file_form(b"just some text".to_vec(), "report.pdf", &[]),
    )
    .await;
    r.expect(415, "UNSUPPORTED_FILE_TYPE");
    let r = upload_form(
        &app,
        &p.cookie,
        file_form(b"MZ\x90\x00".to_vec(), "x.png", &[]),
    )
    .await;
    r.expect(415, "UNSUPPORTED_FILE_TYPE");
    for (bytes, ctype) in [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), "image/png"),
        (b"\xFF\xD8\xFF\xE0\0\x10JFIF\0".to_vec(), "image/jpeg"),
        (webp(), "image/webp"),
        (dicom(), "application/dicom"),
    ] {
        let r = upload_form(&app, &p.cookie, file_form(bytes, "scan.bin", &[])).await;
        r.expect(201, "");
        assert_eq!(r.data()["file"]["content_type"], ctype);
    }

    // Tags: at most 10, each at most 32 characters.
    let ten: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    upload_form(&app, &p.cookie, file_form(pdf(100), "a.pdf", &ten))
        .await
        .expect(201, "");
    let mut eleven = ten.clone();
    eleven.push("t10");
    let r = upload_form(&app, &p.cookie, file_form(pdf(100), "a.pdf", &eleven)).await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "tags");
    let long = "x".repeat(33);
    let r = upload_form(&app, &p.cookie, file_form(pdf(100), "a.pdf", &[&long])).await;
    r.expect(422, "VALIDATION_FAILED");
    let ok32 = "é".repeat(32);
    let form = file_form(pdf(100), "a.pdf", &[]).text("tags", ok32.clone());
    let r = upload_form(&app, &p.cookie, form).await;
    r.expect(201, "");
    assert_eq!(r.data()["file"]["tags"][0], ok32.as_str());

    let r = upload_form(
        &app,
        &p.cookie,
        file_form(pdf(100), "a.pdf", &[]).text("report_type", "xray"),
    )
    .await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "report_type");
    let r = upload_form(
        &app,
        &p.cookie,
        file_form(pdf(100), "a.pdf", &[]).text("report_date", "2024-13-01"),
    )
    .await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "report_date");
    // Only YYYY-MM-DD itself: no signs, spaces or one-digit parts (which chrono alone accepts).
    for bad in [
        "2024- 1- 1",
        "+2024-1-01",
        "-2024-1-01",
        "2024-1-1",
        "+99999-1-1",
        "2024/01/01",
    ] {
        let r = upload_form(
            &app,
            &p.cookie,
            file_form(pdf(100), "a.pdf", &[]).text("report_date", bad),
        )
        .await;
        r.expect(422, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], "report_date", "{bad}");
    }
    let r = upload_form(
        &app,
        &p.cookie,
        reqwest::multipart::Form::new().text("tags[]", "x"),
    )
    .await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "file");

    // A multipart body cut off inside the file, or one without a boundary, is refused and
    // leaves no temporary file (checked below).
    let raw = |content_type: &str, body: Vec<u8>| {
        let req = app
            .http
            .post(app.url("/protected/resource/uploadFile"))
            .header("cookie", &p.cookie)
            .header("content-type", content_type.to_string())
            .body(body);
        async move { common::Resp::from(req.send().await.unwrap()).await }
    };
    let mut cut = b"--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\
                    content-type: application/pdf\r\n\r\n"
        .to_vec();
    cut.extend_from_slice(&pdf(64 * 1024));
    raw("multipart/form-data; boundary=XyZ", cut)
        .await
        .expect(400, "BAD_MULTIPART");
    raw("multipart/form-data", pdf(100))
        .await
        .expect(400, "BAD_MULTIPART");
    // A type that only begins like multipart is not multipart.
    raw("multipart/form-dataX; boundary=XyZ", pdf(100))
        .await
        .expect(415, "UNSUPPORTED_MEDIA_TYPE");
    // A tag that is not UTF-8, sent as `tags[]`, is named as the contract names the field.
    let bad_tag =
        b"--XyZ\r\ncontent-disposition: form-data; name=\"tags[]\"\r\n\r\n\xff\xfe\r\n--XyZ--\r\n"
            .to_vec();
    let r = raw("multipart/form-data; boundary=XyZ", bad_tag).await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "tags", "{}", r.body);

    // Not multipart, not a patient, not signed in.
    app.post(
        "/protected/resource/uploadFile",
        &p.cookie,
        serde_json::json!({"file": "x"}),
    )
    .await
    .expect(415, "UNSUPPORTED_MEDIA_TYPE");
    upload_form(&app, &d.cookie, file_form(pdf(100), "a.pdf", &[]))
        .await
        .expect(403, "WRONG_ROLE");
    upload_form(&app, "", file_form(pdf(100), "a.pdf", &[]))
        .await
        .expect(401, "UNAUTHENTICATED");

    // Refused uploads left nothing behind: 1 + 4 + 1 + 1 stored, no temporary files.
    let r = app
        .get("/protected/resource/userFiles?q=1", &p.cookie)
        .await;
    assert_eq!(r.data()["total"], 7);
    assert_eq!(r.data()["files"].as_array().unwrap().len(), 7);
    let tmp = std::fs::read_dir(app.state.storage.tmp_dir())
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "temporary uploads left behind");
}

/// What a file is called cannot hide what it is: a name whose extension is not one of the type
/// read from the bytes gets that type's (a PDF sent as `a.html` downloads as `a.html.pdf`), and
/// bidirectional controls are dropped from names (`evil\u{202E}gpj.pdf` would show as
/// "evilfdp.jpg"). Tags with control or bidirectional characters are refused.
#[tokio::test]
async fn file_names_and_tags_cannot_hide_what_a_file_is() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let png = b"\x89PNG\r\n\x1a\n0000".to_vec();
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0];
    for (bytes, sent, kept) in [
        (pdf(1000), "a.html", "a.html.pdf"),
        (pdf(1000), "report.PDF", "report.PDF"),
        (pdf(1000), "evil\u{202E}gpj.pdf", "evilgpj.pdf"),
        (pdf(1000), "evil\u{202E}fdp.html", "evilfdp.html.pdf"),
        (png.clone(), "scan", "scan.png"),
        (png, "scan.jpg", "scan.jpg.png"),
        (jpeg.clone(), "photo.JPEG", "photo.JPEG"),
        (jpeg, "photo.jfif", "photo.jfif"),
        (dicom(), "ct.dcm", "ct.dcm"),
        (dicom(), "ct", "ct.dcm"),
    ] {
        let r = upload_form(&app, &owner.cookie, file_form(bytes, sent, &[])).await;
        r.expect(201, "");
        assert_eq!(r.data()["file"]["file_name"], kept, "{sent:?}");
    }
    // A 200-character name keeps its length with the extension added.
    let long = "x".repeat(200);
    let r = upload_form(&app, &owner.cookie, file_form(pdf(1000), &long, &[])).await;
    r.expect(201, "");
    let kept = r.data()["file"]["file_name"].as_str().unwrap().to_string();
    assert_eq!(kept.chars().count(), 200);
    assert!(kept.ends_with("x.pdf"), "{kept}");
    // The download carries the kept name.
    let id = upload(&app, &owner, pdf(1000), "a.html").await;
    let url = link(&app, &owner, &format!("{}?o=t", path("fileURL", &id))).await;
    let (status, headers, _) = fetch(&app, &url).await;
    assert_eq!(status, 200);
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.contains("filename=\"a.html.pdf\""),
        "{disposition}"
    );
    for tag in ["a\nb", "a\u{0}b", "x\u{202E}y", "\u{2066}q", "a\u{2028}b"] {
        let r = upload_form(&app, &owner.cookie, file_form(pdf(1000), "t.pdf", &[tag])).await;
        r.expect(422, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn paging_is_ten_a_page_newest_first() {
    let app = TestApp::spawn().await;
    let p = app.signup("Asha", "patient").await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(upload(&app, &p, pdf(50), &format!("f{i}.pdf")).await);
        app.clock().advance(Duration::from_millis(5));
    }
    let r = app
        .get("/protected/resource/userFiles?q=1", &p.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["total"], 12);
    let page1: Vec<&str> = r.data()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(page1.len(), 10);
    assert_eq!(page1[0], ids[11]);
    let r = app
        .get("/protected/resource/userFiles?q=2", &p.cookie)
        .await;
    let page2: Vec<&str> = r.data()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(page2, vec![ids[1].as_str(), ids[0].as_str()]);
    app.get("/protected/resource/userFiles?q=0", &p.cookie)
        .await
        .expect(422, "VALIDATION_FAILED");
    app.get("/protected/resource/userFiles?q=x", &p.cookie)
        .await
        .expect(422, "VALIDATION_FAILED");
    app.get("/protected/resource/userFiles", "")
        .await
        .expect(401, "UNAUTHENTICATED");
}

/// What one caller gets from every route on a file, as (status, code) plus the live lists.
struct Outcome {
    user_files_total: i64,
    file_url_t: u16,
    file_url_f: u16,
    shared_url: (u16, String),
    grant: u16,
    revoke: u16,
    share: u16,
    patient_data: (u16, usize),
    shared_with_me: (u16, usize),
    delete: u16,
    log_total: i64,
    /// `accessGiven?f=<file>`: status and total (before the mutating routes ran).
    given_file: (u16, i64),
    /// `accessGiven` over all the caller's files: total.
    given_all: i64,
}

/// Tries every route as `who` on `file` (owned by `owner`, with `access` given to someone).
/// Mutating routes aim at `victim`, a doctor with no access, so that a refusal changes nothing.
async fn try_everything(
    app: &TestApp,
    who: &User,
    owner: &User,
    file: &str,
    access: &str,
    victim: &User,
) -> Outcome {
    let c = &who.cookie;
    let r = app.get("/protected/resource/userFiles", c).await;
    r.expect(200, "");
    let user_files_total = r.data()["total"].as_i64().unwrap();
    let r = app
        .get(&format!("/protected/resource/accessGiven?f={file}"), c)
        .await;
    let given_file = (r.status.as_u16(), r.data()["total"].as_i64().unwrap_or(0));
    let r = app.get("/protected/resource/accessGiven", c).await;
    r.expect(200, "");
    let given_all = r.data()["total"].as_i64().unwrap();
    let file_url_t = app
        .get(&format!("{}?o=t", path("fileURL", file)), c)
        .await
        .status
        .as_u16();
    let file_url_f = app
        .get(&format!("{}?o=f", path("fileURL", file)), c)
        .await
        .status
        .as_u16();
    let r = app.get(&path("sharedFileURL", access), c).await;
    let shared_url = (r.status.as_u16(), r.code().to_string());
    let grant = app
        .post_empty(
            &format!("{}?p={}&t=r", path("createFileAccess", file), victim.id),
            c,
        )
        .await
        .status
        .as_u16();
    let revoke = app
        .post_empty(
            &format!("{}?p={}", path("revokeFileAccess", file), victim.id),
            c,
        )
        .await
        .status
        .as_u16();
    let share = app
        .post_empty(
            &format!("{}?p={}&t=r", path("tempFileShare", file), victim.id),
            c,
        )
        .await
        .status
        .as_u16();
    let r = app.get(&path("patientFileData", &owner.id), c).await;
    let patient_data = (
        r.status.as_u16(),
        r.data()["files"].as_array().map_or(0, |a| a.len()),
    );
    let r = app.get("/protected/resource/sharedWithMe", c).await;
    let shared_with_me = (
        r.status.as_u16(),
        r.data()["files"].as_array().map_or(0, |a| a.len()),
    );
    let delete = app
        .post_empty(&path("deleteFile", file), c)
        .await
        .status
        .as_u16();
    let r = app.get("/protected/resource/accessLog?page=1", c).await;
    r.expect(200, "");
    let log_total = r.data()["total"].as_i64().unwrap();
    Outcome {
        user_files_total,
        file_url_t,
        file_url_f,
        shared_url,
        grant,
        revoke,
        share,
        patient_data,
        shared_with_me,
        delete,
        log_total,
        given_file,
        given_all,
    }
}

/// Someone with no access to the file: every route refuses or shows nothing.
#[track_caller]
fn assert_no_access(o: &Outcome, doctor: bool, shared_url: (u16, &str)) {
    assert_eq!(o.user_files_total, 0);
    assert_eq!(o.file_url_t, 404);
    assert_eq!(o.file_url_f, 404);
    assert_eq!((o.shared_url.0, o.shared_url.1.as_str()), shared_url);
    assert_eq!(o.grant, 404);
    assert_eq!(o.revoke, 404);
    assert_eq!(o.share, 404);
    if doctor {
        assert_eq!(o.patient_data, (200, 0));
        assert_eq!(o.shared_with_me, (200, 0));
    } else {
        assert_eq!(o.patient_data.0, 403);
        assert_eq!(o.shared_with_me.0, 403);
    }
    assert_eq!(o.delete, 404);
    assert_eq!(o.log_total, 0);
    assert_eq!((o.given_file, o.given_all), ((404, 0), 0));
}

#[tokio::test]
async fn every_actor_tries_every_route() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let granted = app.signup("Dr Granted", "doctor").await;
    let connected = app.signup("Dr Connected", "doctor").await;
    let stranger = app.signup("Dr Stranger", "doctor").await;
    let other = app.signup("Other Patient", "patient").await;
    let victim = app.signup("Dr Victim", "doctor").await;
    connect(&app, &owner, &granted).await;
    connect(&app, &owner, &connected).await;
    let file = upload(&app, &owner, pdf(2000), "report.pdf").await;
    let other_file = upload(&app, &other, pdf(2000), "theirs.pdf").await;

    // Permanent grants: only to connected doctors, only doctors, only existing users.
    let r = app
        .post_empty(
            &format!("{}?p={}&t=r", path("createFileAccess", &file), granted.id),
            &owner.cookie,
        )
        .await;
    r.expect(200, "");
    let access = r.data()["access_id"].as_str().unwrap().to_string();
    assert!(r.data()["expires_at"].is_null());
    app.post_empty(
        &format!("{}?p={}&t=r", path("createFileAccess", &file), stranger.id),
        &owner.cookie,
    )
    .await
    .expect(403, "NOT_CONNECTED");
    app.post_empty(
        &format!("{}?p={}&t=r", path("createFileAccess", &file), other.id),
        &owner.cookie,
    )
    .await
    .expect(422, "VALIDATION_FAILED");
    app.post_empty(
        &format!("{}?p=nobody&t=r", path("createFileAccess", &file)),
        &owner.cookie,
    )
    .await
    .expect(404, "NOT_FOUND");
    app.post_empty(
        &format!("{}?p={}&t=w", path("createFileAccess", &file), granted.id),
        &owner.cookie,
    )
    .await
    .expect(422, "VALIDATION_FAILED");
    app.post_empty(
        &format!("{}?p={}&e=0", path("createFileAccess", &file), granted.id),
        &owner.cookie,
    )
    .await
    .expect(422, "VALIDATION_FAILED");
    app.post_empty(
        &format!("{}?t=r", path("createFileAccess", &file)),
        &owner.cookie,
    )
    .await
    .expect(422, "VALIDATION_FAILED");
    // A parameter the route does not know is refused, not ignored: a misspelt end time must
    // not quietly make a permanent grant, nor a misspelt page show the first one.
    for (route, id, query) in [
        (
            "createFileAccess",
            &file,
            format!("p={}&t=r&end=60", granted.id),
        ),
        ("tempFileShare", &file, format!("p={}&t=r&e=60", granted.id)),
        ("revokeFileAccess", &file, format!("p={}&all=1", granted.id)),
    ] {
        let r = app
            .post_empty(&format!("{}?{query}", path(route, id)), &owner.cookie)
            .await;
        r.expect(422, "VALIDATION_FAILED");
        let field = if route == "revokeFileAccess" {
            "all"
        } else if route == "tempFileShare" {
            "e"
        } else {
            "end"
        };
        assert_eq!(r.body["error"]["details"]["field"], field, "{}", r.body);
    }
    for (route, field) in [
        ("/protected/resource/userFiles?q=1&page=2", "page"),
        ("/protected/resource/accessLog?q=2", "q"),
        (&*format!("{}?o=t&x=1", path("fileURL", &file)), "x"),
        ("/protected/notification/list?page=1&limit=5", "limit"),
        ("/protected/user/searchDoctorByName?name=ab&lmit=5", "lmit"),
    ] {
        let r = app.get(route, &owner.cookie).await;
        r.expect(422, "VALIDATION_FAILED");
        assert_eq!(
            r.body["error"]["details"]["field"], field,
            "{route}: {}",
            r.body
        );
    }
    // The owner cannot reach into another patient's file either.
    app.post_empty(
        &format!(
            "{}?p={}&t=r",
            path("createFileAccess", &other_file),
            granted.id
        ),
        &owner.cookie,
    )
    .await
    .expect(404, "NOT_FOUND");

    // The granted doctor: a link under the grant, the file in both lists, nothing else.
    let o = try_everything(&app, &granted, &owner, &file, &access, &victim).await;
    assert_eq!(o.user_files_total, 0);
    assert_eq!(o.file_url_t, 404);
    assert_eq!(o.file_url_f, 200);
    assert_eq!(o.shared_url.0, 200);
    assert_eq!((o.grant, o.revoke, o.share, o.delete), (404, 404, 404, 404));
    assert_eq!(o.patient_data, (200, 1));
    assert_eq!(o.shared_with_me, (200, 1));
    assert_eq!(o.log_total, 0);
    assert_eq!((o.given_file, o.given_all), ((404, 0), 0));
    let r = app
        .get("/protected/resource/sharedWithMe", &granted.cookie)
        .await;
    let s = &r.data()["files"][0];
    assert_eq!(s["file"]["id"], file.as_str());
    assert_eq!(s["access_id"], access.as_str());
    assert_eq!(s["access_kind"], "grant");
    assert_eq!(s["patient"]["id"], owner.id.as_str());
    assert_eq!(s["patient"]["name"], "Asha");
    assert!(s["expires_at"].is_null());
    let url = link(&app, &granted, &path("sharedFileURL", &access)).await;
    let (status, _, body) = fetch(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(body, pdf(2000));

    // Connected without a grant, not connected, another patient: nothing at all.
    let o = try_everything(&app, &connected, &owner, &file, &access, &victim).await;
    assert_no_access(&o, true, (404, "NOT_FOUND"));
    let o = try_everything(&app, &stranger, &owner, &file, &access, &victim).await;
    assert_no_access(&o, true, (404, "NOT_FOUND"));
    let o = try_everything(&app, &other, &owner, &file, &access, &victim).await;
    assert_eq!(o.user_files_total, 1); // their own file
    assert_eq!(o.log_total, 0);
    assert_eq!(
        (o.file_url_t, o.file_url_f, o.shared_url.0),
        (404, 404, 404)
    );
    assert_eq!((o.grant, o.revoke, o.share, o.delete), (404, 404, 404, 404));
    assert_eq!((o.patient_data.0, o.shared_with_me.0), (403, 403));
    assert_eq!((o.given_file, o.given_all), ((404, 0), 0));

    // Not signed in: 401 everywhere.
    for (m, p) in [
        ("GET", format!("{}?o=t", path("fileURL", &file))),
        ("GET", path("sharedFileURL", &access)),
        (
            "POST",
            format!("{}?p={}", path("createFileAccess", &file), granted.id),
        ),
        (
            "POST",
            format!("{}?p={}", path("revokeFileAccess", &file), granted.id),
        ),
        (
            "POST",
            format!("{}?p={}", path("tempFileShare", &file), granted.id),
        ),
        ("GET", path("patientFileData", &owner.id)),
        ("GET", "/protected/resource/sharedWithMe".into()),
        ("POST", path("deleteFile", &file)),
        ("GET", "/protected/resource/accessLog".into()),
        ("GET", format!("/protected/resource/accessGiven?f={file}")),
    ] {
        let r = app.call(m.parse().unwrap(), &p, "", None).await;
        r.expect(401, "UNAUTHENTICATED");
    }

    // The owner: everything. The victim doctor got nothing from the refused attempts above.
    let o = try_everything(&app, &owner, &owner, &file, &access, &connected).await;
    assert_eq!(o.user_files_total, 1);
    assert_eq!(o.file_url_t, 200);
    assert_eq!(o.file_url_f, 404);
    assert_eq!(o.shared_url.0, 404);
    assert_eq!(o.grant, 200);
    assert_eq!(o.revoke, 200);
    assert_eq!(o.share, 200);
    assert_eq!((o.patient_data.0, o.shared_with_me.0), (403, 403));
    assert_eq!(o.delete, 200);
    assert!(o.log_total >= 5);
    // What the owner had given when the tour started: the one grant.
    assert_eq!((o.given_file, o.given_all), ((200, 1), 1));
    let r = app
        .get("/protected/resource/sharedWithMe", &victim.cookie)
        .await;
    assert_eq!(r.data()["files"].as_array().unwrap().len(), 0);

    // Deleting the file ended the granted doctor's access and removed the object.
    let o = try_everything(&app, &granted, &owner, &file, &access, &victim).await;
    assert_no_access(&o, true, (404, "NOT_FOUND"));
    let r = app
        .get("/protected/resource/userFiles", &owner.cookie)
        .await;
    assert_eq!(r.data()["total"], 0);
}

#[tokio::test]
async fn revoked_grant_and_expired_share_open_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    let walk_in = app.signup("Dr Walk-in", "doctor").await;
    let victim = app.signup("Dr Victim", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;

    let r = app
        .post_empty(
            &format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id),
            &owner.cookie,
        )
        .await;
    let grant = r.data()["access_id"].as_str().unwrap().to_string();
    // A 30-minute share needs no connection (decision: a walk-in or second-opinion doctor).
    let r = app
        .post_empty(
            &format!("{}?p={}&t=r", path("tempFileShare", &file), walk_in.id),
            &owner.cookie,
        )
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["detail"], "shared for 30 minutes");
    let share = r.data()["access_id"].as_str().unwrap().to_string();
    app.post_empty(
        &format!("{}?p={}&t=r", path("tempFileShare", &file), owner.id),
        &owner.cookie,
    )
    .await
    .expect(422, "VALIDATION_FAILED");

    // Links issued before the revocation stop working at once (local links re-check the grant).
    let granted_url = link(&app, &doctor, &path("sharedFileURL", &grant)).await;
    assert_eq!(fetch(&app, &granted_url).await.0, 200);
    let r = app
        .get(&path("patientFileData", &owner.id), &walk_in.cookie)
        .await;
    assert_eq!(r.data()["files"][0]["access_kind"], "share");

    app.post_empty(
        &format!("{}?p={}", path("revokeFileAccess", &file), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    app.post_empty(
        &format!("{}?p={}", path("revokeFileAccess", &file), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(404, "NOT_FOUND");
    let (status, _, body) = fetch(&app, &granted_url).await;
    assert_eq!(status, 410, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "ACCESS_ENDED", "{body}");
    let o = try_everything(&app, &doctor, &owner, &file, &grant, &victim).await;
    assert_no_access(&o, true, (410, "ACCESS_REVOKED"));

    // The share lives 30 minutes, then yields nothing.
    app.clock().advance(Duration::from_secs(29 * 60));
    let share_url = link(&app, &walk_in, &path("sharedFileURL", &share)).await;
    let r = app
        .get(&path("sharedFileURL", &share), &walk_in.cookie)
        .await;
    let exp = r.data()["expires_at"].as_str().unwrap().to_string();
    // The link ends with the share (in one minute), not two minutes from now.
    let exp = chrono::DateTime::parse_from_rfc3339(&exp)
        .unwrap()
        .timestamp_millis();
    assert!(
        exp - app.clock().now() <= 60_000 + 50,
        "link outlives the share"
    );
    app.clock().advance(Duration::from_secs(2 * 60));
    let (status, _, body) = fetch(&app, &share_url).await;
    assert_eq!(status, 410);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "LINK_EXPIRED", "{body}");
    let o = try_everything(&app, &walk_in, &owner, &file, &share, &victim).await;
    assert_no_access(&o, true, (410, "ACCESS_EXPIRED"));

    // The owner is untouched by all of it (signed in again: the first session idled out).
    let owner = User {
        cookie: app.signin(&owner.phone).await,
        ..owner
    };
    app.get(&format!("{}?o=t", path("fileURL", &file)), &owner.cookie)
        .await
        .expect(200, "");
}

#[tokio::test]
async fn grant_with_an_end_time_ends_by_itself() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    let r = app
        .post_empty(
            &format!(
                "{}?p={}&t=r&e=10",
                path("createFileAccess", &file),
                doctor.id
            ),
            &owner.cookie,
        )
        .await;
    r.expect(200, "");
    let access = r.data()["access_id"].as_str().unwrap().to_string();
    assert!(r.data()["expires_at"].is_string());
    app.get(&format!("{}?o=f", path("fileURL", &file)), &doctor.cookie)
        .await
        .expect(200, "");
    app.clock().advance(Duration::from_secs(10 * 60 + 1));
    app.get(&format!("{}?o=f", path("fileURL", &file)), &doctor.cookie)
        .await
        .expect(404, "NOT_FOUND");
    app.get(&path("sharedFileURL", &access), &doctor.cookie)
        .await
        .expect(410, "ACCESS_EXPIRED");
    let r = app
        .get("/protected/resource/sharedWithMe", &doctor.cookie)
        .await;
    assert_eq!(r.data()["files"].as_array().unwrap().len(), 0);
    // A new grant replaces an old one; two open grants never coexist.
    app.post_empty(
        &format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    app.post_empty(
        &format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    let r = app
        .get("/protected/resource/sharedWithMe", &doctor.cookie)
        .await;
    assert_eq!(r.data()["files"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn local_links_open_one_file_for_two_minutes() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let a = upload(&app, &owner, pdf(1000), "a.pdf").await;
    let b = upload(&app, &owner, pdf(2000), "b.pdf").await;
    let url_a = link(&app, &owner, &format!("{}?o=t", path("fileURL", &a))).await;
    let url_b = link(&app, &owner, &format!("{}?o=t", path("fileURL", &b))).await;
    let key_of = |u: &str| {
        u.split("/objects/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string()
    };
    let edited = url_a.replace(&key_of(&url_a), &key_of(&url_b));
    let (status, _, body) = fetch(&app, &edited).await;
    assert_eq!(status, 403);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "LINK_INVALID");
    let renamed = url_a.replace("n=a.pdf", "n=evil.html");
    assert_eq!(fetch(&app, &renamed).await.0, 403);
    let no_sig = url_a.split("&sig=").next().unwrap().to_string();
    assert_eq!(fetch(&app, &no_sig).await.0, 403);
    assert_eq!(fetch(&app, &url_a).await.0, 200);
    app.clock().advance(Duration::from_secs(119));
    assert_eq!(fetch(&app, &url_a).await.0, 200);
    app.clock().advance(Duration::from_secs(1));
    let (status, _, body) = fetch(&app, &url_a).await;
    assert_eq!(status, 410);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "LINK_EXPIRED", "{body}");
}

#[tokio::test]
async fn access_log_records_every_link_grant_revoke_and_share() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    let ua = |c: &str| (c.to_string(), "ledger-test/2.0");
    let send = |method: reqwest::Method, p: String, cookie: String| {
        let req = app
            .http
            .request(method, app.url(&p))
            .header("cookie", cookie)
            .header("user-agent", ua("").1);
        async move { common::Resp::from(req.send().await.unwrap()).await }
    };
    let r = send(
        reqwest::Method::POST,
        format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id),
        owner.cookie.clone(),
    )
    .await;
    let grant = r.data()["access_id"].as_str().unwrap().to_string();
    send(
        reqwest::Method::GET,
        format!("{}?o=f", path("fileURL", &file)),
        doctor.cookie.clone(),
    )
    .await
    .expect(200, "");
    send(
        reqwest::Method::POST,
        format!("{}?p={}", path("tempFileShare", &file), doctor.id),
        owner.cookie.clone(),
    )
    .await
    .expect(200, "");
    send(
        reqwest::Method::POST,
        format!("{}?p={}", path("revokeFileAccess", &file), doctor.id),
        owner.cookie.clone(),
    )
    .await
    .expect(200, "");
    send(
        reqwest::Method::GET,
        format!("{}?o=t", path("fileURL", &file)),
        owner.cookie.clone(),
    )
    .await
    .expect(200, "");

    // HEAD issues no link, so it records none: refused, with the method that works.
    for (route, cookie) in [
        (format!("{}?o=t", path("fileURL", &file)), &owner.cookie),
        (path("sharedFileURL", &grant), &doctor.cookie),
    ] {
        let r = app
            .http
            .head(app.url(&route))
            .header("cookie", cookie.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{route}");
        assert_eq!(r.headers()["allow"], "GET", "{route}");
    }

    let r = app
        .get("/protected/resource/accessLog?page=1", &owner.cookie)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["total"], 6); // grant, read, share, revoke x2 (grant and share), read
    let entries = r.data()["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "read").count(), 2);
    assert_eq!(actions.iter().filter(|a| **a == "revoke").count(), 2);
    assert!(actions.contains(&"grant") && actions.contains(&"share"));
    let doctor_read = entries
        .iter()
        .find(|e| e["action"] == "read" && e["actor"]["id"] == doctor.id.as_str())
        .expect("the doctor's read is recorded");
    assert_eq!(doctor_read["access_id"], grant.as_str());
    assert_eq!(doctor_read["actor"]["name"], "Dr Rao");
    assert_eq!(doctor_read["file_name"], "report.pdf");
    assert_eq!(doctor_read["ip"], "127.0.0.1");
    assert_eq!(doctor_read["user_agent"], "ledger-test/2.0");
    let grant_entry = entries.iter().find(|e| e["action"] == "grant").unwrap();
    assert_eq!(grant_entry["subject"]["id"], doctor.id.as_str());
    // Newest first.
    assert_eq!(entries[0]["action"], "read");
    assert_eq!(entries[0]["actor"]["id"], owner.id.as_str());
    // Ids follow the order rows were made, whether a request wrote its row (grant, share,
    // revoke) or the ledger's writer did (a link): rows of one millisecond still list in order.
    app.state.ledger.flush().await.unwrap();
    let by_id: Vec<(String,)> =
        sqlx::query_as("SELECT action FROM file_access_log WHERE owner_id = $1 ORDER BY id")
            .bind(&owner.id)
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    let by_id: Vec<&str> = by_id.iter().map(|(a,)| a.as_str()).collect();
    assert_eq!(
        by_id,
        ["grant", "read", "share", "revoke", "revoke", "read"]
    );

    // Nobody else reads it; it cannot be edited.
    let r = app
        .get("/protected/resource/accessLog", &doctor.cookie)
        .await;
    assert_eq!(r.data()["total"], 0);
    app.get("/protected/resource/accessLog?page=0", &owner.cookie)
        .await
        .expect(422, "VALIDATION_FAILED");
    let edit = sqlx::query("UPDATE file_access_log SET action = 'x'")
        .execute(&app.state.db.pool)
        .await;
    assert!(edit.is_err(), "the ledger must refuse updates");
}

/// The ledger shows who acted under the name they had when they acted: a doctor who reads a
/// file, then renames themselves and erases their account, stays in the owner's ledger under
/// the name they read it with (rows of the link just issued, still in the journal, included).
#[tokio::test]
async fn the_ledger_keeps_names_as_they_were() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    let give = format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id);
    app.post_empty(&give, &owner.cookie).await.expect(200, "");
    link(&app, &doctor, &format!("{}?o=f", path("fileURL", &file))).await;
    let rename = |name: &str| {
        app.post(
            "/protected/user/updateProfile",
            &doctor.cookie,
            serde_json::json!({ "name": name }),
        )
    };
    rename("Someone Else").await.expect(200, "");
    link(&app, &doctor, &format!("{}?o=f", path("fileURL", &file))).await;
    let names = || async {
        let r = app
            .get("/protected/resource/accessLog", &owner.cookie)
            .await;
        r.expect(200, "");
        let entries = r.data()["entries"].as_array().unwrap().clone();
        let mut out: Vec<(String, String)> = entries
            .iter()
            .filter_map(|e| {
                let person = if e["actor"]["id"] == doctor.id.as_str() {
                    &e["actor"]
                } else if e["subject"]["id"] == doctor.id.as_str() {
                    &e["subject"]
                } else {
                    return None;
                };
                Some((
                    e["action"].as_str().unwrap().to_string(),
                    person["name"].as_str().unwrap().to_string(),
                ))
            })
            .collect();
        out.sort();
        out
    };
    let before = vec![
        ("grant".to_string(), "Dr Rao".to_string()),
        ("read".to_string(), "Dr Rao".to_string()),
        ("read".to_string(), "Someone Else".to_string()),
    ];
    assert_eq!(names().await, before);
    app.post(
        "/protected/user/deleteProfile",
        &doctor.cookie,
        serde_json::json!({}),
    )
    .await
    .expect(200, "");
    let after = names().await;
    assert!(
        after.iter().all(|(_, name)| name != "deleted account"),
        "{after:?}"
    );
    for row in &before {
        assert!(after.contains(row), "{row:?} lost from {after:?}");
    }
}

/// The reader's name is taken with the link's own read, not when its row reaches the table: a
/// name changed a moment later (here straight in the database, so nothing flushes the journal
/// first) does not reach the row. Both `fileURL` and `sharedFileURL`.
#[tokio::test]
async fn a_links_row_keeps_the_name_read_with_it() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    let give = format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id);
    let r = app.post_empty(&give, &owner.cookie).await;
    r.expect(200, "");
    let access = r.data()["access_id"].as_str().unwrap().to_string();
    link(&app, &doctor, &format!("{}?o=f", path("fileURL", &file))).await;
    link(&app, &doctor, &path("sharedFileURL", &access)).await;
    sqlx::query("UPDATE users SET name = 'Renamed Later' WHERE id = $1")
        .bind(&doctor.id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let r = app
        .get("/protected/resource/accessLog", &owner.cookie)
        .await;
    r.expect(200, "");
    let reads: Vec<&Value> = r.data()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "read")
        .collect();
    assert_eq!(reads.len(), 2);
    for e in reads {
        assert_eq!(e["actor"]["name"], "Dr Rao", "{e}");
    }
}

#[tokio::test]
async fn ended_connection_and_erased_account_end_access() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    app.post_empty(
        &format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    app.post_empty(
        &format!("{}?p={}&t=r", path("tempFileShare", &file), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    let r = app
        .get("/protected/resource/sharedWithMe", &doctor.cookie)
        .await;
    assert_eq!(r.data()["files"].as_array().unwrap().len(), 2);

    let mut tx = app.state.db.pool.begin().await.unwrap();
    let client = auravita::auth::ClientInfo {
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
    };
    let now = app.clock().now();
    auravita::files::end_access(
        &mut tx,
        Some(&owner.id),
        &doctor.id,
        &owner.id,
        now,
        &client,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let r = app
        .get("/protected/resource/sharedWithMe", &doctor.cookie)
        .await;
    assert_eq!(r.data()["files"].as_array().unwrap().len(), 0);
    app.get(&format!("{}?o=f", path("fileURL", &file)), &doctor.cookie)
        .await
        .expect(404, "NOT_FOUND");
    // The owner's ledger says when each live grant and share ended, and for whom.
    let r = app
        .get("/protected/resource/accessLog?page=1", &owner.cookie)
        .await;
    let entries = r.data()["entries"].as_array().unwrap();
    let ended: Vec<&Value> = entries.iter().filter(|e| e["action"] == "end").collect();
    assert_eq!(ended.len(), 2, "{entries:?}");
    for e in &ended {
        assert_eq!(e["subject"]["id"], doctor.id.as_str());
        assert_eq!(e["file_name"], "report.pdf");
        assert!(e["access_id"].is_string());
    }
    assert_ne!(ended[0]["access_id"], ended[1]["access_id"]);

    let mut tx = app.state.db.pool.begin().await.unwrap();
    let keys = auravita::files::forget_user(&mut tx, &owner.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("files/"));
    assert!(app.state.storage.exists(&keys[0]).await.unwrap());
    auravita::files::delete_objects(&app.state, &keys)
        .await
        .unwrap();
    auravita::files::delete_objects(&app.state, &keys)
        .await
        .unwrap(); // idempotent
    assert!(!app.state.storage.exists(&keys[0]).await.unwrap());
    let r = app
        .get("/protected/resource/userFiles", &owner.cookie)
        .await;
    assert_eq!(r.data()["total"], 0);
}

#[tokio::test]
async fn sweep_removes_only_old_orphans() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let file = upload(&app, &owner, pdf(1000), "kept.pdf").await;
    let tmp = app.state.storage.tmp_dir().join("orphan");
    // More orphans than one lookup query checks (256), around the one object a row points at.
    for i in 0..300 {
        // (Storing moves the temporary file.)
        std::fs::write(&tmp, b"%PDF-orphan").unwrap();
        app.state
            .storage
            .put_file(&format!("files/orphan{i:04}"), &tmp, 11)
            .await
            .unwrap();
    }
    assert_eq!(
        auravita::files::sweep(&app.state).await.unwrap(),
        0,
        "young orphans stay"
    );
    app.clock().advance(Duration::from_secs(61 * 60));
    assert_eq!(auravita::files::sweep(&app.state).await.unwrap(), 300);
    assert!(!app.state.storage.exists("files/orphan0000").await.unwrap());
    assert!(!app.state.storage.exists("files/orphan0299").await.unwrap());
    let owner = User {
        cookie: app.signin(&owner.phone).await,
        ..owner
    };
    let url = link(&app, &owner, &format!("{}?o=t", path("fileURL", &file))).await;
    let (status, _, body) = fetch(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(body, pdf(1000));
}

// ---------------------------------------------------------------------------------------------
// S3

async fn object_key(app: &TestApp, id: &str) -> String {
    let (k,): (String,) = sqlx::query_as("SELECT object_key FROM files WHERE id = $1")
        .bind(id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    k
}

struct S3Env {
    endpoint: String,
    bucket: String,
    key_id: String,
    secret: String,
}

/// The S3 server from `.ci/s3.sh`; in CI its absence is a failure, not a skip.
fn s3_env() -> Option<S3Env> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("AURAVITA_TEST_S3_ENDPOINT"),
        var("AURAVITA_TEST_S3_BUCKET"),
        var("AURAVITA_TEST_S3_ACCESS_KEY_ID"),
        var("AURAVITA_TEST_S3_SECRET_ACCESS_KEY"),
    ) {
        (Some(endpoint), Some(bucket), Some(key_id), Some(secret)) => Some(S3Env {
            endpoint,
            bucket,
            key_id,
            secret,
        }),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but AURAVITA_TEST_S3_* are not set: run .ci/s3.sh first"
            );
            eprintln!("skipping S3 tests: AURAVITA_TEST_S3_* not set (see .ci/s3.sh)");
            None
        }
    }
}

async fn spawn_s3(env: &S3Env) -> TestApp {
    TestApp::spawn_with(|cfg| {
        cfg.storage_url = Some(format!("s3://{}", env.bucket));
        cfg.s3_endpoint = Some(env.endpoint.clone());
        cfg.s3_access_key_id = Some(env.key_id.clone());
        cfg.s3_secret_access_key = Some(env.secret.clone().into());
    })
    .await
}

#[tokio::test]
async fn s3_roundtrip_sharing_and_ready() {
    let Some(env) = s3_env() else { return };
    let app = spawn_s3(&env).await;
    assert!(app.state.storage.is_s3());
    app.get("/health/ready", "").await.expect(200, "");
    // Readiness asks the store about one object (no listing): with a wrong key the store's
    // refusal is not "not found", and the instance is not ready.
    let wrong = TestApp::spawn_with(|cfg| {
        cfg.storage_url = Some(format!("s3://{}", env.bucket));
        cfg.s3_endpoint = Some(env.endpoint.clone());
        cfg.s3_access_key_id = Some(env.key_id.clone());
        cfg.s3_secret_access_key = Some("not-the-secret".to_string().into());
    })
    .await;
    let r = wrong.get("/health/ready", "").await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.body);
    roundtrip(&app).await;

    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let bytes = pdf(5 * MIB);
    let file = upload(&app, &owner, bytes.clone(), "big.pdf").await;
    let r = app
        .post_empty(
            &format!("{}?p={}&t=r", path("tempFileShare", &file), doctor.id),
            &owner.cookie,
        )
        .await;
    let share = r.data()["access_id"].as_str().unwrap().to_string();
    let url = link(&app, &doctor, &path("sharedFileURL", &share)).await;
    assert!(url.starts_with(&env.endpoint), "{url}");
    assert!(url.contains("X-Amz-Expires=120"), "{url}");
    let (status, _, body) = fetch(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), bytes.len());
    assert!(body == bytes, "downloaded bytes differ");
    // Deleting removes the object from the bucket.
    let keys: Vec<(String,)> = sqlx::query_as("SELECT object_key FROM files WHERE id = $1")
        .bind(&file)
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    app.post_empty(&path("deleteFile", &file), &owner.cookie)
        .await
        .expect(200, "");
    assert!(!app.state.storage.exists(&keys[0].0).await.unwrap());
    assert_eq!(fetch(&app, &url).await.0, 404);
}

#[tokio::test]
async fn s3_refuses_expired_and_edited_links() {
    let Some(env) = s3_env() else { return };
    let app = spawn_s3(&env).await;
    let owner = app.signup("Asha", "patient").await;
    let a = upload(&app, &owner, pdf(1000), "a.pdf").await;
    let b = upload(&app, &owner, pdf(2000), "b.pdf").await;
    let (key_a, key_b) = (object_key(&app, &a).await, object_key(&app, &b).await);
    let url_a = link(&app, &owner, &format!("{}?o=t", path("fileURL", &a))).await;
    assert!(url_a.contains(&key_a));
    assert_eq!(fetch(&app, &url_a).await.0, 200);

    // File A's link edited to name file B: the signature no longer matches.
    let edited = url_a.replace(&key_a, &key_b);
    let (status, _, body) = fetch(&app, &edited).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("SignatureDoesNotMatch"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Signed ten minutes ago for two minutes: the server says it has expired.
    let s3 = app.state.storage.s3().unwrap();
    let past = chrono::Utc::now().timestamp_millis() - 10 * 60 * 1000;
    let old = s3.presign_get(&key_a, "attachment", "application/pdf", past, 120);
    let (status, _, body) = fetch(&app, &old).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("expired"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The same signing, current: accepted (so the refusal above is about time only).
    let now = chrono::Utc::now().timestamp_millis();
    let fresh = s3.presign_get(&key_a, "attachment", "application/pdf", now, 120);
    assert_eq!(fetch(&app, &fresh).await.0, 200);
    // A wrong secret is refused too.
    let forged = fresh.replace(&fresh[fresh.len() - 8..], "00000000");
    assert_eq!(fetch(&app, &forged).await.0, 403);
}

/// Link issuance reads its file and grants in batches (`auravita::batch`): requests in flight at
/// once share a query. Each caller must still get exactly their own access — the owner's link,
/// the grantee's link under their grant, 404 for everyone else — and a revocation must hold for
/// the very next burst.
#[tokio::test]
async fn concurrent_links_each_follow_their_own_access() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    let stranger = app.signup("Dr Nobody", "doctor").await;
    let other_patient = app.signup("Meera", "patient").await;
    connect(&app, &owner, &doctor).await;
    let a = upload(&app, &owner, pdf(1000), "a.pdf").await;
    let b = upload(&app, &owner, pdf(2000), "b.pdf").await;
    let r = app
        .post_empty(
            &format!("{}?p={}&t=r", path("createFileAccess", &a), doctor.id),
            &owner.cookie,
        )
        .await;
    r.expect(200, "");
    let grant = r.data()["access_id"].as_str().unwrap().to_string();
    // Sessions that are not live ride in every burst: one signed out, one made up.
    let signed_out = app.signup("Ravi", "patient").await;
    app.post_empty("/auth/signout", &signed_out.cookie)
        .await
        .expect(200, "");
    let (cookie_name, _) = owner.cookie.split_once('=').unwrap();
    let made_up = User {
        cookie: format!("{cookie_name}=bm90LWEtcmVhbC1zZXNzaW9uLXRva2VuLWF0LWFsbC0xMjM"),
        ..signed_out.clone()
    };

    // (caller, route, expected status, expected access_id)
    let burst = |doctor_has_a: bool| {
        let cases: Vec<(&User, String, u16, Option<String>)> = vec![
            (&owner, path("fileURL", &a), 200, None),
            (&owner, format!("{}?o=t", path("fileURL", &b)), 200, None),
            (&owner, format!("{}?o=f", path("fileURL", &a)), 404, None),
            (
                &doctor,
                path("fileURL", &a),
                if doctor_has_a { 200 } else { 404 },
                doctor_has_a.then(|| grant.clone()),
            ),
            (&doctor, format!("{}?o=t", path("fileURL", &a)), 404, None),
            (&doctor, path("fileURL", &b), 404, None),
            (&stranger, path("fileURL", &a), 404, None),
            (&other_patient, path("fileURL", &b), 404, None),
            (&owner, path("fileURL", "no-such-file"), 404, None),
            // A malformed request is refused as such only for a live session.
            (&owner, format!("{}?o=x", path("fileURL", &a)), 422, None),
            (&signed_out, path("fileURL", &a), 401, None),
            (
                &signed_out,
                format!("{}?o=x", path("fileURL", &a)),
                401,
                None,
            ),
            (&made_up, format!("{}?o=t", path("fileURL", &b)), 401, None),
        ];
        let app = &app;
        async move {
            let calls =
                (0..3)
                    .flat_map(|_| cases.clone())
                    .map(|(who, route, status, access)| async move {
                        (
                            who,
                            route.clone(),
                            status,
                            access,
                            app.get(&route, &who.cookie).await,
                        )
                    });
            for (who, route, status, access, r) in futures::future::join_all(calls).await {
                assert_eq!(
                    r.status.as_u16(),
                    status,
                    "{} {route}: {}",
                    who.name,
                    r.body
                );
                if status == 200 {
                    assert_eq!(r.data()["access_id"].as_str(), access.as_deref(), "{route}");
                    assert!(r.data()["url"].as_str().unwrap().starts_with("http"));
                } else {
                    let code = match status {
                        401 => "UNAUTHENTICATED",
                        422 => "VALIDATION_FAILED",
                        _ => "NOT_FOUND",
                    };
                    r.expect(status, code);
                }
            }
        }
    };
    burst(true).await;
    app.post_empty(
        &format!("{}?p={}", path("revokeFileAccess", &a), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    burst(false).await;
    // The bursts were in fact batched: fewer queries than the requests they answered.
    let (queries, keys) = app.state.session_files.counts();
    assert!(
        keys >= 60 && queries < keys,
        "{queries} queries for {keys} lookups"
    );
    // Each of the 15 links issued has its ledger row; /metrics counts the ledger's commits and rows.
    let (commits, rows) = app.state.ledger.counts();
    assert!(
        rows >= 15 && (1..=rows).contains(&commits),
        "{commits} commits for {rows} rows"
    );
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    for line in [
        format!("auravita_batch_queries_total{{kind=\"ledger\"}} {commits}"),
        format!("auravita_batch_keys_total{{kind=\"ledger\"}} {rows}"),
    ] {
        assert!(text.contains(&line), "{line} not in {text}");
    }
    // An idle session is ended on its next link request, as on any other route.
    app.clock().advance(std::time::Duration::from_secs(31 * 60));
    app.get(&path("fileURL", &a), &owner.cookie)
        .await
        .expect(401, "SESSION_EXPIRED");
    app.get(&path("fileURL", &a), &owner.cookie)
        .await
        .expect(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_erased_account_takes_its_latest_ledger_rows_along() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    let mut url = String::new();
    for _ in 0..3 {
        url = link(&app, &owner, &format!("{}?o=t", path("fileURL", &file))).await;
    }
    // On SQLite these rows may still wait in the ledger's journal: the erasure moves them first.
    app.post_empty("/protected/user/deleteProfile", &owner.cookie)
        .await
        .expect(200, "");
    // The owner's own link stops with the account, before the purge removes the object.
    if !app.state.storage.is_s3() {
        let (status, _, body) = fetch(&app, &url).await;
        assert_eq!(status, 410);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "FILE_DELETED", "{body}");
    }
    app.state.ledger.flush().await.unwrap();
    let left = app
        .count(
            "SELECT COUNT(*) FROM file_access_log WHERE owner_id = $1",
            &[&owner.id],
        )
        .await;
    assert_eq!(left, 0);
}

/// A doctor who erases the account loses what was shared, and each owner's ledger says so: an
/// `end` row per live grant or share, about that doctor (whose name is gone with the account).
#[tokio::test]
async fn an_erased_doctor_leaves_end_rows_in_the_owners_ledgers() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let other = app.signup("Bela", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    let theirs = upload(&app, &other, pdf(1000), "scan.pdf").await;
    app.post_empty(
        &format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    app.post_empty(
        &format!("{}?p={}&t=r", path("tempFileShare", &theirs), doctor.id),
        &other.cookie,
    )
    .await
    .expect(200, "");
    app.post_empty("/protected/user/deleteProfile", &doctor.cookie)
        .await
        .expect(200, "");
    for (who, name) in [(&owner, "report.pdf"), (&other, "scan.pdf")] {
        let r = app
            .get("/protected/resource/accessLog?page=1", &who.cookie)
            .await;
        let entries = r.data()["entries"].as_array().unwrap();
        let ended: Vec<&Value> = entries.iter().filter(|e| e["action"] == "end").collect();
        assert_eq!(ended.len(), 1, "{entries:?}");
        assert_eq!(ended[0]["subject"]["id"], doctor.id.as_str());
        assert_eq!(ended[0]["actor"]["id"], doctor.id.as_str());
        assert_eq!(ended[0]["file_name"], name);
    }
}

/// A NUL character in a path or query parameter is refused before any statement runs: the same
/// 4xx on both databases (PostgreSQL cannot store it), and a batched `fileURL` read shared with
/// other requests never fails for them.
#[tokio::test]
async fn a_nul_in_an_id_or_parameter_is_refused_and_fails_no_one_else() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    for route in ["fileURL", "sharedFileURL"] {
        let r = app.get(&path(route, "x%00y"), &owner.cookie).await;
        r.expect(400, "BAD_PATH");
    }
    app.get(&path("patientFileData", "%00"), &doctor.cookie)
        .await
        .expect(400, "BAD_PATH");
    app.post_empty(&path("deleteFile", "%00"), &owner.cookie)
        .await
        .expect(400, "BAD_PATH");
    for route in ["createFileAccess", "tempFileShare", "revokeFileAccess"] {
        let r = app
            .post_empty(
                &format!("{}?p=a%00b&t=r", path(route, &file)),
                &owner.cookie,
            )
            .await;
        r.expect(422, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], "p", "{route}");
    }
    // Without a session, that is said first.
    app.get(&path("fileURL", "x%00y"), "")
        .await
        .expect(401, "UNAUTHENTICATED");
    // Good links asked for at the same moment as bad ones all succeed.
    let good = format!("{}?o=t", path("fileURL", &file));
    let bad = path("fileURL", "x%00y");
    let mut calls = Vec::new();
    for i in 0..30 {
        let route = if i % 3 == 0 {
            bad.clone()
        } else {
            good.clone()
        };
        let (app, cookie) = (&app, owner.cookie.clone());
        calls.push(async move { (i % 3 == 0, app.get(&route, &cookie).await.status.as_u16()) });
    }
    for (is_bad, status) in futures::future::join_all(calls).await {
        assert_eq!(status, if is_bad { 400 } else { 200 });
    }
}

/// Sends `request` while `tx` (the other side of a race) is still open, and commits `tx` 300 ms
/// later: the request must wait for it, or miss it.
async fn while_open<T>(
    tx: sqlx::Transaction<'static, sqlx::Any>,
    request: impl std::future::Future<Output = T>,
) -> T {
    let committing = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.commit().await.unwrap();
    };
    tokio::join!(request, committing).0
}

/// A grant asked for while its connection is being ended: the grant waits for the end and is
/// refused, instead of outliving the connection (on PostgreSQL it used to land unseen).
#[tokio::test]
async fn a_grant_racing_the_end_of_its_connection_is_refused() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    // deleteConnection's transaction, held open.
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("DELETE FROM connections WHERE patient_id = $1 AND doctor_id = $2")
        .bind(&owner.id)
        .bind(&doctor.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let client = auravita::auth::ClientInfo {
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
    };
    auravita::files::end_access(
        &mut tx,
        Some(&owner.id),
        &doctor.id,
        &doctor.id,
        app.clock().now(),
        &client,
    )
    .await
    .unwrap();
    let grant = format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id);
    let r = while_open(tx, app.post_empty(&grant, &owner.cookie)).await;
    r.expect(403, "NOT_CONNECTED");
    let r = app
        .get("/protected/resource/sharedWithMe", &doctor.cookie)
        .await;
    assert_eq!(r.data()["files"].as_array().unwrap().len(), 0);
    let n = app.count("SELECT COUNT(*) FROM file_grants", &[]).await;
    assert_eq!(n, 0);
}

/// A share asked for while its file is being deleted: 404, never a 500 (PostgreSQL refused the
/// grant's row once the file was gone).
#[tokio::test]
async fn a_share_racing_the_delete_of_its_file_is_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    // deleteFile's transaction, held open.
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("DELETE FROM files WHERE id = $1")
        .bind(&file)
        .execute(&mut *tx)
        .await
        .unwrap();
    let share = format!("{}?p={}&t=r", path("tempFileShare", &file), doctor.id);
    let r = while_open(tx, app.post_empty(&share, &owner.cookie)).await;
    r.expect(404, "NOT_FOUND");
}

/// A share asked for while its owner's erase is under way (the erase holds the account's row
/// from its start, then deletes the files): the share waits for the erase and finds the file
/// gone (404). On PostgreSQL the share used to lock the file's row first and then wait for the
/// account's, while the erase held the account and waited for the file: a deadlock, one side
/// answered 503.
#[tokio::test]
async fn a_share_racing_its_owners_erase_waits_for_it() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    // The erase's transaction: the account held first, the files deleted 300 ms later.
    let mut tx = app.erase_started(&owner.id).await;
    let erase = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("DELETE FROM files WHERE owner_id = $1")
            .bind(&owner.id)
            .execute(&mut *tx)
            .await
            .expect("the erase's delete of the files");
        tx.commit().await.unwrap();
    };
    let share = format!("{}?p={}&t=r", path("tempFileShare", &file), doctor.id);
    let (r, ()) = tokio::join!(app.post_empty(&share, &owner.cookie), erase);
    r.expect(404, "NOT_FOUND");
    let n = app.count("SELECT COUNT(*) FROM file_grants", &[]).await;
    assert_eq!(n, 0);
}

/// Shares to a doctor the patient is not connected with raise a notice each: at most 20 an hour
/// (429 after, nothing shared, no notice), so sharing and revoking in a loop cannot bury a
/// doctor in notices. Shares to connected doctors are not counted; the hour ends.
#[tokio::test]
async fn shares_to_unconnected_doctors_are_limited_per_hour() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let stranger = app.signup("Dr Rao", "doctor").await;
    let mine = app.signup("Dr Iyer", "doctor").await;
    connect(&app, &owner, &mine).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    let share = |to: &User| format!("{}?p={}&t=r", path("tempFileShare", &file), to.id);
    let revoke = format!("{}?p={}", path("revokeFileAccess", &file), stranger.id);
    let notices = |u: &User| {
        let cookie = u.cookie.clone();
        let app = &app;
        async move {
            let r = app.get("/protected/notification/list", &cookie).await;
            r.expect(200, "");
            r.data()["unread"].as_i64().unwrap()
        }
    };
    // A share to no doctor at all is refused and not counted.
    for _ in 0..5 {
        let r = app
            .post_empty(
                &format!("{}?p=nobody&t=r", path("tempFileShare", &file)),
                &owner.cookie,
            )
            .await;
        r.expect(404, "NOT_FOUND");
    }
    // Nor is a share of a file that is not the caller's.
    let other = format!(
        "{}?p={}&t=r",
        path("tempFileShare", "nosuchfile"),
        stranger.id
    );
    for _ in 0..25 {
        app.post_empty(&other, &owner.cookie)
            .await
            .expect(404, "NOT_FOUND");
    }
    for _ in 0..10 {
        app.post_empty(&share(&stranger), &owner.cookie)
            .await
            .expect(200, "");
        app.post_empty(&revoke, &owner.cookie).await.expect(200, "");
        app.post_empty(&share(&stranger), &owner.cookie)
            .await
            .expect(200, "");
    }
    let before = notices(&stranger).await;
    let r = app.post_empty(&share(&stranger), &owner.cookie).await;
    r.expect(429, "RATE_LIMITED");
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(
        notices(&stranger).await,
        before,
        "a refused share raised a notice"
    );
    // The connected doctor is not held back by it.
    for _ in 0..25 {
        app.post_empty(&share(&mine), &owner.cookie)
            .await
            .expect(200, "");
    }
    // An hour on, in steps short of the idle timeout (each request keeps the session).
    for secs in [1500, 1500, 601] {
        app.clock().advance(Duration::from_secs(secs));
        notices(&owner).await;
    }
    app.post_empty(&share(&stranger), &owner.cookie)
        .await
        .expect(200, "");
}

/// A revoke or a file delete while the doctor holding a grant on it is being erased (the erase
/// holds the doctor's account from its start, then ends the doctor's grants): each waits for the
/// erase and answers as if it came after it. On PostgreSQL both used to lock the grants first and
/// then wait for the doctor's account (the ledger row and notice they write name the doctor),
/// while the erase held the account and waited for the grants: a deadlock, one side 503.
#[tokio::test]
async fn a_revoke_or_delete_racing_the_grantees_erase_waits_for_it() {
    for route in ["revokeFileAccess", "deleteFile"] {
        let app = TestApp::spawn().await;
        let owner = app.signup("Asha", "patient").await;
        let doctor = app.signup("Dr Rao", "doctor").await;
        connect(&app, &owner, &doctor).await;
        let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
        let give = format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id);
        app.post_empty(&give, &owner.cookie).await.expect(200, "");
        let mut tx = app.erase_started(&doctor.id).await;
        let erase = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::query(
                "UPDATE file_grants SET ended_at = $2, ended_reason = 'account_deleted' \
                 WHERE grantee_id = $1",
            )
            .bind(&doctor.id)
            .bind(app.clock().now())
            .execute(&mut *tx)
            .await
            .expect("the erase's end of the doctor's grants");
            tx.commit().await.unwrap();
        };
        let request = match route {
            "revokeFileAccess" => format!("{}?p={}", path(route, &file), doctor.id),
            _ => path(route, &file),
        };
        let (r, ()) = tokio::join!(app.post_empty(&request, &owner.cookie), erase);
        assert!(
            r.status.as_u16() == 200 || r.status.as_u16() == 404,
            "{route}: {} {}",
            r.status,
            r.body
        );
    }
}

/// An upload still streaming when its owner erases the account: refused in the envelope
/// (409, nothing stored), not a 500 from the database refusing a row for a missing owner.
#[tokio::test]
async fn an_upload_outlived_by_its_account_stores_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let mut head =
        b"--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\
content-type: application/pdf\r\n\r\n"
            .to_vec();
    head.extend(pdf(20_000));
    tx.send(Ok(head)).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let uploading = app
        .http
        .post(app.url("/protected/resource/uploadFile"))
        .header("cookie", &owner.cookie)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send();
    let erasing = async {
        // The upload is admitted and streaming before the account goes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.post_empty("/protected/user/deleteProfile", &owner.cookie)
            .await
            .expect(200, "");
        tx.send(Ok(pdf(20_000)[9..].to_vec())).await.unwrap();
        tx.send(Ok(b"\r\n--XyZ--\r\n".to_vec())).await.unwrap();
        drop(tx);
    };
    let (r, ()) = tokio::join!(uploading, erasing);
    let r = common::Resp::from(r.unwrap()).await;
    r.expect(409, "GONE_MEANWHILE");
    let n = app.count("SELECT COUNT(*) FROM files", &[]).await;
    assert_eq!(n, 0);
    let left = app
        .state
        .storage
        .list_older_than("files", i64::MAX)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "the object went with its refused row: {left:?}"
    );
}

/// Two connected accounts, the doctor holding a grant on the patient's file, erased at the same
/// moment: both erases go through. Each writes about the other (the peer's notice, the owner's
/// ledger), so on PostgreSQL each used to hold its own account and then
/// wait for the other's: a deadlock, one side answered 503. Both are let go at once here: a
/// transaction holds their sessions, which each erase deletes first, for 300 ms.
#[tokio::test]
async fn two_connected_accounts_erased_at_once_both_go() {
    let app = TestApp::spawn().await;
    let patient = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &patient, &doctor).await;
    let file = upload(&app, &patient, pdf(1000), "report.pdf").await;
    app.post_empty(
        &format!("{}?p={}&t=r", path("createFileAccess", &file), doctor.id),
        &patient.cookie,
    )
    .await
    .expect(200, "");
    let lock = app
        .state
        .db
        .dialect
        .lock_rows(auravita::db::RowLock::Update);
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT id FROM sessions WHERE user_id IN ($1, $2){lock}"
    ))
    .bind(&patient.id)
    .bind(&doctor.id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let erase = "/protected/user/deleteProfile";
    let both = async {
        tokio::join!(
            app.post_empty(erase, &patient.cookie),
            app.post_empty(erase, &doctor.cookie)
        )
    };
    let (a, b) = while_open(tx, both).await;
    a.expect(200, "");
    b.expect(200, "");
    for table in ["users", "connections", "file_grants", "files"] {
        let n = app
            .count(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await;
        assert_eq!(n, 0, "{table}");
    }
}

/// `accessGiven`: the owner sees every live grant and share they gave, newest first, with the
/// doctor and the file; replaced, revoked and expired access is not listed; `f` narrows it to one
/// of their files; nobody else sees any of it.
#[tokio::test]
async fn access_given_lists_exactly_what_is_live() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let rao = app.signup("Dr Rao", "doctor").await;
    let walk_in = app.signup("Dr Walk-in", "doctor").await;
    connect(&app, &owner, &rao).await;
    let first = upload(&app, &owner, pdf(1000), "first.pdf").await;
    let second = upload(&app, &owner, pdf(1000), "second.pdf").await;
    let given = |query: &str| {
        let route = format!("/protected/resource/accessGiven{query}");
        let app = &app;
        let cookie = owner.cookie.clone();
        async move { app.get(&route, &cookie).await }
    };
    let r = given("").await;
    r.expect(200, "");
    assert_eq!(
        (r.data()["total"].as_i64(), r.data()["per_page"].as_i64()),
        (Some(0), Some(50))
    );

    let grant = |file: &str, doctor: &str, extra: &str| {
        format!("{}?p={doctor}&t=r{extra}", path("createFileAccess", file))
    };
    let r = app
        .post_empty(&grant(&first, &rao.id, ""), &owner.cookie)
        .await;
    let permanent = r.data()["access_id"].as_str().unwrap().to_string();
    app.clock().advance(Duration::from_secs(1));
    let r = app
        .post_empty(&grant(&second, &rao.id, "&e=60"), &owner.cookie)
        .await;
    let ending = r.data()["access_id"].as_str().unwrap().to_string();
    let ending_at = r.data()["expires_at"].clone();
    app.clock().advance(Duration::from_secs(1));
    let r = app
        .post_empty(
            &format!("{}?p={}&t=r", path("tempFileShare", &first), walk_in.id),
            &owner.cookie,
        )
        .await;
    let share = r.data()["access_id"].as_str().unwrap().to_string();

    let r = given("").await;
    assert_eq!(r.data()["total"], 3);
    let rows = r.data()["access"].as_array().unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|a| a["access_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [share.as_str(), ending.as_str(), permanent.as_str()],
        "newest first"
    );
    assert_eq!(rows[0]["access_kind"], "share");
    assert_eq!(rows[0]["doctor"]["id"], walk_in.id.as_str());
    assert_eq!(rows[0]["doctor"]["name"], "Dr Walk-in");
    assert_eq!(rows[0]["doctor"]["verified"], false);
    assert_eq!(rows[0]["file"]["id"], first.as_str());
    assert_eq!(rows[0]["file"]["name"], "first.pdf");
    assert!(rows[0]["expires_at"].is_string());
    assert_eq!(rows[1]["access_kind"], "grant");
    assert_eq!(rows[1]["file"]["name"], "second.pdf");
    assert_eq!(rows[1]["expires_at"], ending_at);
    assert!(rows[2]["expires_at"].is_null());
    assert!(rows[2]["granted_at"].is_string());
    let r = given(&format!("?f={first}")).await;
    let ids: Vec<&str> = r.data()["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["access_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [share.as_str(), permanent.as_str()]);

    // Nobody else sees it, and another's file is not found.
    for who in [&rao, &walk_in] {
        let r = app
            .get("/protected/resource/accessGiven", &who.cookie)
            .await;
        r.expect(200, "");
        assert_eq!(r.data()["total"], 0);
        app.get(
            &format!("/protected/resource/accessGiven?f={first}"),
            &who.cookie,
        )
        .await
        .expect(404, "NOT_FOUND");
    }

    // A new grant replaces the open one: listed once, with its new end.
    let r = app
        .post_empty(&grant(&first, &rao.id, "&e=120"), &owner.cookie)
        .await;
    let replacing = r.data()["access_id"].as_str().unwrap().to_string();
    let r = given(&format!("?f={first}")).await;
    let ids: Vec<&str> = r.data()["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["access_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [replacing.as_str(), share.as_str()]);
    // Revoked: gone from the list.
    app.post_empty(
        &format!("{}?p={}", path("revokeFileAccess", &second), rao.id),
        &owner.cookie,
    )
    .await
    .expect(200, "");
    assert_eq!(given("").await.data()["total"], 2);
    // Run out: the 30-minute share goes; the 120-minute grant stays, then goes too (time moves
    // in steps, each followed by a request, so that the session does not idle out).
    let wait = |minutes: u64| {
        let (given, app) = (&given, &app);
        async move {
            for _ in 0..minutes / 15 {
                app.clock().advance(Duration::from_secs(15 * 60));
                given("").await.expect(200, "");
            }
            app.clock().advance(Duration::from_secs(minutes % 15 * 60));
        }
    };
    wait(31).await;
    let r = given("").await;
    assert_eq!(r.data()["total"], 1);
    assert_eq!(r.data()["access"][0]["access_id"], replacing.as_str());
    wait(90).await;
    assert_eq!(given("").await.data()["total"], 0);

    given("?f=nope").await.expect(404, "NOT_FOUND");
    let r = given("?page=0").await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "page");
    let r = given("?file=x").await;
    r.expect(422, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "file");

    // Paged, 50 a page: 53 shares (written as rows) come back once each.
    for i in 0..53 {
        sqlx::query(
            "INSERT INTO file_grants (id, file_id, owner_id, grantee_id, kind, access, created_at) \
             VALUES ($1, $2, $3, $4, 'share', 'r', $5)",
        )
        .bind(format!("bulk{i:03}"))
        .bind(&second)
        .bind(&owner.id)
        .bind(&walk_in.id)
        .bind(app.clock().now() - 1000 - i)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    }
    let one = given("?page=1").await;
    let two = given("?page=2").await;
    assert_eq!(
        (one.data()["total"].as_i64(), two.data()["total"].as_i64()),
        (Some(53), Some(53))
    );
    let mut seen: Vec<String> = [one, two]
        .iter()
        .flat_map(|r| r.data()["access"].as_array().unwrap().clone())
        .map(|a| a["access_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen.len(), 53);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 53);
}

/// Two grants of one file to one doctor at the same moment (a double click, two tabs changing
/// the end): both succeed, the later replaces the earlier, and one grant is left open.
#[tokio::test]
async fn two_grants_at_once_both_succeed_and_leave_one_open() {
    let app = TestApp::spawn().await;
    let owner = app.signup("Asha", "patient").await;
    let doctor = app.signup("Dr Rao", "doctor").await;
    connect(&app, &owner, &doctor).await;
    let file = upload(&app, &owner, pdf(1000), "report.pdf").await;
    for round in 0..20 {
        let route = |e: u32| {
            format!(
                "{}?p={}&t=r&e={e}",
                path("createFileAccess", &file),
                doctor.id
            )
        };
        let (thirty, sixty) = (route(30), route(60));
        let (a, b) = tokio::join!(
            app.post_empty(&thirty, &owner.cookie),
            app.post_empty(&sixty, &owner.cookie)
        );
        assert_eq!(
            (a.status.as_u16(), b.status.as_u16()),
            (200, 200),
            "round {round}: {} / {}",
            a.body,
            b.body
        );
        let open = app
            .count(
                "SELECT COUNT(*) FROM file_grants WHERE file_id = $1 AND kind = 'grant' AND ended_at IS NULL",
                &[&file],
            )
            .await;
        assert_eq!(open, 1, "round {round}");
    }
}
