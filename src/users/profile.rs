//! The account itself: editing the profile, a doctor registering a patient at the clinic, and
//! erasing the account (rows now, stored objects later by the purge job).

use axum::extract::State;
use axum::http::header;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::connections::ConnectionView;
use super::{load_me, ProfileView, UserView};
use crate::api::{ApiJson, ApiOk, ApiResult};
use crate::app::AppState;
use crate::auth::routes::clean_name;
use crate::auth::session::clear_cookie;
use crate::auth::{AuthUser, Role};
use crate::error::{AppError, ErrorEnvelope};
use crate::notifications::{raise, Kind};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    /// 1 to 100 characters.
    pub name: Option<String>,
    /// Doctors only; at most 100 characters; `""` clears it.
    pub specialization: Option<String>,
    /// Doctors only; at most 100 characters; `""` clears it.
    pub qualification: Option<String>,
    /// Doctors only; at most 50 letters, digits, spaces and `-/.`; `""` clears it. Changing it
    /// takes back the doctor's verification until an operator checks the new number.
    pub registration_number: Option<String>,
    /// Doctors only; 0 to 80.
    pub years_of_experience: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user: UserView,
    pub profile: ProfileView,
}

/// `None` leaves the field alone, `Some("")` clears it, anything else is checked and trimmed.
fn clean_text(
    v: Option<String>,
    field: &str,
    max: usize,
    role: Role,
) -> Result<Option<String>, AppError> {
    let Some(v) = v else { return Ok(None) };
    if role != Role::Doctor {
        return Err(AppError::invalid(
            field,
            format!("{field}: only doctors have professional fields"),
        ));
    }
    let v = v.trim();
    if v.chars().count() > max {
        return Err(AppError::invalid(
            field,
            format!("{field} is at most {max} characters"),
        ));
    }
    if v.chars().any(crate::text::breaks_or_reorders) {
        return Err(AppError::invalid(
            field,
            format!(
                "{field} cannot contain control characters, line breaks or characters that \
                 change the direction of text"
            ),
        ));
    }
    Ok(Some(v.to_string()))
}

