//! Sign-in through an external OpenID Connect issuer (Auth0, Keycloak, ...): bearer tokens checked
//! against the keys the issuer publishes (fetched lazily, cached, refetched on an unknown `kid`),
//! the link from an identity (issuer, subject) to an account, and `POST /auth/oidc/register`.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::session::{AuthUser, Role};
use crate::api::{ApiJson, ApiOk, ApiResult};
use crate::app::AppState;
use crate::clock::Millis;
use crate::config::Config;
use crate::error::{AppError, ErrorEnvelope};
use crate::users::UserView;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: f64 = 60.0;
/// An unknown `kid` refetches the key set at most this often (a flood of forged `kid`s must not
/// become a flood of requests to the issuer).
const REFETCH_MIN_MS: Millis = 60_000;
/// While no key set has ever been fetched (issuer down at start), retry this often.
const RETRY_EMPTY_MS: Millis = 5_000;
/// A key set older than this is refreshed, so a key the issuer withdrew stops working.
const MAX_AGE_MS: Millis = 3_600_000;
/// Discovery documents and key sets are small; a larger answer is refused.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// A verified caller of the identity provider.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The configured issuer without a trailing slash: the same for `https://x/` and `https://x`.
    pub issuer: String,
    pub subject: String,
    /// When the token stops being accepted (its `exp` plus the tolerated skew), in ms.
    pub valid_until: Millis,
    /// When its holder signed in at the provider: `auth_time` if the token has it, else `iat`.
    pub signed_in_at: Option<Millis>,
}

pub struct Oidc {
    /// Issuer identifier without a trailing slash; what identities are stored under.
    issuer: String,
    /// `iss` values accepted: the configured one with and without a trailing slash.
    accepted_issuers: HashSet<String>,
    audience: String,
    jwks_url: Option<String>,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    /// One fetch at a time; requests that waited on it reuse its result.
    fetch_gate: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    /// From the discovery document (forgotten when a fetch fails, so the next one rediscovers).
    jwks_uri: Option<String>,
    keys: Option<Arc<Vec<Arc<VerifyKey>>>>,
    fetched_at: Millis,
    last_attempt: Option<Millis>,
}

struct VerifyKey {
    kid: Option<String>,
    /// The only algorithm this key verifies: fixed by the key's type, never by the token.
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    auth_time: Option<f64>,
}

fn invalid_token(message: &str) -> AppError {
    AppError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", message)
}

