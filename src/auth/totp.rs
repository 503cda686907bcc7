//! Two-step sign-in: an authenticator app's code (TOTP, RFC 6238) as a second factor after the
//! SMS code. Owns the algorithm, the encrypted secret, the set-up / turn-on / turn-off routes
//! under `/protected/user/totp`, and the second-step challenge that sign-in completes.

use axum::extract::State;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::session::{AuthUser, ClientInfo};
use crate::api::{ApiJson, ApiOk, ApiResult};
use crate::app::AppState;
use crate::clock::Millis;
use crate::error::{AppError, ErrorEnvelope};

/// RFC 6238's defaults, which every authenticator app understands.
const STEP_MS: i64 = 30_000;
const DIGITS: u32 = 6;
const SECRET_BYTES: usize = 20;
/// Codes of the previous and the next step are accepted too, for clocks a little apart.
const WINDOW: i64 = 1;
/// Set-up, turn-on and turn-off attempts per user per quarter hour (right or wrong), so a stolen
/// session cannot guess its way to turning the second factor off.
const ATTEMPTS_PER_WINDOW: i64 = 10;
const ATTEMPT_WINDOW_SECS: i64 = 900;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(setup))
        .routes(routes!(resend))
        .routes(routes!(enable))
        .routes(routes!(disable))
}

/// The code of one 30-second step (RFC 6238 with HMAC-SHA1, 6 digits).
pub fn code_at(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[h.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(h[off] & 0x7f) << 24)
        | (u32::from(h[off + 1]) << 16)
        | (u32::from(h[off + 2]) << 8)
        | u32::from(h[off + 3]);
    format!(
        "{:0width$}",
        bin % 10u32.pow(DIGITS),
        width = DIGITS as usize
    )
}

/// The step a code belongs to at `now`, if it is right for a step after `after_step` within the
/// window. Comparisons are constant-time.
pub fn matching_step(secret: &[u8], code: &str, now: Millis, after_step: i64) -> Option<i64> {
    let current = now.div_euclid(STEP_MS);
    let mut found = None;
    for step in (current - WINDOW)..=(current + WINDOW) {
        let right: bool = code_at(secret, step)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into();
        if right && step > after_step && found.is_none() {
            found = Some(step);
        }
    }
    found
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding: how authenticator apps take a secret.
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The inverse of `base32_encode` (case and spaces ignored); `None` for anything else.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = B32
            .iter()
            .position(|&x| x == c.to_ascii_uppercase() as u8)? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// A code must be 6 digits before anything is looked up.
pub fn check_format(code: &str) -> Result<&str, AppError> {
    six_digits(code, "code", "the code is 6 digits")
}

/// `text` without surrounding spaces if it is 6 digits; otherwise 422 naming `field`.
fn six_digits<'a>(text: &'a str, field: &str, message: &str) -> Result<&'a str, AppError> {
    let code = text.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::invalid(field, message));
    }
    Ok(code)
}

/// A wrong code: 401 while signing in (no one is signed in yet), 403 for a signed-in person
/// whose change is refused (their session stays good, and clients must not read it as signed out).
pub fn invalid_code(status: axum::http::StatusCode) -> AppError {
    AppError::new(
        status,
        "TOTP_INVALID",
        "that code from your authenticator app is not right",
    )
    .with_details(json!({ "field": "code" }))
}

/// Is two-step sign-in on for this account?
///
/// The account's row is held to the caller's commit (`Dialect::lock_rows`): a sign-in deciding
/// on one step and a turn-on committing meanwhile wait for each other on PostgreSQL, so the
/// turn-on's signing-out of other devices sees the session that sign-in makes.
pub async fn is_enabled(
    conn: &mut sqlx::AnyConnection,
    dialect: crate::db::Dialect,
    user_id: &str,
) -> Result<bool, AppError> {
    let row: Option<(Option<i64>,)> = sqlx::query_as(&format!(
        "SELECT enabled_at FROM user_totp WHERE user_id = $1{}",
        dialect.lock_rows(crate::db::RowLock::Share)
    ))
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(matches!(row, Some((Some(_),))))
}

