//! Server-side sessions: a 256-bit random token in an HttpOnly cookie, only its hash stored;
//! idle and absolute timeouts enforced here on every request; revocation is a row deletion, so
//! it takes effect at once on every instance.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::net::SocketAddr;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::clock::Millis;
use crate::error::AppError;
use crate::keys::sha256_hex;

/// The two kinds of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Patient,
    Doctor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "patient" => Some(Role::Patient),
            "doctor" => Some(Role::Doctor),
            _ => None,
        }
    }
}

/// Who is calling, and from where: for sessions, limits and the access ledger.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Ok(client_info(parts, state.config.trust_proxy))
    }
}

/// An address as proxies write a forwarded hop: bare, with a port (`1.2.3.4:443`), or in
/// brackets (`[2001:db8::1]`, `[2001:db8::1]:443`).
fn forwarded_ip(hop: &str) -> Option<std::net::IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

pub fn client_info(parts: &Parts, trust_proxy: bool) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    // Behind the proxy, its last hop names the client. A hop that cannot be read leaves the
    // client unknown: falling back to the peer would make every such client the proxy itself.
    let forwarded = match parts.headers.get("x-forwarded-for") {
        Some(v) if trust_proxy => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .and_then(forwarded_ip)
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ),
        _ => None,
    };
    let ip = forwarded.or(peer).unwrap_or_else(|| "unknown".into());
    let user_agent: String = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect();
    ClientInfo { ip, user_agent }
}

/// "Firefox on Linux", "Safari on iOS", "curl": enough for a person to recognise their own device
/// (in the sessions list and the new-sign-in notice), without pretending to parse every user
/// agent. Anything unrecognised that is not a plain product token is "Unknown device".
pub fn device_summary(ua: &str) -> String {
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") || has("Edge/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("SamsungBrowser/") {
        Some("Samsung Internet")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        Some("Chrome")
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else if has("okhttp") {
        Some("Android app")
    } else if has("CFNetwork") {
        Some("iOS app")
    } else {
        None
    };
    let os = if has("iPhone") || has("iPad") || has("iOS") || has("CFNetwork") {
        Some("iOS")
    } else if has("Android") || has("okhttp") {
        Some("Android")
    } else if has("Windows") {
        Some("Windows")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Linux") || has("X11") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("A browser on {o}"),
        (None, None) => {
            // Tools name themselves first ("curl/8.5.0"); anything else is not repeated back.
            let token = ua.split(['/', ' ']).next().unwrap_or("").trim();
            let plain = !token.is_empty()
                && token.len() <= 32
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if plain {
                token.to_string()
            } else {
                "Unknown device".to_string()
            }
        }
    }
}

/// A signed-in caller. Extracting it refuses with 401 when there is no live session.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: String,
    pub role: Role,
    /// The session behind this request (`None` for identity-provider tokens).
    pub session_id: Option<String>,
    /// For an identity-provider token, when it stops being accepted (a long request such as
    /// an event stream ends then); a session is checked against the database instead.
    pub valid_until: Option<Millis>,
    /// For an identity-provider token, when its holder signed in there (`auth_time`, else
    /// `iat`); a session's sign-in is its row's `created_at`.
    pub signed_in_at: Option<Millis>,
}

impl AuthUser {
    pub fn require_role(&self, role: Role) -> Result<(), AppError> {
        if self.role == role {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "WRONG_ROLE",
                format!("only a {} can do this", role.as_str()),
            ))
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let user = authenticate(parts, state).await?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<AuthUser, AppError> {
    // A token presented explicitly is judged on its own: a bad one is refused even beside a
    // good cookie (`session_token` yields no cookie then).
    if let Some(token) = session_token(&parts.headers, state) {
        return session_lookup(state, &token).await;
    }
    if let (Some(oidc), Some(token)) = (&state.oidc, super::oidc::bearer_token(&parts.headers)) {
        return super::oidc::bearer_user(state, oidc, &token).await;
    }
    Err(AppError::unauthorized("sign in first"))
}

/// A caller not yet judged, for routes that read the session together with their own rows in one
/// batched query: a session cookie is only taken here (the route's query checks it, then
/// `admit` judges it); without one the caller is judged at once (`AuthUser`), so a request with
/// neither cookie nor token is refused with 401 before anything else.
pub enum Caller {
    Session(String),
    Judged(AuthUser),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(Caller::Judged(user.clone()));
        }
        match session_token(&parts.headers, state) {
            Some(token) => Ok(Caller::Session(token)),
            None => Ok(Caller::Judged(
                AuthUser::from_request_parts(parts, state).await?,
            )),
        }
    }
}