impl Oidc {
    /// `None` unless `AURAVITA_OIDC_ISSUER` is set. Nothing is fetched here: the server starts
    /// even when the issuer is unreachable, and keys are fetched by the first request needing them.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Oidc>> {
        let Some(issuer) = config
            .oidc_issuer
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        let parsed = url::Url::parse(issuer).context("AURAVITA_OIDC_ISSUER is not a URL")?;
        if !secure_or_local(&parsed) {
            bail!("AURAVITA_OIDC_ISSUER must be an https URL (plain http only on this machine's loopback)");
        }
        let Some(audience) = config
            .oidc_audience
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            bail!("AURAVITA_OIDC_AUDIENCE is required with AURAVITA_OIDC_ISSUER (the API identifier or client id tokens are issued for)");
        };
        let jwks_url = match config
            .oidc_jwks_url
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(u) => {
                let parsed = url::Url::parse(u).context("AURAVITA_OIDC_JWKS_URL is not a URL")?;
                if !secure_or_local(&parsed) {
                    bail!("AURAVITA_OIDC_JWKS_URL must be an https URL (plain http only on this machine's loopback)");
                }
                Some(u.to_string())
            }
            None => None,
        };
        let bare = issuer.trim_end_matches('/').to_string();
        let accepted_issuers = [bare.clone(), format!("{bare}/")].into_iter().collect();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Some(Oidc {
            issuer: bare,
            accepted_issuers,
            audience: audience.to_string(),
            jwks_url,
            http,
            cache: RwLock::new(Cache::default()),
            fetch_gate: tokio::sync::Mutex::new(()),
        }))
    }

    /// Checks a token: signature by a key of the issuer's key set (RS256 or ES256 only, the
    /// algorithm fixed by the key's type), `iss`, `aud`, `exp` and `nbf` against `now`.
    pub async fn verify(&self, token: &str, now: Millis) -> Result<Identity, AppError> {
        // `alg: none` and unknown algorithms do not even parse as a header here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid_token("the bearer token is not a well-formed signed JWT"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(invalid_token(
                "the bearer token's algorithm is not accepted (RS256 or ES256 only)",
            ));
        }
        let key = self.key_for(header.kid.as_deref(), header.alg, now).await?;

        let mut validation = Validation::new(key.alg);
        validation.algorithms = vec![key.alg];
        validation.set_issuer(&self.accepted_issuers.iter().collect::<Vec<_>>());
        validation.set_audience(&[&self.audience]);
        // Time is checked below against the server's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidIssuer => invalid_token("the bearer token was issued by another issuer"),
                K::InvalidAudience => {
                    invalid_token("the bearer token is meant for another audience")
                }
                K::InvalidSignature => {
                    invalid_token("the bearer token's signature does not verify")
                }
                K::MissingRequiredClaim(c) => {
                    invalid_token(&format!("the bearer token has no `{c}` claim"))
                }
                _ => invalid_token("the bearer token could not be verified"),
            }
        })?;
        let claims = data.claims;
        let now_secs = now as f64 / 1000.0;
        let exp = claims
            .exp
            .ok_or_else(|| invalid_token("the bearer token has no `exp` claim"))?;
        if exp + LEEWAY_SECS < now_secs {
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "the bearer token has expired",
            ));
        }
        if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECS > now_secs) {
            return Err(invalid_token("the bearer token is not valid yet"));
        }
        let subject = claims.sub.unwrap_or_default();
        // Control characters (NUL, which PostgreSQL cannot store, among them) are no identifier
        // a provider issues: refused alike on both databases.
        if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
            return Err(invalid_token(
                "the bearer token's subject is empty, too long or not printable",
            ));
        }
        Ok(Identity {
            issuer: self.issuer.clone(),
            subject,
            valid_until: ((exp + LEEWAY_SECS) * 1000.0) as Millis,
            signed_in_at: claims
                .auth_time
                .or(claims.iat)
                .filter(|t| t.is_finite())
                .map(|t| (t * 1000.0) as Millis),
        })
    }

    /// The key a token names. An unknown `kid` refetches the key set (at most once a minute).
    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now: Millis,
    ) -> Result<Arc<VerifyKey>, AppError> {
        let (keys, fresh) = self.snapshot(now);
        if let (Some(keys), true) = (&keys, fresh) {
            if let Some(k) = pick(keys, kid, alg)? {
                return Ok(k);
            }
        }

        let _gate = self.fetch_gate.lock().await;
        // Another request may have fetched while this one waited.
        let (keys, fresh, last_attempt) = {
            let c = self.cache.read().expect("oidc cache lock");
            (
                c.keys.clone(),
                now - c.fetched_at < MAX_AGE_MS,
                c.last_attempt,
            )
        };
        let found = match &keys {
            Some(k) => pick(k, kid, alg)?,
            None => None,
        };
        if let (Some(k), true) = (&found, fresh) {
            return Ok(k.clone());
        }
        let min_gap = if keys.is_some() {
            REFETCH_MIN_MS
        } else {
            RETRY_EMPTY_MS
        };
        let may_fetch = last_attempt.is_none_or(|t| now - t >= min_gap);
        if may_fetch {
            self.cache.write().expect("oidc cache lock").last_attempt = Some(now);
            match self.fetch_keys().await {
                Ok(new) => {
                    let new = Arc::new(new);
                    {
                        let mut c = self.cache.write().expect("oidc cache lock");
                        c.keys = Some(new.clone());
                        c.fetched_at = now;
                    }
                    return pick(&new, kid, alg)?.ok_or_else(|| {
                        invalid_token("the bearer token names a key the issuer does not publish")
                    });
                }
                Err(e) => {
                    self.cache.write().expect("oidc cache lock").jwks_uri = None;
                    if keys.is_none() {
                        return Err(AppError::unavailable("the identity provider", e));
                    }
                    // Keep using the keys we have rather than lock everybody out.
                    tracing::warn!(error = %format!("{e:#}"), "refreshing the identity provider's keys failed; keeping the cached ones");
                }
            }
        } else if keys.is_none() {
            return Err(AppError::unavailable(
                "the identity provider",
                anyhow!("its keys could not be fetched yet; retrying shortly"),
            ));
        }
        found.ok_or_else(|| {
            invalid_token("the bearer token names a key the issuer does not publish")
        })
    }

    fn snapshot(&self, now: Millis) -> (Option<Arc<Vec<Arc<VerifyKey>>>>, bool) {
        let c = self.cache.read().expect("oidc cache lock");
        (c.keys.clone(), now - c.fetched_at < MAX_AGE_MS)
    }

    async fn fetch_keys(&self) -> anyhow::Result<Vec<Arc<VerifyKey>>> {
        let jwks_uri = match &self.jwks_url {
            Some(u) => u.clone(),
            None => self.discover().await?,
        };
        let body = self
            .get_json(&jwks_uri)
            .await
            .context("fetching the issuer's JWKS")?;
        let keys = parse_jwks(&body);
        if keys.is_empty() {
            bail!("the JWKS at {jwks_uri} holds no RS256 or ES256 signing key");
        }
        tracing::info!(keys = keys.len(), "fetched the identity provider's keys");
        Ok(keys)
    }

    async fn discover(&self) -> anyhow::Result<String> {
        if let Some(u) = self.cache.read().expect("oidc cache lock").jwks_uri.clone() {
            return Ok(u);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let doc = self
            .get_json(&url)
            .await
            .context("fetching the issuer's discovery document")?;
        // OpenID Connect Discovery 1.0 §4.3: the document's issuer must be the one asked for;
        // keys published under another name are not taken.
        match doc.get("issuer").and_then(|v| v.as_str()) {
            Some(iss) if self.accepted_issuers.contains(iss) => {}
            published => bail!(
                "the discovery document names the issuer {published:?}, not the configured {}",
                self.issuer
            ),
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("the discovery document at {url} has no jwks_uri"))?
            .to_string();
        url::Url::parse(&jwks_uri).context("the discovery document's jwks_uri is not a URL")?;
        self.cache.write().expect("oidc cache lock").jwks_uri = Some(jwks_uri.clone());
        Ok(jwks_uri)
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<serde_json::Value> {
        let mut res = self
            .http
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await?
            .error_for_status()?;
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                bail!("{url} answered with more than {MAX_DOCUMENT_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// The key for a token: by `kid`, or the only key of the token's algorithm when it names none.
/// A `kid` whose key is of another type is refused outright (no algorithm confusion).
fn pick(
    keys: &[Arc<VerifyKey>],
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<Arc<VerifyKey>>, AppError> {
    let found = match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let mut of_alg = keys.iter().filter(|k| k.alg == alg);
            match (of_alg.next(), of_alg.next()) {
                (Some(k), None) => Some(k),
                _ => None,
            }
        }
    };
    match found {
        Some(k) if k.alg != alg => Err(invalid_token(
            "the bearer token's algorithm does not match its key",
        )),
        Some(k) => Ok(Some(k.clone())),
        None => Ok(None),
    }
}

/// Signing keys we accept from a JWKS: RSA of at least 2048 bits (RS256) and P-256 (ES256).
/// Anything else (symmetric keys above all, encryption keys, other curves) is skipped.
fn parse_jwks(body: &serde_json::Value) -> Vec<Arc<VerifyKey>> {
    let Some(items) = body.get("keys").and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        // One key of a kind we do not know must not hide the others.
        let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let (alg, key_alg) = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) if rsa_bits(&p.n) >= 2048 => {
                (Algorithm::RS256, KeyAlgorithm::RS256)
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            _ => continue,
        };
        if jwk.common.key_algorithm.is_some_and(|a| a != key_alg) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(Arc::new(VerifyKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        }));
    }
    out
}