/// Change your name and, for doctors, the professional fields. Fields left out stay as they are.
#[utoipa::path(post, path = "/protected/user/updateProfile", tag = "user", security(("session" = [])),
    request_body = UpdateProfile,
    responses(
        (status = 200, body = crate::api::Envelope<Me>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
pub async fn update_profile(
    State(state): State<AppState>,
    me: AuthUser,
    ApiJson(req): ApiJson<UpdateProfile>,
) -> ApiResult<Me> {
    let name = req
        .name
        .as_deref()
        .map(|n| clean_name(n, "name"))
        .transpose()?;
    let specialization = clean_text(req.specialization, "specialization", 100, me.role)?;
    let qualification = clean_text(req.qualification, "qualification", 100, me.role)?;
    let registration = clean_text(req.registration_number, "registration_number", 50, me.role)?;
    if let Some(r) = &registration {
        if !r
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '/' | '.'))
        {
            return Err(AppError::invalid(
                "registration_number",
                "registration_number may hold only letters, digits, spaces and - / .",
            ));
        }
    }
    if let Some(y) = req.years_of_experience {
        if me.role != Role::Doctor {
            return Err(AppError::invalid(
                "years_of_experience",
                "years_of_experience: only doctors have professional fields",
            ));
        }
        if !(0..=80).contains(&y) {
            return Err(AppError::invalid(
                "years_of_experience",
                "years_of_experience must be between 0 and 80",
            ));
        }
    }
    if name.is_some() {
        // Ledger rows still in the journal without a name of their own (a bearer token's
        // links) take the one they were read under (`files::ledger`).
        state.ledger.flush().await?;
    }
    let mut tx = state.db.begin().await?;
    // SET expressions all read the old row, so the verification check compares against the
    // name and number the operator actually verified: a change of either takes the badge away
    // (a verified doctor renamed as another would otherwise carry the badge under that name).
    sqlx::query(
        "UPDATE users SET \
           name = COALESCE($2, name), name_lower = COALESCE($3, name_lower), \
           specialization = CASE WHEN $4 IS NULL THEN specialization WHEN $4 = '' THEN NULL ELSE $4 END, \
           qualification = CASE WHEN $5 IS NULL THEN qualification WHEN $5 = '' THEN NULL ELSE $5 END, \
           doctor_verified = CASE WHEN $6 IS NOT NULL AND COALESCE(registration_number, '') <> $6 THEN 0 \
             WHEN $2 IS NOT NULL AND $2 <> name THEN 0 ELSE doctor_verified END, \
           registration_number = CASE WHEN $6 IS NULL THEN registration_number WHEN $6 = '' THEN NULL ELSE $6 END, \
           years_of_experience = COALESCE($7, years_of_experience), \
           updated_at = $8 \
         WHERE id = $1",
    )
    .bind(&me.user_id)
    .bind(&name)
    .bind(name.as_ref().map(|n| n.to_lowercase()))
    .bind(&specialization)
    .bind(&qualification)
    .bind(&registration)
    .bind(req.years_of_experience)
    .bind(state.clock.now())
    .execute(&mut *tx)
    .await?;
    super::search::index_name(&mut tx, &me.user_id).await?;
    tx.commit().await?;
    let (user, profile) = load_me(&state, &me.user_id).await?;
    Ok(ApiOk::new(Me { user, profile }, "profile updated"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPatient {
    /// 1 to 100 characters.
    pub name: String,
    /// E.164, for example `+919876543210`.
    #[schema(example = "+919876543210")]
    pub phone: String,
}

#[derive(Serialize, ToSchema)]
pub struct PatientCreated {
    pub success: bool,
    pub patient_id: String,
    /// The new connection between you and the patient.
    pub connection: ConnectionView,
}

/// Patients one doctor may register (or try to) per hour: a clinic's day, not a scan of phones.
pub const CREATE_PATIENT_PER_HOUR: i64 = 30;

/// Register a patient at the clinic (doctors only). The account exists at once, unverified and
/// connected to you; the patient takes it over by signing up or in with a code on that phone.
#[utoipa::path(post, path = "/protected/user/createPatient", tag = "user", security(("session" = [])),
    request_body = NewPatient,
    responses(
        (status = 201, body = crate::api::Envelope<PatientCreated>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn create_patient(
    State(state): State<AppState>,
    me: AuthUser,
    ApiJson(req): ApiJson<NewPatient>,
) -> ApiResult<PatientCreated> {
    me.require_role(Role::Doctor)?;
    let name = clean_name(&req.name, "name")?;
    let phone = crate::auth::phone::normalize(&req.phone, "phone")?;
    let now = state.clock.now();
    // Its 409 tells whether a phone has an account, and each 201 holds a phone for a patient:
    // bounded per doctor, so neither can be done in bulk.
    crate::ratelimit::hit(
        &state.db,
        &format!("create-patient:{}", me.user_id),
        CREATE_PATIENT_PER_HOUR,
        3600,
        now,
    )
    .await?;
    let patient_id = crate::db::new_id();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO users (id, phone, name, name_lower, role, phone_verified, doctor_verified, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'patient', 0, 0, $5, $6, $6)",
    )
    .bind(&patient_id)
    .bind(&phone)
    .bind(&name)
    .bind(name.to_lowercase())
    .bind(&me.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            AppError::conflict(
                "PHONE_ALREADY_REGISTERED",
                "this phone already has an account; ask the patient to send you a connection request instead",
            )
        } else {
            e.into()
        }
    })?;
    let connection_id = crate::db::new_id();
    sqlx::query(
        "INSERT INTO connections (id, patient_id, doctor_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&connection_id)
    .bind(&patient_id)
    .bind(&me.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let doctor_name = super::connections::name_of(&mut tx, &me.user_id).await?;
    raise(
        &mut tx,
        &state,
        &patient_id,
        Kind::PatientAccountCreated,
        &format!("{doctor_name} registered you as a patient"),
        json!({"doctor_id": me.user_id, "doctor_name": doctor_name, "connection_id": connection_id}),
    )
    .await?;
    tx.commit().await?;
    let connection = super::connections::load_connections(&state, &me.user_id)
        .await?
        .into_iter()
        .find(|c| c.id == connection_id)
        // Ended between the commit and this read (the doctor's account erased meanwhile, say).
        .ok_or_else(|| {
            AppError::conflict("GONE_MEANWHILE", "the new connection was ended meanwhile")
        })?;
    Ok(ApiOk::new(
        PatientCreated {
            success: true,
            patient_id,
            connection,
        },
        "patient registered",
    )
    .created())
}

/// The phone's owner, having proved it with a code, signs up as a doctor over a patient account a
/// clinic registered on that phone and nobody ever claimed: that record goes (inside the
/// sign-up's transaction), and each doctor it was connected to is told. An unclaimed record never
/// had a session, so it holds no files, grants or ledger rows; one that somehow does is kept and
/// the sign-up refused. Fails with 409 if the record was claimed meanwhile.
pub async fn remove_clinic_record(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    patient_id: &str,
) -> Result<(), AppError> {
    let claimed = || {
        AppError::conflict(
            "PHONE_ALREADY_REGISTERED",
            "this phone already has an account; sign in instead",
        )
    };
    let (files,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files WHERE owner_id = $1")
        .bind(patient_id)
        .fetch_one(&mut *tx)
        .await?;
    if files > 0 {
        return Err(claimed());
    }
    let name = super::connections::name_of(&mut *tx, patient_id).await?;
    let doctors = end_connections(tx, patient_id).await?;
    // Its notifications, search entry and notification head go with it (ON DELETE CASCADE).
    let gone = sqlx::query("DELETE FROM users WHERE id = $1 AND phone_verified = 0")
        .bind(patient_id)
        .execute(&mut *tx)
        .await?;
    if gone.rows_affected() != 1 {
        return Err(claimed());
    }
    let told = format!(
        "The phone you registered {name} with now belongs to a doctor's account; that patient record was removed"
    );
    tell_peers(tx, state, &doctors, Some((patient_id, &name)), &told).await?;
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub success: bool,
    pub message: String,
}

/// Erase your account for good: sessions end at once, you vanish from search and from every
/// peer's lists, your files go, and the phone can sign up again as a new account. It cannot be
/// undone, so a session must have been signed into within the last 10 minutes (403
/// `REAUTH_REQUIRED` otherwise): a stolen cookie cannot erase someone's records.
#[utoipa::path(post, path = "/protected/user/deleteProfile", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<Deleted>), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn delete_profile(
    State(state): State<AppState>,
    me: AuthUser,
    client: crate::auth::ClientInfo,
) -> ApiResult<Deleted> {
    // A session: signed into in the last 10 minutes. A provider's token: issued for a sign-in
    // (`auth_time`, else `iat`) in the last 10 minutes.
    {
        let mut conn = state.db.pool.acquire().await?;
        crate::auth::session::require_recent_signin(&mut conn, &state, &me, "erasing your account")
            .await?;
    }
    erase_account(&state, &me.user_id, &client).await?;
    let message = "your account has been deleted".to_string();
    Ok(ApiOk::new(
        Deleted {
            success: true,
            message: message.clone(),
        },
        message,
    )
    .header(header::SET_COOKIE, clear_cookie(&state)))
}

/// Deletes every connection and connection request of `user_id`, and returns the ended
/// connections as (connection id, peer), ordered by peer for `tell_peers`.
async fn end_connections(
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<Vec<(String, String)>, AppError> {
    let mut peers: Vec<(String, String)> = sqlx::query_as(
        "DELETE FROM connections WHERE patient_id = $1 OR doctor_id = $1 RETURNING id, \
         CASE WHEN patient_id = $1 THEN doctor_id ELSE patient_id END",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM connection_requests WHERE patient_id = $1 OR doctor_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    // Raising takes a lock on each recipient's notification head: a fixed order (by user id)
    // keeps two such transactions from locking the same heads in opposite orders.
    peers.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(peers)
}

/// Tells each peer of `end_connections` that its connection ended, and why (`message`); `by`
/// names who ended it (id, name), or no one (an erased account leaves nothing of itself behind).
async fn tell_peers(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    peers: &[(String, String)],
    by: Option<(&str, &str)>,
    message: &str,
) -> Result<(), AppError> {
    for (connection_id, peer) in peers {
        let data = match by {
            Some((id, name)) => json!({"connection_id": connection_id, "by": id, "by_name": name}),
            None => json!({"connection_id": connection_id}),
        };
        raise(tx, state, peer, Kind::ConnectionEnded, message, data).await?;
    }
    Ok(())
}

/// Removes, inside an erase, every other account's notification that carries `user_id`'s
/// details (each names the account that acted by id: `patient_id`, `doctor_id` or `by`, beside
/// its name, a request's note, a file's name): each one holding the id as a JSON string goes
/// (`notifications::mentioning`). Owners' access ledgers keep who read their files, by name
/// (see the README).
async fn forget_mentions(tx: &mut sqlx::AnyConnection, user_id: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM notifications WHERE user_id <> $1 AND data LIKE $2")
        .bind(user_id)
        .bind(crate::notifications::mentioning(None, user_id))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The accounts an erase of `$1` writes about or changes: the other side of each connection and
/// request (told the connection ended), the owners of files it was given (an `end` row in their
/// ledgers) and the patients it registered (`created_by` cleared).
const RELATED_ACCOUNTS: &str = "SELECT doctor_id FROM connections WHERE patient_id = $1 \
     UNION SELECT patient_id FROM connections WHERE doctor_id = $1 \
     UNION SELECT doctor_id FROM connection_requests WHERE patient_id = $1 \
     UNION SELECT patient_id FROM connection_requests WHERE doctor_id = $1 \
     UNION SELECT owner_id FROM file_grants WHERE grantee_id = $1 \
     UNION SELECT id FROM users WHERE created_by = $1";

/// `RELATED_ACCOUNTS` of `user_id`.
async fn related_accounts(
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<Vec<String>, AppError> {
    let rows: Vec<(String,)> = sqlx::query_as(RELATED_ACCOUNTS)
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// PostgreSQL: holds `user_id`'s row `FOR UPDATE` and those of the accounts its erase writes
/// about (`RELATED_ACCOUNTS`) `FOR KEY SHARE`, all in id order, the order in which every write
/// naming several accounts holds them (`db::hold_accounts`). Two erases of connected accounts
/// then queue, where each used to hold its own row and wait for the other's (a deadlock, one
/// answered 503). Once `user_id` is held, nothing new can refer to it (a write that does holds
/// it first), so one more read finds every account related in the meantime, held last, out of
/// order. Nothing on SQLite, whose write transactions run one at a time.
async fn hold_for_erase(
    tx: &mut sqlx::AnyConnection,
    dialect: crate::db::Dialect,
    user_id: &str,
) -> Result<(), AppError> {
    use crate::db::{hold_accounts, RowLock};
    if dialect == crate::db::Dialect::Sqlite {
        return Ok(());
    }
    let related = related_accounts(tx, user_id).await?;
    let (before, after): (Vec<&str>, Vec<&str>) = related
        .iter()
        .map(String::as_str)
        .partition(|id| *id < user_id);
    hold_accounts(tx, dialect, &before).await?;
    sqlx::query(&format!(
        "SELECT id FROM users WHERE id = $1{}",
        dialect.lock_rows(RowLock::Update)
    ))
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    hold_accounts(tx, dialect, &after).await?;
    let again = related_accounts(tx, user_id).await?;
    let late: Vec<&str> = again
        .iter()
        .filter(|id| !related.contains(id))
        .map(String::as_str)
        .collect();
    hold_accounts(tx, dialect, &late).await?;
    Ok(())
}

/// Removes every row of `user_id` in one transaction and leaves the durable record that drives
/// the purge of their stored objects.
pub async fn erase_account(
    state: &AppState,
    user_id: &str,
    client: &crate::auth::ClientInfo,
) -> Result<(), AppError> {
    let now = state.clock.now();
    // The ledger rows still in its journal go with the rest.
    state.ledger.flush().await?;
    let mut tx = state.db.begin().await?;
    // A write first: it takes SQLite's write lock before anything is read.
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    // PostgreSQL: the account's row is held from here, so a write that refers to it (a patient
    // registered, a request sent, a grant made) either committed before and is cleaned up
    // below, or waits and then finds the account gone (409 GONE_MEANWHILE). Without it, such a
    // write could land between the clean-up and the final DELETE and outlive the account.
    hold_for_erase(&mut tx, state.db.dialect, user_id).await?;
    // Still there (a second erase of the same account finds it gone: 401).
    super::connections::name_of(&mut tx, user_id).await?;
    let peers = end_connections(&mut tx, user_id).await?;
    // What a doctor was given ends, in each owner's ledger, before the rows go.
    crate::files::end_access(&mut tx, None, user_id, user_id, now, client).await?;
    let keys = crate::files::forget_user(&mut tx, user_id).await?;
    // The account vanishes from its peers' notifications too, and the notice that it left
    // names no one.
    forget_mentions(&mut tx, user_id).await?;
    let told = "Someone you were connected with closed their account";
    tell_peers(&mut tx, state, &peers, None, told).await?;
    sqlx::query(
        "INSERT INTO deleted_users (user_id, object_keys, deleted_at, attempts, next_attempt_at) \
         VALUES ($1, $2, $3, 0, $3)",
    )
    .bind(user_id)
    .bind(serde_json::to_string(&keys).map_err(anyhow::Error::from)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE users SET created_by = NULL WHERE created_by = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    // After the user's row: see `forget_ledger`.
    crate::files::forget_ledger(&mut tx, user_id).await?;
    tx.commit().await?;
    tracing::info!(
        user_id,
        objects = keys.len(),
        "account erased; purge queued"
    );
    Ok(())
}