impl Caller {
    /// Judges the caller alone, for a route that answers without its batched read (a request
    /// it refuses as malformed still answers 401 first when the session is not live).
    pub async fn judge(self, state: &AppState) -> Result<AuthUser, AppError> {
        match self {
            Caller::Session(token) => session_lookup(state, &token).await,
            Caller::Judged(user) => Ok(user),
        }
    }
}

/// A session and whose it is: what judging it needs, as the batched checks read it.
#[derive(Clone, Debug)]
pub struct SessionCore {
    id: String,
    last_seen_at: i64,
    expires_at: i64,
    user_id: String,
    role: String,
}

/// A session and its user's whole row, for the routes that show the user (`sessionDetail`).
#[derive(Clone, Debug)]
pub struct SessionRow {
    core: SessionCore,
    user: crate::users::UserRow,
}

/// The columns `session_row` reads, in order, for `SESSION_FROM`: the token hash, the session,
/// then the user's own columns (`crate::users::UserRow`).
pub(crate) const SESSION_COLS: &str = "s.token_hash, s.id, s.last_seen_at, s.expires_at, m.id, \
     m.phone, m.name, m.role, m.phone_verified, m.doctor_verified, m.specialization, \
     m.qualification, m.registration_number, m.years_of_experience, m.created_at";

/// Sessions (`s`) with their users (`m`).
pub(crate) const SESSION_FROM: &str = "sessions s JOIN users m ON m.id = s.user_id";

/// How many columns `SESSION_COLS` names: a query may select more after them.
pub(crate) const SESSION_COL_COUNT: usize = 15;