fn rsa_bits(n_b64: &str) -> usize {
    let Ok(n) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n_b64.trim_end_matches('='))
    else {
        return 0;
    };
    let n: &[u8] = {
        let start = n.iter().position(|b| *b != 0).unwrap_or(n.len());
        &n[start..]
    };
    match n.first() {
        Some(top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

/// https, or plain http to this machine's loopback (a local test issuer): keys and discovery
/// documents are never fetched in the clear over a network.
fn secure_or_local(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// The token in `Authorization: Bearer <token>`, if the header uses that scheme.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The account behind a bearer token; a valid token for an identity with no account yet is a 403
/// telling the client to register.
pub async fn bearer_user(state: &AppState, oidc: &Oidc, token: &str) -> Result<AuthUser, AppError> {
    let identity = oidc.verify(token, state.clock.now()).await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT u.id, u.role FROM user_identities i JOIN users u ON u.id = i.user_id \
         WHERE i.issuer = $1 AND i.subject = $2",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .fetch_optional(&state.db.pool)
    .await?;
    let Some((user_id, role)) = row else {
        return Err(AppError::forbidden(
            "OIDC_REGISTRATION_REQUIRED",
            "this identity has no Auravita account yet; register it with POST /auth/oidc/register",
        ));
    };
    let role = Role::parse(&role).ok_or_else(|| AppError::internal(anyhow!("bad role {role}")))?;
    Ok(AuthUser {
        user_id,
        role,
        session_id: None,
        valid_until: Some(identity.valid_until),
        signed_in_at: identity.signed_in_at,
    })
}

/// A caller with a valid identity-provider token, whether or not it has an account.
pub struct BearerIdentity(pub Identity);

impl FromRequestParts<AppState> for BearerIdentity {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Some(oidc) = &state.oidc else {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "OIDC_NOT_ENABLED",
                "sign-in through an identity provider is not enabled on this server",
            ));
        };
        let token = bearer_token(&parts.headers).ok_or_else(|| {
            AppError::unauthorized(
                "send the identity provider's token as Authorization: Bearer <token>",
            )
        })?;
        Ok(BearerIdentity(
            oidc.verify(&token, state.clock.now()).await?,
        ))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register))
}