/// Checks `code` against the account's enabled authenticator and spends its step, inside the
/// caller's transaction: one conditional update, so a code works once even when sent twice at
/// the same moment. `Ok(false)` for a wrong, stale or already used code.
pub async fn spend_code(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    user_id: &str,
    code: &str,
    enabled: bool,
) -> Result<bool, AppError> {
    let row: Option<(String, i64)> = sqlx::query_as(&format!(
        "SELECT secret_enc, last_step FROM user_totp WHERE user_id = $1 AND enabled_at IS {}NULL",
        if enabled { "NOT " } else { "" }
    ))
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((sealed, last_step)) = row else {
        return Ok(false);
    };
    let secret = state.keys.open_totp(user_id, &sealed).ok_or_else(|| {
        AppError::internal(anyhow::anyhow!("an authenticator secret does not decrypt"))
    })?;
    let Some(step) = matching_step(&secret, code, state.clock.now(), last_step) else {
        return Ok(false);
    };
    let spent =
        sqlx::query("UPDATE user_totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2")
            .bind(user_id)
            .bind(step)
            .execute(&mut *conn)
            .await?;
    Ok(spent.rows_affected() == 1)
}

#[derive(Serialize, ToSchema)]
pub struct TotpStatus {
    /// Sign-in asks for the authenticator's code after the SMS code.
    pub enabled: bool,
    /// RFC 3339; null while off.
    pub enabled_at: Option<String>,
    /// Set up but not yet confirmed with a code.
    pub pending: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnabled {
    pub enabled: bool,
    pub enabled_at: Option<String>,
    pub pending: bool,
    /// The other devices signed out, because they signed in without the second step.
    pub signed_out_sessions: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TotpSetup {
    /// Base32 (RFC 4648): type it into the authenticator app.
    pub secret: String,
    /// The same secret as an `otpauth://` link, which authenticator apps open.
    pub otpauth_uri: String,
    /// The code sent by SMS, which turning it on takes too.
    pub sms: SmsSent,
}

#[derive(Serialize, ToSchema)]
pub struct SmsSent {
    /// The account's phone, all but its first three and last four characters hidden.
    #[schema(example = "+91•••••43210")]
    pub sent_to: String,
    /// RFC 3339: when the SMS code stops working.
    pub expires_at: String,
}

#[derive(Deserialize, ToSchema)]
pub struct EnableRequest {
    /// The 6-digit code the authenticator app shows now.
    #[schema(example = "123456")]
    pub code: String,
    /// The 6-digit code sent by SMS when the set-up started (or resent).
    #[schema(example = "654321")]
    pub sms_code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct CodeRequest {
    /// The 6-digit code the authenticator app shows now.
    #[schema(example = "123456")]
    pub code: String,
}

fn session_only(me: &AuthUser) -> Result<(), AppError> {
    if me.session_id.is_none() {
        return Err(AppError::forbidden(
            "TOTP_NOT_AVAILABLE",
            "your identity provider handles the second step of your sign-in",
        ));
    }
    Ok(())
}

/// Turning the second step on signs every other device out and makes the authenticator needed
/// to sign in: done with a stolen session, it would lock the owner out. So it takes a session
/// signed into within the last 10 minutes (with the phone's code), as a thief's old cookie is
/// not, and a fresh code sent by SMS to the account's phone, which a thief does not have.
async fn recent_signin(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    me: &AuthUser,
) -> Result<(), AppError> {
    super::session::require_recent_signin(conn, state, me, "turning on two-step sign-in").await
}

async fn limit(state: &AppState, me: &AuthUser) -> Result<(), AppError> {
    crate::ratelimit::hit(
        &state.db,
        &format!("totp:{}", me.user_id),
        ATTEMPTS_PER_WINDOW,
        ATTEMPT_WINDOW_SECS,
        state.clock.now(),
    )
    .await
}

async fn current(state: &AppState, user_id: &str) -> Result<TotpStatus, AppError> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT enabled_at FROM user_totp WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&state.db.pool)
            .await?;
    Ok(match row {
        None => TotpStatus {
            enabled: false,
            enabled_at: None,
            pending: false,
        },
        Some((at,)) => TotpStatus {
            enabled: at.is_some(),
            enabled_at: at.map(crate::clock::rfc3339),
            pending: at.is_none(),
        },
    })
}

/// Whether two-step sign-in is on for your account.
#[utoipa::path(get, path = "/protected/user/totp", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<TotpStatus>),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn status(State(state): State<AppState>, me: AuthUser) -> ApiResult<TotpStatus> {
    session_only(&me)?;
    Ok(ApiOk::new(
        current(&state, &me.user_id).await?,
        "two-step sign-in",
    ))
}