/// The token hash and session of a row that starts with `SESSION_COLS`.
pub(crate) fn session_row(row: &AnyRow) -> Result<(String, SessionRow), sqlx::Error> {
    let user: crate::users::UserRow = (
        row.try_get(4)?,
        row.try_get(5)?,
        row.try_get(6)?,
        row.try_get(7)?,
        row.try_get(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
        row.try_get(11)?,
        row.try_get(12)?,
        row.try_get(13)?,
        row.try_get(14)?,
    );
    let core = SessionCore {
        id: row.try_get(1)?,
        last_seen_at: row.try_get(2)?,
        expires_at: row.try_get(3)?,
        user_id: user.0.clone(),
        role: user.3.clone(),
    };
    Ok((row.try_get(0)?, SessionRow { core, user }))
}

/// The columns `session_core` reads, in order, for `SESSION_FROM`: the token hash, the session,
/// its user's id and role. Every protected route's check reads only these.
pub(crate) const SESSION_CORE_COLS: &str =
    "s.token_hash, s.id, s.last_seen_at, s.expires_at, m.id, m.role";

/// How many columns `SESSION_CORE_COLS` names: a query may select more after them.
pub(crate) const SESSION_CORE_COL_COUNT: usize = 6;

/// The token hash and session of a row that starts with `SESSION_CORE_COLS`.
pub(crate) fn session_core(row: &AnyRow) -> Result<(String, SessionCore), sqlx::Error> {
    Ok((
        row.try_get(0)?,
        SessionCore {
            id: row.try_get(1)?,
            last_seen_at: row.try_get(2)?,
            expires_at: row.try_get(3)?,
            user_id: row.try_get(4)?,
            role: row.try_get(5)?,
        },
    ))
}

/// Session lookups, batched (`crate::batch`): concurrent requests share one query, and each
/// query starts after its requests arrived, so a deleted (revoked) session is never accepted.
pub type SessionLookups = crate::batch::Batcher<String, SessionCore>;

pub fn session_lookups(db: crate::db::Db) -> SessionLookups {
    crate::batch::Batcher::reading(db, |conn, dialect, hashes| {
        Box::pin(async move {
            let sql = format!(
                "SELECT {SESSION_CORE_COLS} FROM {SESSION_FROM} WHERE s.token_hash IN ({})",
                crate::batch::placeholders(dialect, 1, hashes.len())
            );
            let mut q = sqlx::query(&sql);
            for h in &hashes {
                q = q.bind(h);
            }
            q.fetch_all(conn).await?.iter().map(session_core).collect()
        })
    })
}

/// The session token a request presents in its cookie, unless it also presents a bearer token
/// (which is judged on its own, by the `AuthUser` extractor).
pub fn session_token(headers: &axum::http::HeaderMap, state: &AppState) -> Option<String> {
    if state.oidc.is_some() && super::oidc::bearer_token(headers).is_some() {
        return None;
    }
    cookie_value(headers, state.config.cookie_name())
}

/// The key a session is looked up by: the token's hash (the token itself is never stored).
pub fn token_key(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

async fn session_lookup(state: &AppState, token: &str) -> Result<AuthUser, AppError> {
    let now = state.clock.now();
    let row = state.sessions.get(token_key(token)).await?;
    admit(state, row, now).await
}

/// Judges a looked-up session as of `now` (taken before the lookup): absent is refused, past its
/// idle or absolute timeout is deleted and refused, and a live one is touched at most once per
/// touch interval (`Limits::session_touch_ms`). Every session check, batched alone or with other
/// reads, ends here.
pub async fn admit(
    state: &AppState,
    row: Option<SessionCore>,
    now: Millis,
) -> Result<AuthUser, AppError> {
    let Some(SessionCore {
        id: session_id,
        last_seen_at: last_seen,
        expires_at,
        user_id,
        role,
    }) = row
    else {
        return Err(session_ended());
    };
    let idle_ms = state.config.limits.session_idle_ms();
    if now >= expires_at || now >= last_seen + idle_ms {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(&session_id)
            .execute(&state.db.pool)
            .await?;
        return Err(AppError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "SESSION_EXPIRED",
            "your session has expired; sign in again",
        ));
    }
    // Writing on every request would serialise reads behind the writer: written once per touch
    // interval, which `session_idle_ms` adds to the idle timeout.
    if now - last_seen > state.config.limits.session_touch_ms() {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(now)
            .bind(&session_id)
            .execute(&state.db.pool)
            .await?;
    }
    let parsed =
        Role::parse(&role).ok_or_else(|| AppError::internal(anyhow::anyhow!("bad role {role}")))?;
    Ok(AuthUser {
        user_id,
        role: parsed,
        session_id: Some(session_id),
        valid_until: None,
        signed_in_at: None,
    })
}

/// How recent a sign-in must be for the steps a stolen cookie must not take.
pub const RECENT_SIGNIN_MS: i64 = 10 * 60_000;

/// Refuses (403 `REAUTH_REQUIRED`) unless the caller's session was signed into, with the phone's
/// code, within the last 10 minutes: a thief's old cookie is not. `doing` names the step.
pub async fn require_recent_signin(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    me: &AuthUser,
    doing: &str,
) -> Result<(), AppError> {
    let created = match me.session_id.as_deref() {
        Some(id) => sqlx::query_as::<_, (i64,)>("SELECT created_at FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|(at,)| at),
        // A provider's token: the sign-in it names, if it names one.
        None => me.signed_in_at,
    };
    match created {
        Some(at) if state.clock.now() - at < RECENT_SIGNIN_MS => Ok(()),
        _ => Err(AppError::forbidden(
            "REAUTH_REQUIRED",
            format!("sign in again: {doing} needs a sign-in from the last 10 minutes"),
        )),
    }
}

/// `admit` for a session read with its user's whole row: the caller, and that row.
pub async fn admit_with_user(
    state: &AppState,
    row: Option<SessionRow>,
    now: Millis,
) -> Result<(AuthUser, crate::users::UserRow), AppError> {
    let Some(SessionRow { core, user }) = row else {
        return Err(session_ended());
    };
    Ok((admit(state, Some(core), now).await?, user))
}

/// The refusal for a session that is not there (signed out, revoked, or never was).
fn session_ended() -> AppError {
    AppError::unauthorized("your session has ended; sign in again")
}

pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    cookie_values(headers, name).next()
}

/// Every non-empty value sent for the cookie `name`, in order (a browser may send two cookies of
/// one name, set for different paths or domains). The header is read as bytes: another cookie
/// with a byte outside ASCII (some other application's on this domain) does not hide ours.
pub fn cookie_values<'h>(
    headers: &'h axum::http::HeaderMap,
    name: &'h str,
) -> impl Iterator<Item = String> + 'h {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let at = pair.iter().position(|b| *b == b'=')?;
            let (key, value) = (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii());
            (key == name.as_bytes()).then_some(value)
        })
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Data about a session, as the API shows it (the token itself is only ever in the cookie).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub id: String,
    pub user_id: String,
    /// RFC 3339: the session ends then at the latest.
    pub expires_at: String,
    /// Seconds of inactivity after which the session ends.
    pub idle_timeout_secs: i64,
}

