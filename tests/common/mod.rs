//! Test harness: a real server on port 0 over a fresh database (SQLite in a temporary folder, or
//! a new PostgreSQL database when `AURAVITA_TEST_DATABASE_URL` is set), spoken to over HTTP.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use auravita::{AppState, Config, Server};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub outbox: PathBuf,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    server: Option<Server>,
    pg: Option<PgDb>,
}

struct PgDb {
    admin_url: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread removes the database.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                }
            });
        })
        .join();
    }
}

/// Is this run against PostgreSQL?
pub fn pg_url() -> Option<String> {
    std::env::var("AURAVITA_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh database URL for one test (and the guard that drops it).
async fn fresh_database(dir: &std::path::Path) -> (String, Option<PgDb>) {
    match pg_url() {
        None => (format!("sqlite://{}/test.db", dir.display()), None),
        Some(admin_url) => {
            use sqlx::Connection;
            let name = format!("auravita_t_{}", uuid::Uuid::new_v4().simple());
            let mut c = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("AURAVITA_TEST_DATABASE_URL must reach PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut c)
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&format!("/{name}"));
            (url.to_string(), Some(PgDb { admin_url, name }))
        }
    }
}

/// The configuration tests start from: defaults, a fresh database, an outbox, generous per-IP limits.
pub fn base_config(dir: &std::path::Path, database_url: &str) -> Config {
    let mut cfg = Config::defaults_in(dir);
    cfg.database_url = Some(database_url.to_string().into());
    cfg.sms = "console".into();
    cfg.sms_outbox = Some(dir.join("outbox.jsonl"));
    cfg.limits.auth_ip_per_minute = 100_000;
    cfg.secret = Some(
        "test-secret-test-secret-test-secret-0123456789"
            .to_string()
            .into(),
    );
    cfg
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let (db_url, pg) = fresh_database(dir.path()).await;
        let mut cfg = base_config(dir.path(), &db_url);
        tweak(&mut cfg);
        Self::start(dir, cfg, pg).await
    }

    async fn start(dir: tempfile::TempDir, cfg: Config, pg: Option<PgDb>) -> TestApp {
        let outbox = cfg.sms_outbox.clone().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = AppState::build(cfg).await.expect("build app");
        let server = Server::start(state.clone(), listener).await.unwrap();
        TestApp {
            base: format!("http://{}", server.addr),
            state,
            outbox,
            dir,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            server: Some(server),
            pg,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn clock(&self) -> &auravita::clock::Clock {
        &self.state.clock
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(5)).await;
        }
    }

    /// A second server on this app's database (another instance behind the same load balancer):
    /// its own process state, clock and SMS outbox; the database stays owned by `self`.
    pub async fn spawn_peer(&self) -> TestApp {
        self.spawn_peer_with(|_| {}).await
    }

    pub async fn spawn_peer_with(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = base_config(dir.path(), self.state.db.url());
        tweak(&mut cfg);
        Self::start(dir, cfg, None).await
    }

    /// Sends a request; `cookie` is a session cookie (`name=value`) or empty.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if !cookie.is_empty() {
            req = req.header("cookie", cookie);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::from(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, cookie: &str) -> Resp {
        self.call(Method::GET, path, cookie, None).await
    }

    /// The served OpenAPI document.
    pub async fn openapi(&self) -> Value {
        self.http
            .get(self.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, cookie: &str, body: Value) -> Resp {
        self.call(Method::POST, path, cookie, Some(body)).await
    }

    /// POST with no body.
    pub async fn post_empty(&self, path: &str, cookie: &str) -> Resp {
        self.call(Method::POST, path, cookie, None).await
    }

    /// Every SMS sent so far, oldest first (after any background send in flight has finished).
    pub async fn sms(&self) -> Vec<Value> {
        self.state
            .sms_sent_by(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        std::fs::read_to_string(&self.outbox)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// An erase's transaction as it starts (`users::profile`): the account's row held
    /// `FOR UPDATE` (on PostgreSQL; SQLite's write lock on both), left open for a race test to
    /// go on with and commit.
    pub async fn erase_started(&self, user_id: &str) -> sqlx::Transaction<'static, sqlx::Any> {
        let lock = self
            .state
            .db
            .dialect
            .lock_rows(auravita::db::RowLock::Update);
        let mut tx = self.state.db.begin().await.unwrap();
        sqlx::query(&format!("SELECT id FROM users WHERE id = $1{lock}"))
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
        tx
    }

    /// One number straight from the database (a `SELECT COUNT(*) ...`, say), with the query's
    /// `$1, $2, ...` bound to `binds` in order.
    pub async fn count(&self, sql: &str, binds: &[&str]) -> i64 {
        let mut q = sqlx::query_as::<_, (i64,)>(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_one(&self.state.db.pool).await.unwrap().0
    }

    /// The code in the latest SMS to `phone`.
    pub async fn last_code(&self, phone: &str) -> String {
        let msgs = self.sms().await;
        let msg = msgs
            .iter()
            .rev()
            .find(|m| m["to"] == phone)
            .unwrap_or_else(|| panic!("no SMS to {phone} in {:?}: {msgs:?}", self.outbox));
        msg["body"].as_str().unwrap()[..6].to_string()
    }

    /// Signs up a new account and returns it signed in.
    pub async fn signup(&self, name: &str, role: &str) -> User {
        let phone = random_phone();
        self.signup_phone(&phone, name, role).await
    }

    pub async fn signup_phone(&self, phone: &str, name: &str, role: &str) -> User {
        let r = self.signup_answer(phone, name, role).await;
        let cookie = r.cookie.clone().expect("session cookie");
        User {
            id: r.data()["session"]["user_id"].as_str().unwrap().to_string(),
            phone: phone.to_string(),
            name: name.to_string(),
            cookie,
        }
    }

    /// Signs up `phone` with its code; returns the verify's answer (200), whose cookies are the
    /// new session's and the browser's device cookie.
    pub async fn signup_answer(&self, phone: &str, name: &str, role: &str) -> Resp {
        let r = self
            .post(
                "/auth/signup",
                "",
                serde_json::json!({"phone": phone, "name": name, "role": role}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "signup: {}", r.body);
        let id = r.data()["id"].as_str().unwrap().to_string();
        let code = self.last_code(phone).await;
        let r = self
            .post(
                &format!("/auth/signup/verify/{id}"),
                "",
                serde_json::json!({"otp": code}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "verify: {}", r.body);
        r
    }

    /// Asks `path` (`/auth/signin`, a resend, ...) for a code for `phone`; it must answer 200.
    /// Returns the verification id and the code the phone received.
    pub async fn send_code(&self, path: &str, phone: &str) -> (String, String) {
        self.send_code_from(path, phone, "").await
    }

    /// `send_code` from a browser holding `cookies` (a device cookie, say).
    pub async fn send_code_from(&self, path: &str, phone: &str, cookies: &str) -> (String, String) {
        let r = self
            .post(path, cookies, serde_json::json!({"phone": phone}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        let id = r.data()["id"].as_str().unwrap().to_string();
        (id, self.last_code(phone).await)
    }

    /// Signs an existing phone in (a new session) and returns its cookie.
    pub async fn signin(&self, phone: &str) -> String {
        let (id, code) = self.send_code("/auth/signin", phone).await;
        let r = self
            .post(
                &format!("/auth/signin/verify/{id}"),
                "",
                serde_json::json!({"otp": code}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "signin verify: {}", r.body);
        r.cookie.expect("session cookie")
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub phone: String,
    pub name: String,
    /// `name=value`, ready for a `Cookie` header.
    pub cookie: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    /// The session cookie set by this response, as `name=value` (empty value when cleared).
    pub cookie: Option<String>,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let cookie = headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("auravita_session="))
            .map(|v| v.split(';').next().unwrap().to_string());
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
            cookie,
        }
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The device cookie this response sets (`auravita::auth::device`; its name ends in a tag
    /// of the phone): `name=value`, and the whole `Set-Cookie` line.
    pub fn device_cookie(&self) -> Option<(String, String)> {
        let line = self
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("auravita_device_"))?;
        Some((line.split(';').next()?.to_string(), line.to_string()))
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the status and, for errors, the envelope and its code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        if status >= 400 {
            assert_eq!(self.body["success"], false, "body: {}", self.body);
            assert_eq!(self.code(), code, "body: {}", self.body);
            assert!(self.body["timestamp"].is_string());
        } else {
            assert_eq!(self.body["success"], true, "body: {}", self.body);
        }
        self
    }
}

/// A valid Indian mobile number nobody else in this run uses.
pub fn random_phone() -> String {
    format!(
        "+9198{:08}",
        rand::thread_rng().gen_range(0..100_000_000u32)
    )
}

impl TestApp {
    /// Sends a request with extra headers (for example `Authorization: Bearer ...`) and an
    /// optional session cookie.
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::from(req.send().await.expect("request")).await
    }

    /// GET with `Authorization: Bearer <token>`.
    pub async fn get_bearer(&self, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        self.call_with_headers(Method::GET, path, &[("authorization", &auth)], None)
            .await
    }

    /// POST a JSON body with `Authorization: Bearer <token>`.
    pub async fn post_bearer(&self, path: &str, token: &str, body: Value) -> Resp {
        let auth = format!("Bearer {token}");
        self.call_with_headers(Method::POST, path, &[("authorization", &auth)], Some(body))
            .await
    }
}