/// Start setting up two-step sign-in: a new secret for your authenticator app (it replaces one
/// set up but not confirmed), and a code sent by SMS to your phone. Nothing changes until you
/// confirm with both codes.
#[utoipa::path(post, path = "/protected/user/totp/setup", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<TotpSetup>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn setup(
    State(state): State<AppState>,
    me: AuthUser,
    headers: HeaderMap,
) -> ApiResult<TotpSetup> {
    // Said before a key is added to an app only to be refused at the end, and before the SMS
    // allowance is spent.
    let phone = confirmable(&state, &me).await?;
    if current(&state, &me.user_id).await?.enabled {
        return Err(already_enabled());
    }
    let now = state.clock.now();
    let lane = crate::auth::device::lane(&state, &headers, &phone, Some(&me.user_id), now);
    crate::auth::otp::reserve_send(&state, &lane, now, false).await?;
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let sms = SmsCode::new(&state, &me.user_id, now);
    let written = sqlx::query(
        "INSERT INTO user_totp (user_id, secret_enc, enabled_at, last_step, created_at, \
           sms_code_hash, sms_attempts, sms_expires_at) \
         VALUES ($1, $2, NULL, 0, $3, $4, 0, $5) \
         ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, \
           last_step = 0, created_at = excluded.created_at, \
           sms_code_hash = excluded.sms_code_hash, sms_attempts = 0, \
           sms_expires_at = excluded.sms_expires_at \
         WHERE user_totp.enabled_at IS NULL",
    )
    .bind(&me.user_id)
    .bind(state.keys.seal_totp(&me.user_id, &secret))
    .bind(now)
    .bind(&sms.hash)
    .bind(sms.expires_at)
    .execute(&state.db.pool)
    .await?;
    if written.rows_affected() != 1 {
        return Err(already_enabled());
    }
    let sent = sms.send(&state, &me.user_id, &phone, &lane).await?;
    let b32 = base32_encode(&secret);
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let otpauth_uri = format!(
        "otpauth://totp/Auravita:{}?secret={b32}&issuer=Auravita&algorithm=SHA1&digits={DIGITS}&period={}",
        enc(&phone),
        STEP_MS / 1000
    );
    Ok(ApiOk::new(
        TotpSetup {
            secret: b32,
            otpauth_uri,
            sms: sent,
        },
        "add this key to your authenticator app, then confirm with the code it shows and the code we sent by SMS",
    ))
}

