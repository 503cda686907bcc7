//! The caller's own sessions: where they are signed in, and ending one or all of them. Ending a
//! session deletes its row, so it stops working at once on every instance.

use axum::extract::State;
use axum::http::header;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{not_found, ApiOk, ApiPath, ApiResult};
use crate::app::AppState;
use crate::auth::session::clear_cookie;
use crate::auth::AuthUser;
use crate::clock::rfc3339;
use crate::error::ErrorEnvelope;

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// A summary of the browser or app, for example `Firefox on Linux`.
    pub device: String,
    pub ip: String,
    pub created_at: String,
    pub last_seen_at: String,
    /// This is the session making the request.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

type SessionRow = (String, String, String, i64, i64);

/// Where you are signed in (live sessions only), most recently used first.
#[utoipa::path(get, path = "/protected/user/sessions", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<SessionList>), (status = 401, body = ErrorEnvelope)))]
pub async fn list_sessions(State(state): State<AppState>, me: AuthUser) -> ApiResult<SessionList> {
    let now = state.clock.now();
    let idle = state.config.limits.session_idle_ms();
    let rows: Vec<SessionRow> = sqlx::query_as(
        "SELECT id, ip, user_agent, created_at, last_seen_at FROM sessions \
         WHERE user_id = $1 AND expires_at > $2 AND last_seen_at > $3 ORDER BY last_seen_at DESC, id",
    )
    .bind(&me.user_id)
    .bind(now)
    .bind(now - idle)
    .fetch_all(&state.db.pool)
    .await?;
    let sessions = rows
        .into_iter()
        .map(|(id, ip, ua, created, seen)| SessionView {
            current: me.session_id.as_deref() == Some(id.as_str()),
            id,
            device: crate::auth::session::device_summary(&ua),
            ip,
            created_at: rfc3339(created),
            last_seen_at: rfc3339(seen),
        })
        .collect();
    Ok(ApiOk::new(SessionList { sessions }, "sessions"))
}

#[derive(Serialize, ToSchema)]
pub struct Ended {
    pub success: bool,
    /// How many sessions ended.
    pub ended: i64,
}

/// End one of your sessions (signing that device out at once).
#[utoipa::path(post, path = "/protected/user/revokeSession/{id}", tag = "user", security(("session" = [])),
    params(("id" = String, Path, description = "the session's id, from GET sessions")),
    responses(
        (status = 200, body = crate::api::Envelope<Ended>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    me: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Ended> {
    let gone = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(&id)
        .bind(&me.user_id)
        .execute(&state.db.pool)
        .await?;
    if gone.rows_affected() != 1 {
        return Err(not_found("session"));
    }
    let ok = ApiOk::new(
        Ended {
            success: true,
            ended: 1,
        },
        "session ended",
    );
    Ok(if me.session_id.as_deref() == Some(id.as_str()) {
        ok.header(header::SET_COOKIE, clear_cookie(&state))
    } else {
        ok
    })
}

/// End every one of your sessions, this one included.
#[utoipa::path(post, path = "/protected/user/signoutEverywhere", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<Ended>), (status = 401, body = ErrorEnvelope)))]
pub async fn signout_everywhere(State(state): State<AppState>, me: AuthUser) -> ApiResult<Ended> {
    let gone = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(&me.user_id)
        .execute(&state.db.pool)
        .await?;
    Ok(ApiOk::new(
        Ended {
            success: true,
            ended: gone.rows_affected() as i64,
        },
        "signed out everywhere",
    )
    .header(header::SET_COOKIE, clear_cookie(&state)))
}
