//! `/auth`: sign-up, sign-in, resend, sign-out.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::device;
use super::otp::{self, NewChallenge, Purpose};
use super::phone;
use super::session::{self, ClientInfo, Role, SessionInfo};
use super::totp;
use crate::api::{done, ApiJson, ApiOk, ApiPath, ApiResult, Done};
use crate::app::AppState;
use crate::error::{AppError, ErrorEnvelope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(signup_verify))
        .routes(routes!(signin))
        .routes(routes!(signin_verify))
        .routes(routes!(signin_second_factor))
        .routes(routes!(signin_resend))
        .routes(routes!(signup_resend))
}

/// Sign-out, outside the per-client limit: signing out must always work (from a clinic's shared
/// address, say, while someone else there is using up the allowance).
pub fn unlimited_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(signout))
}

#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    /// E.164, for example `+919876543210`.
    #[schema(example = "+919876543210")]
    pub phone: String,
    /// 1 to 100 characters.
    pub name: String,
    pub role: Role,
}

#[derive(Deserialize, ToSchema)]
pub struct PhoneRequest {
    #[schema(example = "+919876543210")]
    pub phone: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ResendRequest {
    #[schema(example = "+919876543210")]
    pub phone: String,
    /// The sign-up being resent (its verification `id`): the new code carries that sign-up's
    /// name and role. Without it, the newest sign-up started for the phone, by anyone.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The 6-digit code from the SMS.
    #[schema(example = "123456")]
    pub otp: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeData {
    /// The verification id to send the code to.
    pub id: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResendData {
    pub success: bool,
    pub message: String,
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyData {
    /// `false` only when the account asks for a second step (`second_factor`) first.
    pub success: bool,
    /// The new session; null while a second step is still due.
    pub session: Option<SessionInfo>,
    /// Present when the account has two-step sign-in on: send the authenticator's code to
    /// `POST /auth/signin/totp/{id}`. No cookie is set until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_factor: Option<SecondFactor>,
}

#[derive(Serialize, ToSchema)]
pub struct SecondFactor {
    pub id: String,
    /// Always `totp` (an authenticator app's code).
    pub method: String,
    /// RFC 3339: the second step must be done by then.
    pub expires_at: String,
}

/// Validates a person's name: trimmed, 1 to 100 characters, no control characters, no
/// bidirectional controls (which would show it, or what follows it, reordered), and at least
/// one letter or digit that shows (not a name made of zero-width or blank characters).
pub fn clean_name(raw: &str, field: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AppError::invalid(field, "name is required"));
    }
    if name.chars().count() > 100 {
        return Err(AppError::invalid(field, "name is at most 100 characters"));
    }
    if name.chars().any(crate::text::is_break_or_control) {
        return Err(AppError::invalid(
            field,
            "name cannot contain control characters or line breaks",
        ));
    }
    if name.chars().any(crate::text::is_bidi_control) {
        return Err(AppError::invalid(
            field,
            "name cannot contain characters that change the direction of text",
        ));
    }
    if !name.chars().any(crate::text::is_visible_letter_or_digit) {
        return Err(AppError::invalid(field, "name needs a letter or digit"));
    }
    Ok(name.to_string())
}

/// Is there an account on this phone, and has its owner ever signed in with a code?
async fn account_for(
    state: &AppState,
    phone: &str,
) -> Result<Option<(String, String, i64)>, AppError> {
    Ok(
        sqlx::query_as("SELECT id, role, phone_verified FROM users WHERE phone = $1")
            .bind(phone)
            .fetch_optional(&state.db.pool)
            .await?,
    )
}

/// A phone with a clinic-registered patient account nobody claimed may sign up: as a patient it
/// takes that account over, as a doctor it replaces it (`users::profile::remove_clinic_record`).
/// Anything else on a phone that already has an account is a conflict.
fn signup_allowed(existing: &Option<(String, String, i64)>) -> Result<(), AppError> {
    match existing {
        None => Ok(()),
        Some((_, r, 0)) if r == "patient" => Ok(()),
        Some(_) => Err(AppError::conflict(
            "PHONE_ALREADY_REGISTERED",
            "this phone already has an account; sign in instead",
        )),
    }
}

/// Start a sign-up: sends a code to the phone.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 200, body = crate::api::Envelope<ChallengeData>),
        (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
async fn signup(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult<ChallengeData> {
    let phone = phone::normalize(&req.phone, "phone")?;
    let name = clean_name(&req.name, "name")?;
    signup_allowed(&account_for(&state, &phone).await?)?;
    let id = otp::issue(
        &state,
        NewChallenge {
            purpose: Purpose::Signup,
            phone: &phone,
            // No account yet: only the phone's own lane.
            lane: &phone,
            user_id: None,
            name: Some(&name),
            role: Some(req.role.as_str()),
        },
    )
    .await?;
    let message = "we sent a 6-digit code to your phone".to_string();
    Ok(ApiOk::new(
        ChallengeData {
            id,
            message: message.clone(),
        },
        message,
    ))
}

/// Finish a sign-up with the code: creates the account and signs in.
#[utoipa::path(post, path = "/auth/signup/verify/{id}", tag = "auth", request_body = VerifyRequest,
    params(("id" = String, Path, description = "verification id from /auth/signup")),
    responses(
        (status = 200, body = crate::api::Envelope<VerifyData>, headers(("set-cookie" = String, description = "the session cookie and the device cookie"))),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 410, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
async fn signup_verify(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<VerifyData> {
    let claimed = otp::claim(&state, Purpose::Signup, &id, req.otp.trim()).await?;
    let role = claimed
        .role
        .as_deref()
        .and_then(Role::parse)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("signup challenge without a role")))?;
    let name = claimed.name.clone().unwrap_or_default();
    let now = state.clock.now();
    // Twice at most: on PostgreSQL a clinic may register this phone (`createPatient`) after the
    // read below and before the insert; the insert then fails on the phone's uniqueness, and a
    // second pass sees the clinic's record and takes it over (or replaces it) as it would have.
    let mut passes = 0;
    let (mut tx, user_id) = loop {
        passes += 1;
        let mut tx = state.db.begin().await?;
        let existing: Option<(String, String, i64)> =
            sqlx::query_as("SELECT id, role, phone_verified FROM users WHERE phone = $1")
                .bind(&claimed.phone)
                .fetch_optional(&mut *tx)
                .await?;
        signup_allowed(&existing)?;
        let take_over = match existing {
            Some((id, _, _)) if role == Role::Patient => Some(id),
            Some((id, _, _)) => {
                crate::users::profile::remove_clinic_record(&mut tx, &state, &id).await?;
                None
            }
            None => None,
        };
        let user_id = match take_over {
            Some(id) => {
                // The person takes over the account a clinic registered for them.
                let taken = sqlx::query(
                "UPDATE users SET phone_verified = 1, name = $2, name_lower = $3, updated_at = $4 \
                 WHERE id = $1 AND phone_verified = 0",
            )
            .bind(&id)
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(now)
            .execute(&mut *tx)
            .await?;
                if taken.rows_affected() != 1 {
                    return Err(AppError::conflict(
                        "PHONE_ALREADY_REGISTERED",
                        "this phone already has an account; sign in instead",
                    ));
                }
                id
            }
            None => {
                let id = crate::db::new_id();
                let inserted = sqlx::query(
                "INSERT INTO users (id, phone, name, name_lower, role, phone_verified, doctor_verified, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 1, 0, $6, $6)",
            )
            .bind(&id)
            .bind(&claimed.phone)
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await;
                match inserted {
                    Ok(_) => id,
                    Err(e) if crate::db::is_unique_violation(&e) && passes == 1 => continue,
                    Err(e) if crate::db::is_unique_violation(&e) => {
                        return Err(AppError::conflict(
                            "PHONE_ALREADY_REGISTERED",
                            "this phone already has an account; sign in instead",
                        ))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        break (tx, user_id);
    };
    crate::users::search::index_name(&mut tx, &user_id).await?;
    let proved = Proved {
        phone: &claimed.phone,
        lane: &claimed.lane,
    };
    finish_sign_in(state, tx, &user_id, proved, &client, now, Arrival::SignUp).await
}

/// How a session comes to be. Only a sign-in to an account someone already used is news to its
/// owner (`new_sign_in`); the session an account is created or claimed with is not.
#[derive(Clone, Copy, PartialEq)]
enum Arrival {
    /// A new account, or a clinic-registered one claimed by signing up.
    SignUp,
    /// A clinic-registered account claimed by signing in with a code.
    Claim,
    SignIn,
}

/// The phone a code proved, and the limits' lane that code was counted in.
#[derive(Clone, Copy)]
struct Proved<'a> {
    phone: &'a str,
    lane: &'a str,
}

/// Creates the session. The browser also gets a device cookie for the phone
/// (`crate::auth::device`): its next codes are counted in a lane of their own.
async fn finish_sign_in(
    state: AppState,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    proved: Proved<'_>,
    client: &ClientInfo,
    now: i64,
    arrival: Arrival,
) -> ApiResult<VerifyData> {
    otp::forgive(&mut tx, proved.lane).await?;
    let new = session::create(&mut tx, &state, user_id, client, now).await?;
    if arrival == Arrival::SignIn {
        crate::app::on_sign_in(&state, &mut tx, user_id, &new.info.id, client).await?;
    }
    let message = match arrival {
        Arrival::SignUp => "welcome to Auravita",
        Arrival::Claim | Arrival::SignIn => "signed in",
    };
    tx.commit().await?;
    Ok(ApiOk::new(
        VerifyData {
            success: true,
            session: Some(new.info),
            second_factor: None,
        },
        message,
    )
    .header(header::SET_COOKIE, new.cookie)
    .header(
        header::SET_COOKIE,
        device::cookie(&state, proved.phone, user_id, proved.lane, now),
    ))
}

/// Start a sign-in: sends a code if the phone has an account. The answer is the same either way.
#[utoipa::path(post, path = "/auth/signin", tag = "auth", request_body = PhoneRequest,
    responses(
        (status = 200, body = crate::api::Envelope<ChallengeData>),
        (status = 400, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PhoneRequest>,
) -> ApiResult<ChallengeData> {
    let id = start_signin(&state, &headers, &req.phone).await?;
    let message = "if this phone has an account, a 6-digit code is on its way".to_string();
    Ok(ApiOk::new(
        ChallengeData {
            id,
            message: message.clone(),
        },
        message,
    ))
}

async fn start_signin(
    state: &AppState,
    headers: &HeaderMap,
    raw_phone: &str,
) -> Result<String, AppError> {
    let phone = phone::normalize(raw_phone, "phone")?;
    let user_id = account_for(state, &phone).await?.map(|(id, _, _)| id);
    otp::issue(
        state,
        NewChallenge {
            purpose: Purpose::Signin,
            phone: &phone,
            lane: &device::lane(
                state,
                headers,
                &phone,
                user_id.as_deref(),
                state.clock.now(),
            ),
            user_id: user_id.as_deref(),
            name: None,
            role: None,
        },
    )
    .await
}

/// Finish a sign-in with the code.
#[utoipa::path(post, path = "/auth/signin/verify/{id}", tag = "auth", request_body = VerifyRequest,
    params(("id" = String, Path, description = "verification id from /auth/signin")),
    responses(
        (status = 200, body = crate::api::Envelope<VerifyData>, headers(("set-cookie" = String, description = "the session cookie and the device cookie"))),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 410, body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn signin_verify(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<VerifyData> {
    let claimed = otp::claim(&state, Purpose::Signin, &id, req.otp.trim()).await?;
    let user_id = claimed.user_id.ok_or_else(|| {
        AppError::internal(anyhow::anyhow!("a signin code without an account matched"))
    })?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    if totp::is_enabled(&mut tx, state.db.dialect, &user_id).await? {
        // The SMS code was right; the authenticator's code is still due. No session yet.
        let id = crate::db::new_id();
        let expires_at = now + state.config.limits.otp_ttl_secs * 1000;
        sqlx::query(
            "INSERT INTO second_factor_challenges (id, user_id, phone, attempts, state, created_at, expires_at, lane) \
             VALUES ($1, $2, $3, 0, 'live', $4, $5, $6)",
        )
        .bind(&id)
        .bind(&user_id)
        .bind(&claimed.phone)
        .bind(now)
        .bind(expires_at)
        .bind(&claimed.lane)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(ApiOk::new(
            VerifyData {
                success: false,
                session: None,
                second_factor: Some(SecondFactor {
                    id,
                    method: "totp".into(),
                    expires_at: crate::clock::rfc3339(expires_at),
                }),
            },
            "enter the 6-digit code from your authenticator app",
        ));
    }
    let proved = Proved {
        phone: &claimed.phone,
        lane: &claimed.lane,
    };
    complete_sign_in(state, tx, &user_id, proved, &client, now).await
}

/// Signing in with a code proves the phone: a clinic-registered patient now owns the account.
async fn complete_sign_in(
    state: AppState,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    proved: Proved<'_>,
    client: &ClientInfo,
    now: i64,
) -> ApiResult<VerifyData> {
    let claimed =
        sqlx::query("UPDATE users SET phone_verified = 1 WHERE id = $1 AND phone_verified = 0")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    let arrival = if claimed.rows_affected() == 1 {
        Arrival::Claim
    } else {
        let (found,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        if found != 1 {
            return Err(AppError::not_found("account"));
        }
        Arrival::SignIn
    };
    finish_sign_in(state, tx, user_id, proved, client, now, arrival).await
}

/// Finish a sign-in that asked for a second step, with the code the authenticator app shows.
/// Five wrong codes end this attempt (and count against the phone like a dead SMS code).
#[utoipa::path(post, path = "/auth/signin/totp/{id}", tag = "auth", request_body = totp::CodeRequest,
    params(("id" = String, Path, description = "second_factor.id from /auth/signin/verify")),
    responses(
        (status = 200, body = crate::api::Envelope<VerifyData>, headers(("set-cookie" = String, description = "the session cookie and the device cookie"))),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 410, body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn signin_second_factor(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<totp::CodeRequest>,
) -> ApiResult<VerifyData> {
    let code = totp::check_format(&req.code)?;
    let now = state.clock.now();
    let max = state.config.limits.otp_max_attempts;
    let mut tx = state.db.begin().await?;
    // Counting the try is the claim: concurrent tries queue on this row.
    let live: Option<(String, String, i64, String)> = sqlx::query_as(
        "UPDATE second_factor_challenges SET attempts = attempts + 1 \
         WHERE id = $1 AND state = 'live' AND expires_at > $2 AND attempts < $3 \
         RETURNING user_id, phone, attempts, COALESCE(lane, phone)",
    )
    .bind(&id)
    .bind(now)
    .bind(max)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id, phone, attempts, lane)) = live else {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT state FROM second_factor_challenges WHERE id = $1")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(match row {
            None => AppError::not_found("sign-in"),
            Some((st,)) if st == "used" => {
                AppError::gone("SECOND_FACTOR_USED", "this sign-in was already completed")
            }
            Some((st,)) if st == "dead" => AppError::gone(
                "TOTP_DEAD",
                "this sign-in has ended; start again with your phone number",
            ),
            Some(_) => AppError::gone(
                "SECOND_FACTOR_EXPIRED",
                "this sign-in took too long; start again with your phone number",
            ),
        });
    };
    if !totp::spend_code(&mut tx, &state, &user_id, code, true).await? {
        let dead = attempts >= max;
        if dead {
            sqlx::query("UPDATE second_factor_challenges SET state = 'dead' WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            crate::notifications::on_second_step_dead(&state, &mut tx, &user_id, &client).await?;
        }
        tx.commit().await?;
        if dead {
            otp::back_off(&state, &lane, now).await?;
            return Err(AppError::gone(
                "TOTP_DEAD",
                "too many wrong codes: this sign-in has ended; start again with your phone number",
            ));
        }
        return Err(
            totp::invalid_code(axum::http::StatusCode::UNAUTHORIZED).with_details(
                serde_json::json!({ "field": "code", "attempts_left": max - attempts }),
            ),
        );
    }
    sqlx::query("UPDATE second_factor_challenges SET state = 'used' WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let proved = Proved {
        phone: &phone,
        lane: &lane,
    };
    complete_sign_in(state, tx, &user_id, proved, &client, now).await
}

/// Send a new sign-in code (the previous one stops working).
#[utoipa::path(post, path = "/auth/signin/resendotp", tag = "auth", request_body = PhoneRequest,
    responses(
        (status = 200, body = crate::api::Envelope<ResendData>),
        (status = 400, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn signin_resend(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PhoneRequest>,
) -> ApiResult<ResendData> {
    let id = start_signin(&state, &headers, &req.phone).await?;
    let message = "if this phone has an account, a new code is on its way".to_string();
    Ok(ApiOk::new(
        ResendData {
            success: true,
            message: message.clone(),
            id,
        },
        message,
    ))
}

/// Send a new sign-up code (the previous one stops working).
#[utoipa::path(post, path = "/auth/signup/resendotp", tag = "auth", request_body = ResendRequest,
    responses(
        (status = 200, body = crate::api::Envelope<ResendData>),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn signup_resend(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ResendRequest>,
) -> ApiResult<ResendData> {
    let phone = phone::normalize(&req.phone, "phone")?;
    // With the caller's own sign-up named, someone else starting a sign-up for the same phone
    // meanwhile (as another name or role) does not change what this code creates.
    let pending: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT name, role FROM otp_challenges WHERE phone = $1 AND purpose = 'signup' \
         AND ($2 = '' OR id = $2) ORDER BY created_at DESC LIMIT 1",
    )
    .bind(&phone)
    .bind(req.id.as_deref().unwrap_or(""))
    .fetch_optional(&state.db.pool)
    .await?;
    let Some((Some(name), Some(role))) = pending else {
        return Err(AppError::not_found("pending sign-up for this phone"));
    };
    signup_allowed(&account_for(&state, &phone).await?)?;
    let id = otp::issue(
        &state,
        NewChallenge {
            purpose: Purpose::Signup,
            phone: &phone,
            // No account yet: only the phone's own lane.
            lane: &phone,
            user_id: None,
            name: Some(&name),
            role: Some(&role),
        },
    )
    .await?;
    let message = "we sent a new code to your phone".to_string();
    Ok(ApiOk::new(
        ResendData {
            success: true,
            message: message.clone(),
            id,
        },
        message,
    ))
}

/// Sign out: ends this session everywhere at once and clears the cookie.
#[utoipa::path(post, path = "/auth/signout", tag = "auth",
    responses((status = 200, body = crate::api::Envelope<Done>), (status = 429, body = ErrorEnvelope)))]
async fn signout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Done> {
    if let Some(token) = session::cookie_value(&headers, state.config.cookie_name()) {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(crate::keys::sha256_hex(token.as_bytes()))
            .execute(&state.db.pool)
            .await?;
    }
    Ok(ApiOk::new(done(), "signed out").header(header::SET_COOKIE, session::clear_cookie(&state)))
}
