//! Sign-in through an external identity provider: a local issuer runs in-process (discovery
//! document and JWKS from keys made here, tokens shaped like Auth0's), and every refusal is tested
//! beside the paths that succeed.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::TestApp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

const AUDIENCE: &str = "https://api.auravita.test";

struct RsaKey {
    encoding: EncodingKey,
    n: String,
    e: String,
    public_pem: String,
}

struct EcKey {
    encoding: EncodingKey,
    x: String,
    y: String,
}

struct Keys {
    rsa: [RsaKey; 2],
    ec: EcKey,
}

/// RSA key generation is slow in debug builds: once per test binary, the two keys in parallel.
static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(rsa_key);
        let b = s.spawn(rsa_key);
        (a.join().unwrap(), b.join().unwrap())
    });
    Keys {
        rsa: [a, b],
        ec: ec_key(),
    }
});

fn rsa_key() -> RsaKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = key.to_pkcs1_pem(LineEnding::LF).unwrap();
    RsaKey {
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        n: B64.encode(key.n().to_bytes_be()),
        e: B64.encode(key.e().to_bytes_be()),
        public_pem: key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
}

fn ec_key() -> EcKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let point = secret.public_key().to_encoded_point(false);
    EcKey {
        encoding: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        x: B64.encode(point.x().unwrap()),
        y: B64.encode(point.y().unwrap()),
    }
}

fn rsa_jwk(i: usize, kid: &str) -> Value {
    let k = &KEYS.rsa[i];
    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": k.n, "e": k.e})
}

fn ec_jwk(kid: &str) -> Value {
    let k = &KEYS.ec;
    json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": k.x, "y": k.y})
}

/// A symmetric key in the JWKS: it must be ignored, never used to verify.
fn oct_jwk(kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": B64.encode(b"shared-secret-shared-secret-0123")})
}

/// The local identity provider.
struct Issuer {
    /// With a trailing slash, as Auth0 writes it.
    url: String,
    addr: SocketAddr,
    shared: Arc<IssuerState>,
}

struct IssuerState {
    url: String,
    jwks: Mutex<Vec<Value>>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    failing: AtomicBool,
    /// The discovery document names another issuer.
    misnamed: AtomicBool,
}

impl Issuer {
    async fn start(keys: Vec<Value>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, keys).await
    }

    async fn serve(listener: tokio::net::TcpListener, keys: Vec<Value>) -> Issuer {
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}/");
        let shared = Arc::new(IssuerState {
            url: url.clone(),
            jwks: Mutex::new(keys),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            misnamed: AtomicBool::new(false),
        });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer { url, addr, shared }
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.shared.jwks.lock().unwrap() = keys;
    }

    fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    fn discovery_hits(&self) -> usize {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }

    fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }
}

async fn discovery(State(s): State<Arc<IssuerState>>) -> Result<Json<Value>, StatusCode> {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let issuer = if s.misnamed.load(Ordering::SeqCst) {
        "https://someone-else.example/".to_string()
    } else {
        s.url.clone()
    };
    Ok(Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{}authorize", s.url),
        "token_endpoint": format!("{}oauth/token", s.url),
        "jwks_uri": format!("{}.well-known/jwks.json", s.url),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    })))
}

async fn jwks(State(s): State<Arc<IssuerState>>) -> Result<Json<Value>, StatusCode> {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(Json(json!({ "keys": *s.jwks.lock().unwrap() })))
}

fn default_keys() -> Vec<Value> {
    vec![oct_jwk("hmac-1"), rsa_jwk(0, "rsa-1"), ec_jwk("ec-1")]
}

/// The server's clock, in seconds (tests move it forward).
fn now_secs(app: &TestApp) -> i64 {
    app.clock().now() / 1000
}

