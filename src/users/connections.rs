//! Connection requests (patient → doctor) and the connections they become. Every state change
//! is one conditional statement, so racing accepts, rejects and withdrawals end in exactly one
//! state; a request or connection that is not the caller's answers 404, like one that does not exist.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::body::OptionalJson;
use super::{PeerRow, PeerView, PEER_COLS};
use crate::api::{done, not_found, ApiOk, ApiPath, ApiResult, Done};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::clock::rfc3339;
use crate::error::{AppError, ErrorEnvelope};
use crate::notifications::{raise, Kind};

/// A patient–doctor connection as one side sees it.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct ConnectionView {
    pub id: String,
    /// The other side: the doctor for a patient, the patient for a doctor.
    pub peer: PeerView,
    /// The peer's phone (E.164), which connected people may see.
    pub peer_phone: Option<String>,
    pub created_at: String,
}

type ConnRow = (
    String,
    i64,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<String>,
);

/// Everything `user_id` is connected to, oldest first.
pub async fn load_connections(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<ConnectionView>, AppError> {
    Ok(state
        .connections
        .get(user_id.to_string())
        .await?
        .unwrap_or_default())
}

/// Connection lists, batched (`crate::batch`): every signed-in page load reads one, so
/// concurrent requests share the query; each still reads after it was asked.
pub type ConnectionLookups = crate::batch::Batcher<String, Vec<ConnectionView>>;

pub fn connection_lookups(db: crate::db::Db) -> ConnectionLookups {
    crate::batch::Batcher::reading(db, |conn, dialect, users| {
        Box::pin(async move {
            // One half per side of the connection; the first column says whose list a row is in.
            // Each half has its own copy of the ids (bound twice, in order).
            let n = users.len();
            let (patients, doctors) = (
                crate::batch::placeholders(dialect, 1, n),
                crate::batch::placeholders(dialect, n + 1, n),
            );
            let sql = format!(
                    "SELECT c.patient_id, c.id, c.created_at, u.phone, {PEER_COLS} FROM connections c \
                     JOIN users u ON u.id = c.doctor_id WHERE c.patient_id IN ({patients}) \
                     UNION ALL \
                     SELECT c.doctor_id, c.id, c.created_at, u.phone, {PEER_COLS} FROM connections c \
                     JOIN users u ON u.id = c.patient_id WHERE c.doctor_id IN ({doctors}) \
                     ORDER BY 1, 3, 2"
                );
            let mut q = sqlx::query_as::<
                _,
                (
                    String,
                    String,
                    i64,
                    Option<String>,
                    String,
                    String,
                    String,
                    i64,
                    Option<String>,
                ),
            >(&sql);
            for u in users.iter().chain(&users) {
                q = q.bind(u);
            }
            let mut lists: Vec<(String, Vec<ConnectionView>)> = Vec::new();
            for (owner, id, created, phone, uid, name, role, verified, spec) in
                q.fetch_all(conn).await?
            {
                let view = conn_view((id, created, phone, uid, name, role, verified, spec));
                match lists.last_mut() {
                    Some((last, list)) if *last == owner => list.push(view),
                    _ => lists.push((owner, vec![view])),
                }
            }
            Ok(lists)
        })
    })
}

/// A session and its user's connections, as `sessionDetail` needs them.
pub type SessionWithConnections = (crate::auth::session::SessionRow, Vec<ConnectionView>);

/// `sessionDetail`'s reads, batched: the session check and the connection list in one query, so
/// a page load waits for one batch instead of two. The session is judged as every other
/// (`crate::auth::session::admit`); like them, each query starts after its requests arrived.
pub type SessionDetailLookups = crate::batch::Batcher<String, SessionWithConnections>;

pub fn session_detail_lookups(db: crate::db::Db) -> SessionDetailLookups {
    use crate::auth::session::{session_row, SESSION_COLS, SESSION_COL_COUNT, SESSION_FROM};
    crate::batch::Batcher::reading(db, |conn, dialect, hashes| {
        Box::pin(async move {
            // One row per connection, either side (both columns are indexed), or one
            // row of NULLs for none. Columns 16 and 17 are c.id and c.created_at.
            let sql = format!(
                "SELECT {SESSION_COLS}, c.id, c.created_at, u.phone, {PEER_COLS} \
                         FROM {SESSION_FROM} \
                         LEFT JOIN connections c ON c.patient_id = m.id OR c.doctor_id = m.id \
                         LEFT JOIN users u ON u.id = \
                             CASE WHEN c.patient_id = m.id THEN c.doctor_id ELSE c.patient_id END \
                         WHERE s.token_hash IN ({}) ORDER BY 1, 17, 16",
                crate::batch::placeholders(dialect, 1, hashes.len())
            );
            let mut q = sqlx::query(&sql);
            for h in &hashes {
                q = q.bind(h);
            }
            let mut found: Vec<(String, SessionWithConnections)> = Vec::new();
            for row in q.fetch_all(conn).await? {
                let (hash, session) = session_row(&row)?;
                let connection = connection_at(&row, SESSION_COL_COUNT)?;
                match found.last_mut() {
                    Some((last, (_, list))) if *last == hash => list.extend(connection),
                    _ => found.push((hash, (session, connection.into_iter().collect()))),
                }
            }
            Ok(found)
        })
    })
}

/// The connection in a row's columns from `at` on (`c.id, c.created_at, u.phone, PEER_COLS`);
/// `None` where a left join found none.
fn connection_at(
    row: &sqlx::any::AnyRow,
    at: usize,
) -> Result<Option<ConnectionView>, sqlx::Error> {
    use sqlx::Row;
    let Some(id) = row.try_get::<Option<String>, _>(at)? else {
        return Ok(None);
    };
    Ok(Some(conn_view((
        id,
        row.try_get(at + 1)?,
        row.try_get(at + 2)?,
        row.try_get(at + 3)?,
        row.try_get(at + 4)?,
        row.try_get(at + 5)?,
        row.try_get(at + 6)?,
        row.try_get(at + 7)?,
    ))))
}

fn conn_view((id, created, phone, uid, name, role, verified, spec): ConnRow) -> ConnectionView {
    ConnectionView {
        id,
        peer: PeerView::from_row((uid, name, role, verified, spec)),
        peer_phone: phone,
        created_at: rfc3339(created),
    }
}

/// One connection as `viewer` sees it, read inside a transaction.
async fn connection_for(
    tx: &mut sqlx::AnyConnection,
    connection_id: &str,
    viewer: &str,
) -> Result<ConnectionView, AppError> {
    let row: Option<ConnRow> = sqlx::query_as(&format!(
        "SELECT c.id, c.created_at, u.phone, {PEER_COLS} FROM connections c \
         JOIN users u ON u.id = CASE WHEN c.patient_id = $2 THEN c.doctor_id ELSE c.patient_id END \
         WHERE c.id = $1 AND (c.patient_id = $2 OR c.doctor_id = $2)"
    ))
    .bind(connection_id)
    .bind(viewer)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(conn_view).ok_or_else(|| not_found("connection"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// A short note for the doctor, at most 200 characters.
    pub note: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestCreated {
    pub success: bool,
    pub request_id: String,
    /// The doctor asked, with whether an operator has verified them.
    pub doctor: PeerView,
}

fn clean_note(note: Option<String>) -> Result<Option<String>, AppError> {
    let Some(note) = note else { return Ok(None) };
    let note = note.trim();
    if note.is_empty() {
        return Ok(None);
    }
    if note.chars().count() > 200 {
        return Err(AppError::invalid("note", "note is at most 200 characters"));
    }
    if note
        .chars()
        .any(|c| (c.is_control() && c != '\n') || crate::text::is_bidi_control(c))
    {
        return Err(AppError::invalid(
            "note",
            "note cannot contain control characters or ones that change the direction of text",
        ));
    }
    Ok(Some(note.to_string()))
}

/// Connection requests one patient may send per hour (to any doctors).
pub const REQUESTS_PER_HOUR: i64 = 20;

/// Ask a doctor to connect (patients only). The body (`{note}`) may be left out.
#[utoipa::path(post, path = "/protected/user/connectionRequest/{doctor_id}", tag = "user", security(("session" = [])),
    params(("doctor_id" = String, Path, description = "the doctor's user id")),
    request_body(content = Option<RequestBody>, description = "optional", content_type = "application/json"),
    responses(
        (status = 201, body = crate::api::Envelope<RequestCreated>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
pub async fn connection_request(
    State(state): State<AppState>,
    me: AuthUser,
    ApiPath(doctor_id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RequestBody>,
) -> ApiResult<RequestCreated> {
    me.require_role(Role::Patient)?;
    let note = clean_note(body.and_then(|b| b.note))?;
    let now = state.clock.now();
    let request_id = crate::db::new_id();
    let mut tx = state.db.begin().await?;
    // Writing first takes SQLite's write lock before any read, so a concurrent writer makes this
    // wait instead of failing; the partial unique index allows one pending request per pair.
    let inserted = sqlx::query(
        "INSERT INTO connection_requests (id, patient_id, doctor_id, note, status, created_at) \
         SELECT $1, $2, u.id, $4, 'pending', $5 FROM users u WHERE u.id = $3 AND u.role = 'doctor'",
    )
    .bind(&request_id)
    .bind(&me.user_id)
    .bind(&doctor_id)
    .bind(&note)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            AppError::conflict(
                "REQUEST_PENDING",
                "you already have a pending request to this doctor",
            )
        } else {
            e.into()
        }
    })?;
    if inserted.rows_affected() != 1 {
        return Err(not_found("doctor"));
    }
    let connected: Option<(String,)> =
        sqlx::query_as("SELECT id FROM connections WHERE patient_id = $1 AND doctor_id = $2")
            .bind(&me.user_id)
            .bind(&doctor_id)
            .fetch_optional(&mut *tx)
            .await?;
    if connected.is_some() {
        return Err(AppError::conflict(
            "ALREADY_CONNECTED",
            "you are already connected to this doctor",
        ));
    }
    // Each request raises a notice for the doctor: sending and withdrawing in a loop must not
    // bury a doctor in notices. Counted in this transaction, once the request is known to reach
    // the doctor: a refused one (404, 409, even a second click racing the first) rolls its count
    // back with it.
    crate::ratelimit::hit_in(
        &mut tx,
        &format!("connection-request:{}", me.user_id),
        REQUESTS_PER_HOUR,
        3600,
        now,
    )
    .await?;
    let doctor: PeerRow =
        sqlx::query_as(&format!("SELECT {PEER_COLS} FROM users u WHERE u.id = $1"))
            .bind(&doctor_id)
            .fetch_one(&mut *tx)
            .await?;
    let doctor = PeerView::from_row(doctor);
    let patient_name = name_of(&mut tx, &me.user_id).await?;
    raise(
        &mut tx,
        &state,
        &doctor_id,
        Kind::ConnectionRequested,
        &format!("{patient_name} asked to connect with you"),
        json!({"request_id": request_id, "patient_id": me.user_id, "patient_name": patient_name, "note": note}),
    )
    .await?;
    tx.commit().await?;
    let message = if doctor.verified {
        "request sent"
    } else {
        "request sent; note that this doctor has not been verified yet"
    };
    Ok(ApiOk::new(
        RequestCreated {
            success: true,
            request_id,
            doctor,
        },
        message,
    )
    .created())
}

pub(crate) async fn name_of(
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<String, AppError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| r.0)
        .ok_or_else(|| AppError::unauthorized("your account no longer exists"))
}

/// Why a conditional update on a request changed nothing: it is someone else's (404) or no
/// longer pending (409).
async fn why_not_pending(
    state: &AppState,
    request_id: &str,
    owner_col: &str,
    owner: &str,
) -> AppError {
    let row: Result<Option<(String,)>, _> = sqlx::query_as(&format!(
        "SELECT status FROM connection_requests WHERE id = $1 AND {owner_col} = $2"
    ))
    .bind(request_id)
    .bind(owner)
    .fetch_optional(&state.db.pool)
    .await;
    match row {
        Ok(Some((status,))) => AppError::conflict(
            "REQUEST_NOT_PENDING",
            format!("this request is no longer pending (it was {status})"),
        )
        .with_details(json!({ "status": status })),
        Ok(None) => not_found("connection request"),
        Err(e) => e.into(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct AcceptData {
    pub success: bool,
    pub connection: ConnectionView,
}

/// A pending request's patient and doctor, by its id ($1), addressed to the caller ($2).
const REQUEST_PARTIES: &str =
    "SELECT patient_id, doctor_id FROM connection_requests WHERE id = $1 AND doctor_id = $2";

/// A connection's patient and doctor, by its id ($1), when the caller ($2) is one of them.
const CONNECTION_PARTIES: &str = "SELECT patient_id, doctor_id FROM connections \
     WHERE id = $1 AND (patient_id = $2 OR doctor_id = $2)";

/// On PostgreSQL, holds the two accounts a request or connection joins (`parties` selects them)
/// before its own row is touched: an erase of either, which holds its account and then deletes
/// the row, queues with this write instead of deadlocking with it (`db::hold_accounts`). An
/// account found gone is left to the write, which then matches nothing.
async fn hold_parties(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    state: &AppState,
    parties: &str,
    id: &str,
    me: &str,
) -> Result<(), AppError> {
    if state.db.dialect != crate::db::Dialect::Postgres {
        return Ok(());
    }
    let found: Option<(String, String)> = sqlx::query_as(parties)
        .bind(id)
        .bind(me)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some((patient, doctor)) = found {
        crate::db::hold_accounts(tx, state.db.dialect, &[&patient, &doctor]).await?;
    }
    Ok(())
}

/// Accept a request addressed to you (doctors only); creates the connection.
#[utoipa::path(post, path = "/protected/user/acceptConnectionRequest/{request_id}", tag = "user", security(("session" = [])),
    params(("request_id" = String, Path, description = "the request's id")),
    responses(
        (status = 200, body = crate::api::Envelope<AcceptData>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn accept_request(
    State(state): State<AppState>,
    me: AuthUser,
    ApiPath(request_id): ApiPath<String>,
) -> ApiResult<AcceptData> {
    me.require_role(Role::Doctor)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    hold_parties(&mut tx, &state, REQUEST_PARTIES, &request_id, &me.user_id).await?;
    // The first write of the transaction takes the write lock (SQLite) or the row lock
    // (PostgreSQL), so a racing accept or reject sees the outcome and matches nothing.
    let accepted: Option<(String,)> = sqlx::query_as(
        "UPDATE connection_requests SET status = 'accepted', decided_at = $3 \
         WHERE id = $1 AND doctor_id = $2 AND status = 'pending' RETURNING patient_id",
    )
    .bind(&request_id)
    .bind(&me.user_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((patient_id,)) = accepted else {
        drop(tx);
        return Err(why_not_pending(&state, &request_id, "doctor_id", &me.user_id).await);
    };
    // A clinic may have registered the patient meanwhile: the connection then already exists.
    sqlx::query(
        "INSERT INTO connections (id, patient_id, doctor_id, request_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (patient_id, doctor_id) DO NOTHING",
    )
    .bind(crate::db::new_id())
    .bind(&patient_id)
    .bind(&me.user_id)
    .bind(&request_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let (connection_id,): (String,) =
        sqlx::query_as("SELECT id FROM connections WHERE patient_id = $1 AND doctor_id = $2")
            .bind(&patient_id)
            .bind(&me.user_id)
            .fetch_one(&mut *tx)
            .await?;
    let connection = connection_for(&mut tx, &connection_id, &me.user_id).await?;
    let doctor_name = name_of(&mut tx, &me.user_id).await?;
    raise(
        &mut tx,
        &state,
        &patient_id,
        Kind::ConnectionAccepted,
        &format!("{doctor_name} accepted your connection request"),
        json!({"request_id": request_id, "connection_id": connection_id, "doctor_id": me.user_id, "doctor_name": doctor_name}),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiOk::new(
        AcceptData {
            success: true,
            connection,
        },
        "connected",
    ))
}

#[derive(Serialize, ToSchema)]
pub struct Decided {
    pub success: bool,
    pub message: String,
}

/// Reject a request addressed to you (doctors only).
#[utoipa::path(post, path = "/protected/user/rejectConnectionRequest/{request_id}", tag = "user", security(("session" = [])),
    params(("request_id" = String, Path, description = "the request's id")),
    responses(
        (status = 200, body = crate::api::Envelope<Decided>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn reject_request(
    State(state): State<AppState>,
    me: AuthUser,
    ApiPath(request_id): ApiPath<String>,
) -> ApiResult<Decided> {
    me.require_role(Role::Doctor)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    hold_parties(&mut tx, &state, REQUEST_PARTIES, &request_id, &me.user_id).await?;
    let rejected: Option<(String,)> = sqlx::query_as(
        "UPDATE connection_requests SET status = 'rejected', decided_at = $3 \
         WHERE id = $1 AND doctor_id = $2 AND status = 'pending' RETURNING patient_id",
    )
    .bind(&request_id)
    .bind(&me.user_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((patient_id,)) = rejected else {
        drop(tx);
        return Err(why_not_pending(&state, &request_id, "doctor_id", &me.user_id).await);
    };
    let doctor_name = name_of(&mut tx, &me.user_id).await?;
    raise(
        &mut tx,
        &state,
        &patient_id,
        Kind::ConnectionRejected,
        &format!("{doctor_name} declined your connection request"),
        json!({"request_id": request_id, "doctor_id": me.user_id, "doctor_name": doctor_name}),
    )
    .await?;
    tx.commit().await?;
    let message = "request rejected".to_string();
    Ok(ApiOk::new(
        Decided {
            success: true,
            message: message.clone(),
        },
        message,
    ))
}

/// A connection request as one side sees it.
#[derive(Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    /// The other side: the patient who asked (incoming) or the doctor asked (outgoing).
    pub peer: PeerView,
    pub note: Option<String>,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
    pub created_at: String,
    pub decided_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestLists {
    /// Requests addressed to you (doctors): every pending one first, then decided ones, newest
    /// first in each; 500 at most, so a long history never hides a request still waiting.
    pub incoming: Vec<RequestView>,
    /// Requests you sent (patients), in the same order and with the same bound.
    pub outgoing: Vec<RequestView>,
}

/// At most this many requests in each of `getConnectionRequests`' lists.
pub const REQUESTS_LISTED: i64 = 500;

type RequestRow = (
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    String,
    String,
    String,
    i64,
    Option<String>,
);

async fn requests(
    state: &AppState,
    mine: &str,
    peer: &str,
    me: &str,
) -> Result<Vec<RequestView>, AppError> {
    let rows: Vec<RequestRow> = sqlx::query_as(&format!(
        "SELECT r.id, r.note, r.status, r.created_at, r.decided_at, {PEER_COLS} \
         FROM connection_requests r JOIN users u ON u.id = r.{peer} \
         WHERE r.{mine} = $1 \
         ORDER BY CASE WHEN r.status = 'pending' THEN 0 ELSE 1 END, r.created_at DESC, r.id \
         LIMIT {REQUESTS_LISTED}"
    ))
    .bind(me)
    .fetch_all(&state.db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, note, status, created, decided, uid, name, role, verified, spec)| RequestView {
                id,
                peer: PeerView::from_row((uid, name, role, verified, spec)),
                note,
                status,
                created_at: rfc3339(created),
                decided_at: decided.map(rfc3339),
            },
        )
        .collect())
}

/// Your connection requests: those addressed to you and those you sent.
#[utoipa::path(get, path = "/protected/user/getConnectionRequests", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<RequestLists>), (status = 401, body = ErrorEnvelope)))]
pub async fn get_requests(State(state): State<AppState>, me: AuthUser) -> ApiResult<RequestLists> {
    let incoming = requests(&state, "doctor_id", "patient_id", &me.user_id).await?;
    let outgoing = requests(&state, "patient_id", "doctor_id", &me.user_id).await?;
    Ok(ApiOk::new(
        RequestLists { incoming, outgoing },
        "connection requests",
    ))
}

/// Withdraw a pending request you sent.
#[utoipa::path(post, path = "/protected/user/deletePendingRequest/{request_id}", tag = "user", security(("session" = [])),
    params(("request_id" = String, Path, description = "the request's id")),
    responses(
        (status = 200, body = crate::api::Envelope<Done>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn delete_pending_request(
    State(state): State<AppState>,
    me: AuthUser,
    ApiPath(request_id): ApiPath<String>,
) -> ApiResult<Done> {
    let mut tx = state.db.begin().await?;
    let gone: Option<(String,)> = sqlx::query_as(
        "DELETE FROM connection_requests WHERE id = $1 AND patient_id = $2 AND status = 'pending' \
         RETURNING doctor_id",
    )
    .bind(&request_id)
    .bind(&me.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((doctor_id,)) = gone else {
        drop(tx);
        return Err(why_not_pending(&state, &request_id, "patient_id", &me.user_id).await);
    };
    // The doctor's notice of it goes too: it holds the patient's note, which withdrawing takes
    // back. The id matched a stored request's, so it is one the server made.
    sqlx::query("DELETE FROM notifications WHERE user_id = $1 AND kind = $2 AND data LIKE $3")
        .bind(&doctor_id)
        .bind(Kind::ConnectionRequested.as_str())
        .bind(crate::notifications::mentioning(
            Some("request_id"),
            &request_id,
        ))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ApiOk::new(done(), "request withdrawn"))
}

/// End a connection (either side): it goes for both, with every grant and share the doctor had.
#[utoipa::path(post, path = "/protected/user/deleteConnection/{connection_id}", tag = "user", security(("session" = [])),
    params(("connection_id" = String, Path, description = "the connection's id")),
    responses(
        (status = 200, body = crate::api::Envelope<Done>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn delete_connection(
    State(state): State<AppState>,
    me: AuthUser,
    client: crate::auth::ClientInfo,
    ApiPath(connection_id): ApiPath<String>,
) -> ApiResult<Done> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    hold_parties(
        &mut tx,
        &state,
        CONNECTION_PARTIES,
        &connection_id,
        &me.user_id,
    )
    .await?;
    let ended: Option<(String, String)> = sqlx::query_as(
        "DELETE FROM connections WHERE id = $1 AND (patient_id = $2 OR doctor_id = $2) \
         RETURNING patient_id, doctor_id",
    )
    .bind(&connection_id)
    .bind(&me.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (patient_id, doctor_id) = ended.ok_or_else(|| not_found("connection"))?;
    crate::files::end_access(
        &mut tx,
        Some(&patient_id),
        &doctor_id,
        &me.user_id,
        now,
        &client,
    )
    .await?;
    let other = if me.user_id == patient_id {
        &doctor_id
    } else {
        &patient_id
    };
    let my_name = name_of(&mut tx, &me.user_id).await?;
    raise(
        &mut tx,
        &state,
        other,
        Kind::ConnectionEnded,
        &format!("{my_name} ended your connection"),
        json!({"connection_id": connection_id, "by": me.user_id, "by_name": my_name}),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiOk::new(done(), "connection ended"))
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

/// Your connections.
#[utoipa::path(get, path = "/protected/user/connections", tag = "user", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<ConnectionList>), (status = 401, body = ErrorEnvelope)))]
pub async fn list_connections(
    State(state): State<AppState>,
    me: AuthUser,
) -> ApiResult<ConnectionList> {
    let connections = load_connections(&state, &me.user_id).await?;
    Ok(ApiOk::new(ConnectionList { connections }, "connections"))
}