#[derive(Deserialize, ToSchema)]
pub struct OidcRegisterRequest {
    /// 1 to 100 characters.
    pub name: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct OidcRegistered {
    /// The new account's id.
    pub id: String,
    pub message: String,
    pub user: UserView,
}

/// Create the account for the identity in the bearer token (no phone needed). Later requests
/// with a token for that identity act as this account.
#[utoipa::path(post, path = "/auth/oidc/register", tag = "auth", request_body = OidcRegisterRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, body = crate::api::Envelope<OidcRegistered>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn register(
    State(state): State<AppState>,
    BearerIdentity(identity): BearerIdentity,
    ApiJson(req): ApiJson<OidcRegisterRequest>,
) -> ApiResult<OidcRegistered> {
    let name = super::routes::clean_name(&req.name, "name")?;
    let now = state.clock.now();
    let id = crate::db::new_id();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO users (id, phone, name, name_lower, role, phone_verified, doctor_verified, created_at, updated_at) \
         VALUES ($1, NULL, $2, $3, $4, 0, 0, $5, $5)",
    )
    .bind(&id)
    .bind(&name)
    .bind(name.to_lowercase())
    .bind(req.role.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::users::search::index_name(&mut tx, &id).await?;
    // The primary key on (issuer, subject) settles two concurrent registrations: one wins.
    sqlx::query("INSERT INTO user_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&identity.issuer)
        .bind(&identity.subject)
        .bind(&id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if crate::db::is_unique_violation(&e) {
                AppError::conflict("OIDC_ALREADY_REGISTERED", "this identity already has an account")
            } else {
                e.into()
            }
        })?;
    tx.commit().await?;
    let (user, _) = crate::users::load_me(&state, &id).await?;
    let message = "welcome to Auravita".to_string();
    Ok(ApiOk::new(
        OidcRegistered {
            id,
            message: message.clone(),
            user,
        },
        message,
    )
    .created())
}

/// Documents the bearer scheme: `/auth/oidc/register` needs it, and every route that takes a
/// session also takes a token (an alternative requirement beside `session`).
pub fn document_bearer(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token from the identity provider set by AURAVITA_OIDC_ISSUER (when enabled)",
                ))
                .build(),
        ),
    );
    let session =
        serde_json::to_value(SecurityRequirement::new("session", Vec::<String>::new())).ok();
    for (_, op) in crate::app::operations_mut(openapi) {
        let Some(reqs) = op.security.as_mut() else {
            continue;
        };
        let takes_session = reqs.iter().any(|r| serde_json::to_value(r).ok() == session);
        if takes_session {
            reqs.push(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
    }
}