/// Claims like an Auth0 access token's.
fn claims(app: &TestApp, issuer: &Issuer, sub: &str) -> Value {
    let now = now_secs(app);
    json!({
        "iss": issuer.url,
        "sub": sub,
        "aud": [AUDIENCE, format!("{}userinfo", issuer.url)],
        "iat": now,
        "exp": now + 3600,
        "azp": "abcdefghijklmnop",
        "scope": "openid profile email",
    })
}

fn sign(alg: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(kid: &str, claims: &Value) -> String {
    sign(Algorithm::RS256, kid, claims, &KEYS.rsa[0].encoding)
}

fn es256(kid: &str, claims: &Value) -> String {
    sign(Algorithm::ES256, kid, claims, &KEYS.ec.encoding)
}

async fn spawn_for(issuer: &Issuer) -> TestApp {
    let url = issuer.url.clone();
    TestApp::spawn_with(move |cfg| {
        cfg.oidc_issuer = Some(url);
        cfg.oidc_audience = Some(AUDIENCE.into());
    })
    .await
}

async fn register(app: &TestApp, token: &str, name: &str, role: &str) -> common::Resp {
    app.post_bearer(
        "/auth/oidc/register",
        token,
        json!({"name": name, "role": role}),
    )
    .await
}

#[tokio::test]
async fn register_then_act_as_that_user_with_rs256_and_es256() {
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;

    // RS256, a patient.
    let token = rs256("rsa-1", &claims(&app, &issuer, "auth0|abc"));
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
    let r = register(&app, &token, "Asha Rao", "patient").await;
    r.expect(201, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(r.data()["user"]["id"], id.as_str());
    assert_eq!(r.data()["user"]["phone"], Value::Null);
    assert_eq!(r.data()["user"]["role"], "patient");

    let r = app
        .get_bearer("/protected/user/sessionDetail", &token)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["id"], id.as_str());
    assert_eq!(r.data()["user"]["name"], "Asha Rao");
    assert_eq!(r.data()["user"]["phone"], Value::Null);
    assert_eq!(r.data()["user"]["role"], "patient");
    assert_eq!(r.data()["profile"]["role"], "patient");

    // A fresh token for the same identity is the same account; registering again is a conflict.
    app.clock().advance(Duration::from_secs(5));
    let again = rs256("rsa-1", &claims(&app, &issuer, "auth0|abc"));
    let r = app
        .get_bearer("/protected/user/sessionDetail", &again)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["id"], id.as_str());
    register(&app, &again, "Asha Again", "doctor")
        .await
        .expect(409, "OIDC_ALREADY_REGISTERED");
    let r = app
        .get_bearer("/protected/user/sessionDetail", &again)
        .await;
    assert_eq!(r.data()["user"]["name"], "Asha Rao");
    // The identity provider owns this account's second step: the authenticator routes refuse.
    app.get_bearer("/protected/user/totp", &again)
        .await
        .expect(403, "TOTP_NOT_AVAILABLE");
    app.post_bearer("/protected/user/totp/setup", &again, json!({}))
        .await
        .expect(403, "TOTP_NOT_AVAILABLE");
    app.post_bearer(
        "/protected/user/totp/disable",
        &again,
        json!({"code": "123456"}),
    )
    .await
    .expect(403, "TOTP_NOT_AVAILABLE");

    // Download links for a bearer caller: judged by its token, then the file read on its own.
    // The file row is made directly (uploads have their own tests).
    sqlx::query(
        "INSERT INTO files (id, owner_id, object_key, file_name, content_type, size_bytes, \
         sha256, created_at) VALUES ($1, $2, $3, 'a.pdf', 'application/pdf', 1, 'x', 0)",
    )
    .bind("bearer-file")
    .bind(&id)
    .bind("files/bearer-file")
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let link = "/protected/resource/fileURL/bearer-file";
    let r = app.get_bearer(link, &again).await;
    r.expect(200, "");
    assert!(r.data()["url"]
        .as_str()
        .unwrap()
        .contains("/objects/files/bearer-file?"));
    app.get_bearer(&format!("{link}?o=f"), &again)
        .await
        .expect(404, "NOT_FOUND");
    app.get_bearer(&format!("{link}?o=x"), &again)
        .await
        .expect(422, "VALIDATION_FAILED");
    app.get_bearer("/protected/resource/fileURL/no-such-file", &again)
        .await
        .expect(404, "NOT_FOUND");

    // ES256, a doctor.
    let token = es256("ec-1", &claims(&app, &issuer, "google-oauth2|1234567890"));
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
    let r = register(&app, &token, "Dr. Ravi", "doctor").await;
    r.expect(201, "");
    let doctor_id = r.data()["id"].as_str().unwrap().to_string();
    assert_ne!(doctor_id, id);
    let r = app
        .get_bearer("/protected/user/sessionDetail", &token)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["id"], doctor_id.as_str());
    assert_eq!(r.data()["user"]["role"], "doctor");
    app.get_bearer(link, &token).await.expect(404, "NOT_FOUND");

    // Discovery once, keys once: the cache served every later request.
    assert_eq!(issuer.discovery_hits(), 1);
    assert_eq!(issuer.jwks_hits(), 1);

    // Phone accounts keep working beside them.
    let user = app.signup("Meera", "patient").await;
    let r = app.get("/protected/user/sessionDetail", &user.cookie).await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["phone"], user.phone.as_str());
}

