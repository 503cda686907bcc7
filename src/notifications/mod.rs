//! Notifications: stored first, then pushed to the user's live event streams on every instance.
//! Owns the `notifications` table, `raise` (called by every feature inside its own transaction),
//! the SSE stream and the list/read routes, and the fan-out between instances.
//!
//! # How an event travels, and why none is lost
//!
//! 1. `raise` runs inside the caller's transaction. It first bumps the user's row in
//!    `notification_heads` (a row lock held until commit), then inserts the notification and
//!    takes its id. The head row serialises every transaction that raises for one user, so that
//!    user's ids are *committed* in increasing order: a reader that has seen id N can never later
//!    see a lower id of the same user appear. Without it, on PostgreSQL, two transactions could
//!    take ids 10 and 11 and commit 11 first; a stream (or a `Last-Event-ID` resume) that had
//!    moved its cursor to 11 would skip 10 forever. (SQLite serialises all writers anyway.)
//! 2. Nothing is pushed in memory. A stream only ever reads the database for "this user's rows
//!    with id > my cursor"; a push is merely a *wake-up* telling the user's streams to read.
//!    Wake-ups may be early, late, duplicated or spurious without harm: the database decides
//!    what is delivered, the cursor guarantees nothing is repeated.
//! 3. Wake-ups must arrive after commit. On PostgreSQL `raise` runs `pg_notify` in the same
//!    transaction, which PostgreSQL delivers only on commit (and never on rollback) to a listener
//!    connection on every instance (`fanout::listen`); after the listener reconnects, every local
//!    stream is woken once, since notifies sent while it was away are gone. On SQLite (one
//!    instance) `raise` cannot see the commit, so it only nudges an in-process tailer
//!    (`fanout::tail`) that reads the table's new rows (id > its own cursor; SQLite commits ids in
//!    order) and re-checks a few times with a short back-off until the raised id shows up (or the
//!    transaction evidently rolled back), plus once a second as a safety net.
//!
//! A raiser that notifies several users in one transaction locks their head rows in that order;
//! two such transactions naming the same two users in opposite orders can deadlock on
//! PostgreSQL (one is aborted). Raise for the acting user's counterpart only, or in a fixed order.

pub mod fanout;
pub mod hub;
mod routes;
mod signin;
mod stream;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::db::Dialect;
use crate::error::AppError;

pub use hub::Hub;
pub use routes::NotificationView;
pub use signin::{on_second_step_dead, on_sign_in, on_two_step_changed};

/// The PostgreSQL channel every instance listens on; the payload is the user id.
pub const CHANNEL: &str = "auravita_notifications";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ConnectionRequested,
    ConnectionAccepted,
    ConnectionRejected,
    ConnectionEnded,
    FileAccessGranted,
    FileAccessRevoked,
    FileShared,
    PatientAccountCreated,
    NewSignIn,
    SignInStopped,
    TwoStepChanged,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ConnectionRequested => "connection_requested",
            Kind::ConnectionAccepted => "connection_accepted",
            Kind::ConnectionRejected => "connection_rejected",
            Kind::ConnectionEnded => "connection_ended",
            Kind::FileAccessGranted => "file_access_granted",
            Kind::FileAccessRevoked => "file_access_revoked",
            Kind::FileShared => "file_shared",
            Kind::PatientAccountCreated => "patient_account_created",
            Kind::NewSignIn => "new_sign_in",
            Kind::SignInStopped => "sign_in_stopped",
            Kind::TwoStepChanged => "two_step_changed",
        }
    }
}

/// The `LIKE` pattern matching a notification whose JSON `data` holds `id` as a string: under
/// `key` (`"request_id":"<id>"`), or under any key. Ids are generated hexadecimal, so nothing in
/// the pattern is a wildcard, and a quote inside a note is escaped in the JSON, so no text can
/// pass for an id.
pub(crate) fn mentioning(key: Option<&str>, id: &str) -> String {
    debug_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    match key {
        Some(key) => format!("%\"{key}\":\"{id}\"%"),
        None => format!("%\"{id}\"%"),
    }
}

/// Raises a notification for `user_id` inside the caller's transaction: it exists (and is pushed)
/// only if that transaction commits, so an action that fails raises nothing. Returns nothing the
/// caller needs; the id is the notification's place in the user's event stream.
pub async fn raise(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    user_id: &str,
    kind: Kind,
    message: &str,
    data: serde_json::Value,
) -> Result<(), AppError> {
    raise_about(tx, state, user_id, kind, message, data, None).await
}

/// `raise`, for a notification about one of the user's sessions (`about`): who may mark it read
/// then depends on that session (`routes::may_mark_read`).
async fn raise_about(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    user_id: &str,
    kind: Kind,
    message: &str,
    data: serde_json::Value,
    about: Option<&str>,
) -> Result<(), AppError> {
    let now = state.clock.now();
    // Taken first and held to commit: see the module comment (per-user commit order).
    sqlx::query(
        "INSERT INTO notification_heads (user_id, raised, last_raised_at) VALUES ($1, 1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET raised = notification_heads.raised + 1, last_raised_at = $2",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let data = if data.is_null() {
        serde_json::json!({})
    } else {
        data
    };
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO notifications (user_id, kind, message, data, created_at, session_id) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(user_id)
    .bind(kind.as_str())
    .bind(message)
    .bind(data.to_string())
    .bind(now)
    .bind(about)
    .fetch_one(&mut *tx)
    .await?;
    match state.db.dialect {
        // Delivered by PostgreSQL on commit only, to every instance's listener.
        Dialect::Postgres => {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        Dialect::Sqlite => state.notifications.raised(id),
    }
    Ok(())
}

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    routes::router()
}

/// Starts this instance's fan-out (the PostgreSQL listener or the SQLite tailer).
pub fn start(state: &AppState) {
    fanout::start(state);
}