pub struct NewSession {
    pub info: SessionInfo,
    pub cookie: HeaderValue,
}

/// Creates a session inside the caller's transaction (a sign-in is one atomic step).
pub async fn create(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    user_id: &str,
    client: &ClientInfo,
    now: Millis,
) -> Result<NewSession, AppError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let id = crate::db::new_id();
    let limits = &state.config.limits;
    let expires_at = now + limits.session_absolute_secs * 1000;
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(sha256_hex(token.as_bytes()))
    .bind(user_id)
    .bind(now)
    .bind(expires_at)
    .bind(&client.ip)
    .bind(&client.user_agent)
    .execute(&mut *tx)
    .await?;
    Ok(NewSession {
        info: SessionInfo {
            id,
            user_id: user_id.to_string(),
            expires_at: crate::clock::rfc3339(expires_at),
            idle_timeout_secs: limits.session_idle_secs,
        },
        cookie: session_cookie(state, &token),
    })
}

/// The attributes every cookie of ours carries (`Secure` over https).
pub(crate) fn cookie_attrs(state: &AppState) -> &'static str {
    if state.config.https() {
        "; Path=/; HttpOnly; SameSite=Lax; Secure"
    } else {
        "; Path=/; HttpOnly; SameSite=Lax"
    }
}

fn session_cookie(state: &AppState, token: &str) -> HeaderValue {
    let v = format!(
        "{}={}{}; Max-Age={}",
        state.config.cookie_name(),
        token,
        cookie_attrs(state),
        state.config.limits.session_absolute_secs
    );
    HeaderValue::from_str(&v).expect("cookie is ASCII")
}

pub fn clear_cookie(state: &AppState) -> HeaderValue {
    let v = format!(
        "{}={}; Max-Age=0",
        state.config.cookie_name(),
        cookie_attrs(state)
    );
    HeaderValue::from_str(&v).expect("cookie is ASCII")
}

#[cfg(test)]
mod tests {
    use super::{cookie_values, device_summary};

    #[test]
    fn cookies_are_found_beside_others_with_bytes_outside_ascii() {
        let mut headers = axum::http::HeaderMap::new();
        let raw = b"theme=\xe9t\xe9; a=1; s=first; s=; s = second ";
        headers.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_bytes(raw).unwrap(),
        );
        headers.append(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("s=third"),
        );
        let found: Vec<String> = cookie_values(&headers, "s").collect();
        assert_eq!(found, ["first", "second", "third"]);
        assert_eq!(cookie_values(&headers, "theme").count(), 0, "not UTF-8");
        assert_eq!(cookie_values(&headers, "missing").count(), 0);
    }

    #[test]
    fn summarises_common_user_agents() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0", "Edge on Windows"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iOS"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36", "Chrome on Android"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", "Safari on macOS"),
            ("curl/8.5.0", "curl"),
            ("", "Unknown device"),
            ("<script>alert(1)</script>", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(device_summary(ua), want, "{ua}");
        }
    }
}
