//! People: the signed-in user's own view and profile, doctor search, patient–doctor connection
//! requests and connections, the user's sessions, clinic-registered patients, and account
//! deletion with the background purge that finishes it.

pub mod admin;
mod body;
pub mod connections;
pub mod profile;
pub mod purge;
pub mod search;
pub mod sessions;

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiOk, ApiResult};
use crate::app::AppState;
use crate::auth::Role;
use crate::error::{AppError, ErrorEnvelope};

pub use connections::ConnectionView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(session_detail))
        .routes(routes!(profile::update_profile))
        .routes(routes!(profile::create_patient))
        .routes(routes!(profile::delete_profile))
        .routes(routes!(connections::connection_request))
        .routes(routes!(connections::accept_request))
        .routes(routes!(connections::reject_request))
        .routes(routes!(connections::get_requests))
        .routes(routes!(connections::delete_pending_request))
        .routes(routes!(connections::delete_connection))
        .routes(routes!(connections::list_connections))
        .routes(routes!(search::by_name))
        .routes(routes!(search::by_number))
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(sessions::revoke_session))
        .routes(routes!(sessions::signout_everywhere))
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    /// E.164; absent for accounts made through an identity provider without a phone.
    pub phone: Option<String>,
    pub role: Role,
    /// Whether the owner has proved the phone with a code (false for a clinic-registered patient
    /// who has not signed in yet).
    pub phone_verified: bool,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProfileView {
    pub role: Role,
    pub specialization: Option<String>,
    pub qualification: Option<String>,
    pub registration_number: Option<String>,
    pub years_of_experience: Option<i64>,
    /// For doctors: an operator has checked the registration number.
    pub verified: bool,
}

/// Another person as the caller sees them: a connection's peer, a request's sender or addressee.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct PeerView {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// For a doctor: an operator has checked the registration number. Always false for patients.
    pub verified: bool,
    pub specialization: Option<String>,
}

/// The columns `PeerView::from_row` reads, for a users table aliased `u`.
pub(crate) const PEER_COLS: &str = "u.id, u.name, u.role, u.doctor_verified, u.specialization";

pub(crate) type PeerRow = (String, String, String, i64, Option<String>);

impl PeerView {
    pub(crate) fn from_row((id, name, role, verified, specialization): PeerRow) -> PeerView {
        let role = Role::parse(&role).unwrap_or(Role::Patient);
        PeerView {
            id,
            name,
            role,
            verified: role == Role::Doctor && verified != 0,
            specialization,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionDetail {
    pub user: UserView,
    pub profile: ProfileView,
    pub connections: Vec<ConnectionView>,
}

/// A user's own columns, as `load_me` and the session lookup read them.
pub type UserRow = (
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
);

pub async fn load_me(state: &AppState, user_id: &str) -> Result<(UserView, ProfileView), AppError> {
    Ok(views(load_row(state, user_id).await?))
}

/// A user's own row; 401 if the account is gone.
async fn load_row(state: &AppState, user_id: &str) -> Result<UserRow, AppError> {
    let row: Option<UserRow> = sqlx::query_as(
        "SELECT id, phone, name, role, phone_verified, doctor_verified, specialization, qualification, \
         registration_number, years_of_experience, created_at FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(&state.db.pool)
    .await?;
    row.ok_or_else(|| AppError::unauthorized("your account no longer exists"))
}

/// The user's own views from their row.
pub fn views(row: UserRow) -> (UserView, ProfileView) {
    let (id, phone, name, role, phone_verified, doctor_verified, spec, qual, reg, years, created) =
        row;
    let role = Role::parse(&role).unwrap_or(Role::Patient);
    (
        UserView {
            id,
            name,
            phone,
            role,
            phone_verified: phone_verified != 0,
            created_at: crate::clock::rfc3339(created),
        },
        ProfileView {
            role,
            specialization: spec,
            qualification: qual,
            registration_number: reg,
            years_of_experience: years,
            verified: role == Role::Doctor && doctor_verified != 0,
        },
    )
}

/// Who is signed in: the user, their profile and their connections.
#[utoipa::path(get, path = "/protected/user/sessionDetail", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<SessionDetail>), (status = 401, body = ErrorEnvelope)))]
async fn session_detail(caller: DetailCaller) -> ApiResult<SessionDetail> {
    let (user, profile) = views(caller.row);
    Ok(ApiOk::new(
        SessionDetail {
            user,
            profile,
            connections: caller.connections,
        },
        "session detail",
    ))
}

/// `sessionDetail`'s caller, their own row and their connections. With a session cookie all
/// three come from one batched read; otherwise the caller is judged first (`session::Caller`)
/// and the rest read after.
struct DetailCaller {
    row: UserRow,
    connections: Vec<ConnectionView>,
}

impl axum::extract::FromRequestParts<AppState> for DetailCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, AppError> {
        use crate::auth::session;
        let token = match session::Caller::from_request_parts(parts, state).await? {
            session::Caller::Session(token) => token,
            session::Caller::Judged(me) => {
                let connections = connections::load_connections(state, &me.user_id).await?;
                let row = load_row(state, &me.user_id).await?;
                return Ok(DetailCaller { row, connections });
            }
        };
        let now = state.clock.now();
        let found = state
            .session_details
            .get(session::token_key(&token))
            .await?;
        let (found, connections) = found.unzip();
        let (_, row) = session::admit_with_user(state, found, now).await?;
        Ok(DetailCaller {
            row,
            connections: connections.unwrap_or_default(),
        })
    }
}