/// Send the set-up's SMS code again (a new code; the one before stops working). The
/// authenticator key stays as it is.
#[utoipa::path(post, path = "/protected/user/totp/sms", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<SmsSent>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn resend(
    State(state): State<AppState>,
    me: AuthUser,
    headers: HeaderMap,
) -> ApiResult<SmsSent> {
    let phone = confirmable(&state, &me).await?;
    let now_state = current(&state, &me.user_id).await?;
    if now_state.enabled {
        return Err(already_enabled());
    }
    if !now_state.pending {
        return Err(AppError::not_found("two-step sign-in set-up"));
    }
    // This one keeps the cooldown: nothing else was sent to the phone just before it.
    let now = state.clock.now();
    let lane = crate::auth::device::lane(&state, &headers, &phone, Some(&me.user_id), now);
    crate::auth::otp::reserve_send(&state, &lane, now, true).await?;
    let sms = SmsCode::new(&state, &me.user_id, now);
    let written = sqlx::query(
        "UPDATE user_totp SET sms_code_hash = $2, sms_attempts = 0, sms_expires_at = $3 \
         WHERE user_id = $1 AND enabled_at IS NULL",
    )
    .bind(&me.user_id)
    .bind(&sms.hash)
    .bind(sms.expires_at)
    .execute(&state.db.pool)
    .await?;
    if written.rows_affected() != 1 {
        return Err(AppError::not_found("two-step sign-in set-up"));
    }
    let sent = sms.send(&state, &me.user_id, &phone, &lane).await?;
    Ok(ApiOk::new(sent, "a new code is on its way by SMS"))
}

/// The phone a set-up's SMS code goes to, once the caller may start turning the second step on:
/// a session (not a provider's token), within the attempt limit, signed into recently.
async fn confirmable(state: &AppState, me: &AuthUser) -> Result<String, AppError> {
    session_only(me)?;
    limit(state, me).await?;
    let mut conn = state.db.pool.acquire().await?;
    recent_signin(&mut conn, state, me).await?;
    let phone: Option<(Option<String>,)> = sqlx::query_as("SELECT phone FROM users WHERE id = $1")
        .bind(&me.user_id)
        .fetch_optional(&mut *conn)
        .await?;
    phone.and_then(|p| p.0).ok_or_else(|| {
        AppError::forbidden(
            "TOTP_NOT_AVAILABLE",
            "two-step sign-in needs a phone on the account to confirm it",
        )
    })
}

/// The code that confirms, by SMS, that the phone's owner is the one turning the second step on.
struct SmsCode {
    code: String,
    hash: String,
    expires_at: Millis,
}

impl SmsCode {
    fn new(state: &AppState, user_id: &str, now: Millis) -> SmsCode {
        let code = crate::auth::otp::new_code();
        SmsCode {
            hash: sms_hash(state, user_id, &code),
            code,
            expires_at: now + state.config.limits.otp_ttl_secs * 1000,
        }
    }

    /// Sends it to `phone`; when the provider fails, the stored code is killed and the cooldown
    /// given back to `lane` (the limits' lane the send was reserved in), as for a sign-in code.
    async fn send(
        self,
        state: &AppState,
        user_id: &str,
        phone: &str,
        lane: &str,
    ) -> Result<SmsSent, AppError> {
        // Says what the code is for: a person asked to read it out by someone holding their
        // session learns that this is not a sign-in.
        let body = format!(
            "{} is your Auravita code to turn on two-step sign-in. It expires in {} minutes. If you did not ask for it, do not share it, and sign out everywhere from your profile.",
            self.code,
            crate::auth::otp::ttl_minutes(state)
        );
        let validity = std::time::Duration::from_secs(state.config.limits.otp_ttl_secs as u64);
        if let Err(e) = state.sms.send(phone, &body, validity).await {
            sqlx::query(
                "UPDATE user_totp SET sms_code_hash = NULL WHERE user_id = $1 AND sms_code_hash = $2",
            )
            .bind(user_id)
            .bind(&self.hash)
            .execute(&state.db.pool)
            .await?;
            crate::auth::otp::give_cooldown_back(state, lane).await?;
            return Err(crate::auth::otp::sms_error(e));
        }
        Ok(SmsSent {
            sent_to: mask_phone(phone),
            expires_at: crate::clock::rfc3339(self.expires_at),
        })
    }
}

fn sms_hash(state: &AppState, user_id: &str, code: &str) -> String {
    state.keys.otp_hash(&format!("totp-enable:{user_id}"), code)
}