#[tokio::test]
async fn register_refuses_bad_requests() {
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let token = rs256("rsa-1", &claims(&app, &issuer, "auth0|reg"));
    app.post(
        "/auth/oidc/register",
        "",
        json!({"name": "No Token", "role": "patient"}),
    )
    .await
    .expect(401, "UNAUTHENTICATED");
    app.post_bearer(
        "/auth/oidc/register",
        "not-a-jwt",
        json!({"name": "X", "role": "patient"}),
    )
    .await
    .expect(401, "INVALID_TOKEN");
    register(&app, &token, "   ", "patient")
        .await
        .expect(422, "VALIDATION_FAILED");
    register(&app, &token, "Admin", "admin")
        .await
        .expect(422, "VALIDATION_FAILED");
    // None of those created the account.
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
    register(&app, &token, "Fine", "patient")
        .await
        .expect(201, "");
}

#[tokio::test]
async fn every_forged_or_misdirected_token_is_refused() {
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let sub = "auth0|victim";
    let good = rs256("rsa-1", &claims(&app, &issuer, sub));
    register(&app, &good, "Victim", "patient")
        .await
        .expect(201, "");
    app.get_bearer("/protected/user/sessionDetail", &good)
        .await
        .expect(200, "");
    let now = now_secs(&app);
    let detail = "/protected/user/sessionDetail";

    // Wrong issuer (signed by the right key, so only `iss` is wrong).
    let mut c = claims(&app, &issuer, sub);
    c["iss"] = json!("https://evil.example.com/");
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    // No issuer at all.
    let mut c = claims(&app, &issuer, sub);
    c.as_object_mut().unwrap().remove("iss");
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");

    // Wrong audience, and none.
    let mut c = claims(&app, &issuer, sub);
    c["aud"] = json!("https://another-api.example.com");
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    let mut c = claims(&app, &issuer, sub);
    c.as_object_mut().unwrap().remove("aud");
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");

    // Expired beyond the leeway; a few seconds late is tolerated.
    let mut c = claims(&app, &issuer, sub);
    c["iat"] = json!(now - 7200);
    c["exp"] = json!(now - 120);
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "TOKEN_EXPIRED");
    c["exp"] = json!(now - 20);
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(200, "");
    // No expiry at all.
    c.as_object_mut().unwrap().remove("exp");
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");

    // Not yet valid beyond the leeway; slightly early is tolerated.
    let mut c = claims(&app, &issuer, sub);
    c["nbf"] = json!(now + 600);
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    c["nbf"] = json!(now + 20);
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(200, "");

    // A kid the issuer does not publish.
    let c = claims(&app, &issuer, sub);
    app.get_bearer(detail, &rs256("rsa-unknown", &c))
        .await
        .expect(401, "INVALID_TOKEN");

    // Tampered payload: another identity's token with the victim's payload spliced in.
    let other = rs256("rsa-1", &claims(&app, &issuer, "auth0|attacker"));
    let victim_payload = good.split('.').nth(1).unwrap();
    let parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], victim_payload, parts[2]);
    app.get_bearer(detail, &spliced)
        .await
        .expect(401, "INVALID_TOKEN");
    // ... and a payload edited in place.
    let mut c: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    c["sub"] = json!(sub);
    let edited = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
    app.get_bearer(detail, &edited)
        .await
        .expect(401, "INVALID_TOKEN");
    // The untouched token is fine (it is merely unregistered).
    app.get_bearer(detail, &other)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");

    // `alg: none`, with and without a signature part.
    let c = claims(&app, &issuer, sub);
    let header = B64.encode(json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).to_string());
    let body = B64.encode(c.to_string());
    app.get_bearer(detail, &format!("{header}.{body}."))
        .await
        .expect(401, "INVALID_TOKEN");
    app.get_bearer(detail, &format!("{header}.{body}"))
        .await
        .expect(401, "INVALID_TOKEN");
    let header = B64.encode(json!({"alg": "None", "typ": "JWT"}).to_string());
    app.get_bearer(detail, &format!("{header}.{body}."))
        .await
        .expect(401, "INVALID_TOKEN");

    // HS256 signed with the RSA public key (as PEM and as the raw modulus), naming the RSA key.
    let pem_key = EncodingKey::from_secret(KEYS.rsa[0].public_pem.as_bytes());
    app.get_bearer(detail, &sign(Algorithm::HS256, "rsa-1", &c, &pem_key))
        .await
        .expect(401, "INVALID_TOKEN");
    let n_key = EncodingKey::from_secret(&B64.decode(&KEYS.rsa[0].n).unwrap());
    app.get_bearer(detail, &sign(Algorithm::HS256, "rsa-1", &c, &n_key))
        .await
        .expect(401, "INVALID_TOKEN");
    // HS256 with the symmetric key the JWKS carries: such keys are never used.
    let oct = EncodingKey::from_secret(b"shared-secret-shared-secret-0123");
    app.get_bearer(detail, &sign(Algorithm::HS256, "hmac-1", &c, &oct))
        .await
        .expect(401, "INVALID_TOKEN");

    // ES256 naming the RSA key, and RS256 naming the EC key.
    app.get_bearer(detail, &es256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    app.get_bearer(detail, &rs256("ec-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    // Algorithms outside RS256/ES256, even with a matching key type.
    app.get_bearer(
        detail,
        &sign(Algorithm::RS512, "rsa-1", &c, &KEYS.rsa[0].encoding),
    )
    .await
    .expect(401, "INVALID_TOKEN");
    app.get_bearer(
        detail,
        &sign(Algorithm::PS256, "rsa-1", &c, &KEYS.rsa[0].encoding),
    )
    .await
    .expect(401, "INVALID_TOKEN");

    // No subject.
    let mut c = claims(&app, &issuer, sub);
    c.as_object_mut().unwrap().remove("sub");
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");

    // A subject with a control character (NUL here): refused on both databases alike.
    let c = claims(&app, &issuer, "user\u{0}1");
    app.get_bearer(detail, &rs256("rsa-1", &c))
        .await
        .expect(401, "INVALID_TOKEN");

    // Malformed headers and garbage.
    app.get_bearer(detail, "")
        .await
        .expect(401, "INVALID_TOKEN");
    app.get_bearer(detail, "a.b.c")
        .await
        .expect(401, "INVALID_TOKEN");

    // A bad token is refused even beside a good session cookie.
    let user = app.signup("Meera", "patient").await;
    let r = app
        .call_with_headers(
            Method::GET,
            detail,
            &[("cookie", &user.cookie), ("authorization", "Bearer a.b.c")],
            None,
        )
        .await;
    r.expect(401, "INVALID_TOKEN");

    // Through all of that the victim's own token still works, and no forged kid reached the
    // issuer more than once a minute.
    app.get_bearer(detail, &good).await.expect(200, "");
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_a_minute() {
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let c = claims(&app, &issuer, "auth0|k");
    app.get_bearer("/protected/user/sessionDetail", &rs256("rsa-1", &c))
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
    assert_eq!(issuer.jwks_hits(), 1);

    // Within the minute after a fetch: refused without asking the issuer.
    for _ in 0..3 {
        app.get_bearer("/protected/user/sessionDetail", &rs256("nope", &c))
            .await
            .expect(401, "INVALID_TOKEN");
    }
    assert_eq!(issuer.jwks_hits(), 1);

    // A minute later one refetch; the key is still not there, so still refused.
    app.clock().advance(Duration::from_secs(61));
    let c = claims(&app, &issuer, "auth0|k");
    app.get_bearer("/protected/user/sessionDetail", &rs256("nope", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    assert_eq!(issuer.jwks_hits(), 2);
    app.get_bearer("/protected/user/sessionDetail", &rs256("nope", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    assert_eq!(issuer.jwks_hits(), 2);
    // Known keys keep working without fetches.
    app.get_bearer("/protected/user/sessionDetail", &es256("ec-1", &c))
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
    assert_eq!(issuer.jwks_hits(), 2);
    assert_eq!(issuer.discovery_hits(), 1);
}

#[tokio::test]
async fn rotated_key_is_fetched_and_the_old_one_stops_working() {
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let old = rs256("rsa-1", &claims(&app, &issuer, "auth0|rot"));
    let r = register(&app, &old, "Rotating", "patient").await;
    r.expect(201, "");
    let id = r.data()["id"].as_str().unwrap().to_string();

    // The issuer rotates: rsa-1 is gone, rsa-2 (a different key) takes its place.
    issuer.set_keys(vec![rsa_jwk(1, "rsa-2"), ec_jwk("ec-1")]);
    app.clock().advance(Duration::from_secs(61));
    let c = claims(&app, &issuer, "auth0|rot");
    let new = sign(Algorithm::RS256, "rsa-2", &c, &KEYS.rsa[1].encoding);
    let r = app.get_bearer("/protected/user/sessionDetail", &new).await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["id"], id.as_str());
    assert_eq!(issuer.jwks_hits(), 2);

    // The old key was dropped with the refetch; the new kid with the old key's signature fails.
    let old = rs256("rsa-1", &c);
    app.get_bearer("/protected/user/sessionDetail", &old)
        .await
        .expect(401, "INVALID_TOKEN");
    let forged = sign(Algorithm::RS256, "rsa-2", &c, &KEYS.rsa[0].encoding);
    app.get_bearer("/protected/user/sessionDetail", &forged)
        .await
        .expect(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn unreachable_issuer_is_a_503_and_the_server_recovers_when_it_comes_back() {
    // Reserve a port, then leave it closed: the issuer is "down" while the server starts.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let issuer_url = format!("http://{addr}/");
    let app = TestApp::spawn_with({
        let url = issuer_url.clone();
        move |cfg| {
            cfg.oidc_issuer = Some(url);
            cfg.oidc_audience = Some(AUDIENCE.into());
        }
    })
    .await;
    let now = now_secs(&app);
    let c = json!({"iss": issuer_url, "sub": "auth0|late", "aud": AUDIENCE, "iat": now, "exp": now + 3600});
    let token = rs256("rsa-1", &c);
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(503, "DEPENDENCY_UNAVAILABLE");
    register(&app, &token, "Late", "patient")
        .await
        .expect(503, "DEPENDENCY_UNAVAILABLE");
    // Session users are untouched by the outage.
    let user = app.signup("Meera", "patient").await;
    app.get("/protected/user/sessionDetail", &user.cookie)
        .await
        .expect(200, "");

    // The issuer comes up; after the short retry pause its keys are fetched.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let issuer = Issuer::serve(listener, default_keys()).await;
    app.clock().advance(Duration::from_secs(6));
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
    register(&app, &token, "Late", "patient")
        .await
        .expect(201, "");
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(200, "");

    // Later it fails again: the keys already held keep working, and a fetch the failure forces
    // (a new kid) is refused cleanly rather than with a 500.
    issuer.shared.failing.store(true, Ordering::SeqCst);
    app.clock().advance(Duration::from_secs(61));
    let c = claims(&app, &issuer, "auth0|late");
    app.get_bearer("/protected/user/sessionDetail", &rs256("rsa-new", &c))
        .await
        .expect(401, "INVALID_TOKEN");
    app.get_bearer("/protected/user/sessionDetail", &rs256("rsa-1", &c))
        .await
        .expect(200, "");
}

#[tokio::test]
async fn explicit_jwks_url_skips_discovery_and_issuer_slash_is_tolerated() {
    let issuer = Issuer::start(default_keys()).await;
    let jwks_url = issuer.jwks_url();
    // Configured without the trailing slash Auth0 puts in `iss`.
    let bare = issuer.url.trim_end_matches('/').to_string();
    let app = TestApp::spawn_with(move |cfg| {
        cfg.oidc_issuer = Some(bare);
        cfg.oidc_audience = Some(AUDIENCE.into());
        cfg.oidc_jwks_url = Some(jwks_url);
    })
    .await;
    let token = es256("ec-1", &claims(&app, &issuer, "auth0|direct"));
    register(&app, &token, "Direct", "doctor")
        .await
        .expect(201, "");
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(200, "");
    assert_eq!(issuer.discovery_hits(), 0);
    assert_eq!(issuer.jwks_hits(), 1);
}

#[tokio::test]
async fn without_oidc_register_is_404_and_bearer_tokens_do_not_sign_in() {
    let issuer = Issuer::start(default_keys()).await;
    let app = TestApp::spawn().await;
    let token = rs256("rsa-1", &claims(&app, &issuer, "auth0|off"));
    register(&app, &token, "Nobody", "patient")
        .await
        .expect(404, "OIDC_NOT_ENABLED");
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(401, "UNAUTHENTICATED");
    assert_eq!(issuer.jwks_hits() + issuer.discovery_hits(), 0);
}

#[tokio::test]
async fn openapi_documents_the_bearer_scheme() {
    let app = TestApp::spawn().await;
    let doc = app.openapi().await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let register = &doc["paths"]["/auth/oidc/register"]["post"];
    assert!(register["responses"]["201"].is_object());
    assert_eq!(register["security"], json!([{"bearer": []}]));
    let detail = &doc["paths"]["/protected/user/sessionDetail"]["get"]["security"];
    assert_eq!(detail, &json!([{"session": []}, {"bearer": []}]));
}

#[tokio::test]
async fn concurrent_registrations_of_one_identity_make_one_account() {
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let token = rs256("rsa-1", &claims(&app, &issuer, "auth0|twice"));
    // Warm the key cache so the requests race on the database, not on the fetch.
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
    let results = futures::future::join_all((0..6).map(|i| {
        let name = format!("Twin {i}");
        let app = &app;
        let token = &token;
        async move { register(app, token, &name, "patient").await }
    }))
    .await;
    let created: Vec<_> = results
        .iter()
        .filter(|r| r.status.as_u16() == 201)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        results.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status.as_u16() != 201) {
        r.expect(409, "OIDC_ALREADY_REGISTERED");
    }
    let r = app
        .get_bearer("/protected/user/sessionDetail", &token)
        .await;
    r.expect(200, "");
    assert_eq!(r.data()["user"]["id"], created[0].data()["id"]);
    let n = app
        .count("SELECT COUNT(*) FROM users WHERE phone IS NULL", &[])
        .await;
    assert_eq!(n, 1);
}

/// An event stream opened with a bearer token ends when the token does (its `exp` plus the
/// tolerated skew): a session's stream is re-checked against the database, and a token's
/// must not outlive it either.
#[tokio::test]
async fn an_event_stream_ends_with_its_bearer_token() {
    use futures::StreamExt;
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let mut c = claims(&app, &issuer, "auth0|stream");
    c["exp"] = json!(now_secs(&app) + 600);
    let token = rs256("rsa-1", &c);
    let r = register(&app, &token, "Asha Rao", "patient").await;
    r.expect(201, "");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let res = app
        .http
        .get(app.url("/protected/notification/notify"))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let notify = |message: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            let mut tx = app.state.db.begin().await.unwrap();
            auravita::notifications::raise(
                &mut tx,
                &app.state,
                &id,
                auravita::notifications::Kind::ConnectionEnded,
                message,
                json!({}),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
    };
    // While the token is good, events arrive.
    notify("first while valid").await;
    let mut seen = String::new();
    while !seen.contains("first while valid") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Past exp + 60 s: the next wake ends the stream, and nothing more is delivered.
    app.clock().advance(Duration::from_secs(600 + 61));
    notify("after the token ended").await;
    let mut after = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => after.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream stayed open past its token");
    assert!(!after.contains("after the token ended"), "{after}");
}

/// A discovery document naming another issuer is not trusted: its keys are never fetched, and
/// tokens wait (503) until the document is right.
#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let issuer = Issuer::start(default_keys()).await;
    issuer.shared.misnamed.store(true, Ordering::SeqCst);
    let app = spawn_for(&issuer).await;
    let token = rs256("rsa-1", &claims(&app, &issuer, "auth0|misnamed"));
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(503, "DEPENDENCY_UNAVAILABLE");
    assert_eq!(
        issuer.jwks_hits(),
        0,
        "no keys taken from a misnamed document"
    );
    issuer.shared.misnamed.store(false, Ordering::SeqCst);
    app.clock().advance(Duration::from_secs(6));
    app.get_bearer("/protected/user/sessionDetail", &token)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
}

/// Keys are fetched over https, or plain http only from this machine's loopback.
#[tokio::test]
async fn an_issuer_over_plain_http_to_another_machine_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (issuer, jwks, ok) in [
        ("http://idp.example/", None, false),
        (
            "https://idp.example/",
            Some("http://keys.example/jwks.json"),
            false,
        ),
        ("http://10.0.0.7/", None, false),
        ("https://idp.example/", None, true),
        ("http://localhost:9999/", None, true),
        (
            "http://[::1]:9999/",
            Some("http://127.0.0.1:9999/jwks.json"),
            true,
        ),
    ] {
        let mut cfg = common::base_config(dir.path(), "sqlite::memory:");
        cfg.oidc_issuer = Some(issuer.into());
        cfg.oidc_audience = Some(AUDIENCE.into());
        cfg.oidc_jwks_url = jwks.map(str::to_string);
        let made = auravita::auth::oidc::Oidc::from_config(&cfg);
        assert_eq!(made.is_ok(), ok, "{issuer} {jwks:?}");
    }
}

/// A doctor who signs in only through the identity provider has no phone; the operator names
/// them by the provider's subject (under the configured issuer) to verify them, with the same
/// check of the registration number as by phone.
#[tokio::test]
async fn a_doctor_without_a_phone_is_verified_by_subject() {
    use auravita::users::admin::{set_doctor_verified, DoctorRef, Verification};
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let sub = "auth0|doctor-no-phone";
    let token = rs256("rsa-1", &claims(&app, &issuer, sub));
    register(&app, &token, "Dr. Meera", "doctor")
        .await
        .expect(201, "");
    let patient = rs256("rsa-1", &claims(&app, &issuer, "auth0|a-patient"));
    register(&app, &patient, "Asha", "patient")
        .await
        .expect(201, "");
    app.post_bearer(
        "/protected/user/updateProfile",
        &token,
        json!({"registration_number": "KMC-777"}),
    )
    .await
    .expect(200, "");
    let db = &app.state.db;
    let configured = issuer.url.as_str();
    let verify = |number| Verification::Verify {
        registration_number: number,
    };
    let set = |issuer, subject, what| async move {
        set_doctor_verified(db, DoctorRef::Identity { issuer, subject }, what).await
    };
    let verified = || async {
        let r = app
            .get_bearer("/protected/user/sessionDetail", &token)
            .await;
        r.data()["profile"]["verified"].clone()
    };

    // Another subject, a patient's subject, another issuer: no such doctor.
    for (iss, subject) in [
        (configured, "auth0|nobody"),
        (configured, "auth0|a-patient"),
        ("https://elsewhere.example", sub),
    ] {
        let err = set(iss, subject, verify("KMC-777")).await.unwrap_err();
        assert!(
            err.to_string().contains("no doctor"),
            "{iss} {subject}: {err}"
        );
    }
    // A number nobody checked verifies nothing.
    let err = set(configured, sub, verify("KMC-778")).await.unwrap_err();
    assert!(err.to_string().contains("not verified"), "{err}");
    assert_eq!(verified().await, false);

    // The configured issuer (written with or without its trailing slash) and the right number.
    let with_slash = format!("{}/", configured.trim_end_matches('/'));
    let d = set(&with_slash, sub, verify(" kmc-777 ")).await.unwrap();
    assert_eq!(d.name, "Dr. Meera");
    assert!(d.named_by.starts_with(sub), "{}", d.named_by);
    assert_eq!(verified().await, true);
    set(configured, sub, Verification::Unverify).await.unwrap();
    assert_eq!(verified().await, false);
}

/// Erasing an account through a provider's token takes a token from a recent sign-in there
/// (`auth_time`, else `iat`, within 10 minutes), as a session must be: an old token, which a
/// thief may hold until it expires, cannot erase someone's records.
#[tokio::test]
async fn erasing_with_a_token_needs_a_recent_sign_in_at_the_provider() {
    let issuer = Issuer::start(default_keys()).await;
    let app = spawn_for(&issuer).await;
    let sub = "auth0|erase";
    register(
        &app,
        &rs256("rsa-1", &claims(&app, &issuer, sub)),
        "Esha",
        "patient",
    )
    .await
    .expect(201, "");
    let now = now_secs(&app);
    let erase = "/protected/user/deleteProfile";
    // Issued 11 minutes ago, still valid: refused, and nothing goes.
    let mut old = claims(&app, &issuer, sub);
    old["iat"] = json!(now - 660);
    let r = app
        .post_bearer(erase, &rs256("rsa-1", &old), json!({}))
        .await;
    r.expect(403, "REAUTH_REQUIRED");
    // A fresh token for an old sign-in (`auth_time`) is refused too.
    let mut refreshed = claims(&app, &issuer, sub);
    refreshed["auth_time"] = json!(now - 660);
    app.post_bearer(erase, &rs256("rsa-1", &refreshed), json!({}))
        .await
        .expect(403, "REAUTH_REQUIRED");
    // No sign-in time at all: refused.
    let mut none = claims(&app, &issuer, sub);
    none.as_object_mut().unwrap().remove("iat");
    app.post_bearer(erase, &rs256("rsa-1", &none), json!({}))
        .await
        .expect(403, "REAUTH_REQUIRED");
    app.get_bearer("/protected/user/sessionDetail", &rs256("rsa-1", &old))
        .await
        .expect(200, "");
    // Signed in just now: it goes.
    let fresh = rs256("rsa-1", &claims(&app, &issuer, sub));
    app.post_bearer(erase, &fresh, json!({}))
        .await
        .expect(200, "");
    app.get_bearer("/protected/user/sessionDetail", &fresh)
        .await
        .expect(403, "OIDC_REGISTRATION_REQUIRED");
}