/// `+91••••••3210`: enough to recognise one's own number, not to read it off a screen.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    let keep_tail = 4.min(chars.len());
    let keep_head = 3.min(chars.len() - keep_tail);
    let hidden = chars.len() - keep_head - keep_tail;
    let mut out: String = chars[..keep_head].iter().collect();
    out.extend(std::iter::repeat_n('•', hidden));
    out.extend(&chars[chars.len() - keep_tail..]);
    out
}

fn already_enabled() -> AppError {
    AppError::conflict(
        "TOTP_ALREADY_ENABLED",
        "two-step sign-in is already on; turn it off first to use a new key",
    )
}

/// Turn two-step sign-in on with the code your authenticator shows and the code sent by SMS at
/// set-up. Every other device is signed out, since it signed in without the second step.
#[utoipa::path(post, path = "/protected/user/totp/enable", tag = "user", security(("session" = [])),
    request_body = EnableRequest,
    responses((status = 200, body = crate::api::Envelope<TotpEnabled>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 410, body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn enable(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientInfo,
    ApiJson(req): ApiJson<EnableRequest>,
) -> ApiResult<TotpEnabled> {
    session_only(&me)?;
    let code = check_format(&req.code)?;
    let sms_code = six_digits(
        &req.sms_code,
        "sms_code",
        "the code sent by SMS is 6 digits",
    )?;
    limit(&state, &me).await?;
    let now = state.clock.now();
    let max = state.config.limits.otp_max_attempts;
    let mut tx = state.db.begin().await?;
    let row: Option<PendingRow> = sqlx::query_as(&format!(
        "SELECT enabled_at, sms_code_hash, sms_attempts, sms_expires_at FROM user_totp \
         WHERE user_id = $1{}",
        state.db.dialect.lock_rows(crate::db::RowLock::Update)
    ))
    .bind(&me.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (stored, attempts, expires_at) = match row {
        None => return Err(AppError::not_found("two-step sign-in set-up")),
        Some((Some(_), ..)) => return Err(already_enabled()),
        Some((None, stored, attempts, expires_at)) => (stored, attempts, expires_at),
    };
    recent_signin(&mut tx, &state, &me).await?;
    // The SMS code first: a wrong one is counted (and committed) whatever the other code is.
    match stored {
        _ if attempts >= max => return Err(sms_dead()),
        Some(_) if expires_at <= now => {
            return Err(AppError::gone(
                "OTP_EXPIRED",
                "the code sent by SMS has expired; ask for a new one",
            ))
        }
        None => {
            return Err(AppError::gone(
                "OTP_EXPIRED",
                "no code sent by SMS is waiting; ask for a new one",
            ))
        }
        Some(stored) => {
            let right: bool = sms_hash(&state, &me.user_id, sms_code)
                .as_bytes()
                .ct_eq(stored.as_bytes())
                .into();
            if !right {
                sqlx::query(
                    "UPDATE user_totp SET sms_attempts = sms_attempts + 1 WHERE user_id = $1",
                )
                .bind(&me.user_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                let left = max - attempts - 1;
                if left <= 0 {
                    return Err(sms_dead());
                }
                return Err(AppError::forbidden(
                    "OTP_INVALID",
                    "the code sent by SMS is not right",
                )
                .with_details(json!({ "field": "sms_code", "attempts_left": left })));
            }
        }
    }
    // A wrong authenticator code rolls back: the SMS code stays good for the next try.
    if !spend_code(&mut tx, &state, &me.user_id, code, false).await? {
        return Err(invalid_code(axum::http::StatusCode::FORBIDDEN));
    }
    let on = sqlx::query(
        "UPDATE user_totp SET enabled_at = $2, sms_code_hash = NULL \
         WHERE user_id = $1 AND enabled_at IS NULL",
    )
    .bind(&me.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if on.rows_affected() != 1 {
        return Err(already_enabled());
    }
    let others = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(&me.user_id)
        .bind(me.session_id.as_deref().unwrap_or(""))
        .execute(&mut *tx)
        .await?;
    crate::notifications::on_two_step_changed(&state, &mut tx, &me.user_id, true, &client).await?;
    tx.commit().await?;
    Ok(ApiOk::new(
        TotpEnabled {
            enabled: true,
            enabled_at: Some(crate::clock::rfc3339(now)),
            pending: false,
            signed_out_sessions: others.rows_affected() as i64,
        },
        "two-step sign-in is on",
    ))
}

/// enabled_at, sms_code_hash, sms_attempts, sms_expires_at
type PendingRow = (Option<i64>, Option<String>, i64, i64);

/// Too many wrong SMS codes for this set-up. The phone is not backed off (as a dead sign-in code
/// backs it off): a stolen session must not be able to keep the owner from signing in.
fn sms_dead() -> AppError {
    AppError::gone(
        "OTP_DEAD",
        "too many wrong codes: the code sent by SMS no longer works; ask for a new one",
    )
    .with_details(json!({ "field": "sms_code" }))
}

/// Turn two-step sign-in off, with a current code from your authenticator.
#[utoipa::path(post, path = "/protected/user/totp/disable", tag = "user", security(("session" = [])),
    request_body = CodeRequest,
    responses((status = 200, body = crate::api::Envelope<TotpStatus>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn disable(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientInfo,
    ApiJson(req): ApiJson<CodeRequest>,
) -> ApiResult<TotpStatus> {
    session_only(&me)?;
    let code = check_format(&req.code)?;
    limit(&state, &me).await?;
    let mut tx = state.db.begin().await?;
    if !is_enabled(&mut tx, state.db.dialect, &me.user_id).await? {
        return Err(AppError::conflict(
            "TOTP_NOT_ENABLED",
            "two-step sign-in is not on",
        ));
    }
    if !spend_code(&mut tx, &state, &me.user_id, code, true).await? {
        return Err(invalid_code(axum::http::StatusCode::FORBIDDEN));
    }
    sqlx::query("DELETE FROM user_totp WHERE user_id = $1")
        .bind(&me.user_id)
        .execute(&mut *tx)
        .await?;
    // Sign-ins waiting for the second step no longer need it: they start again.
    sqlx::query(
        "UPDATE second_factor_challenges SET state = 'dead' WHERE user_id = $1 AND state = 'live'",
    )
    .bind(&me.user_id)
    .execute(&mut *tx)
    .await?;
    crate::notifications::on_two_step_changed(&state, &mut tx, &me.user_id, false, &client).await?;
    tx.commit().await?;
    Ok(ApiOk::new(
        TotpStatus {
            enabled: false,
            enabled_at: None,
            pending: false,
        },
        "two-step sign-in is off",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B (SHA1 key), last six digits of the eight-digit values.
        let key = b"12345678901234567890";
        for (t, want) in [
            (59i64, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(key, t / 30), want, "t={t}");
        }
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(
            base32_encode(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("mzxw 6ytb oi").unwrap(), b"foobar");
        assert!(base32_decode("MZ1W").is_none());
        let mut r = [0u8; 20];
        rand::rngs::OsRng.fill_bytes(&mut r);
        assert_eq!(base32_decode(&base32_encode(&r)).unwrap(), r);
    }

    #[test]
    fn window_and_single_use() {
        let key = b"12345678901234567890";
        let now = 1_234_567_890_000i64;
        let step = now / STEP_MS;
        assert_eq!(matching_step(key, &code_at(key, step), now, 0), Some(step));
        assert_eq!(
            matching_step(key, &code_at(key, step + 1), now, 0),
            Some(step + 1)
        );
        assert_eq!(
            matching_step(key, &code_at(key, step - 1), now, 0),
            Some(step - 1)
        );
        assert_eq!(matching_step(key, &code_at(key, step + 2), now, 0), None);
        assert_eq!(matching_step(key, &code_at(key, step - 2), now, 0), None);
        // A step already spent does not open again.
        assert_eq!(matching_step(key, &code_at(key, step), now, step), None);
    }
}
