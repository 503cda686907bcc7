//! The HTTP side of notifications: the event stream, the paged list, and marking read.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::Sse;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::stream::{Feed, Start};
use super::Kind;
use crate::api::{done, not_found, ApiOk, ApiPath, ApiQuery, ApiResult, Done};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{AppError, ErrorEnvelope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(notify))
        .routes(routes!(read_notification))
        .routes(routes!(list))
        .routes(routes!(read_all))
}

/// A notification's columns, and whether the reader whose values are bound from `$first` on
/// (see `Reader`) may mark it read.
pub(crate) fn cols(first: u8) -> String {
    format!(
        "id, kind, message, data, created_at, read_at, session_id, \
         CASE WHEN {} THEN 1 ELSE 0 END",
        may_mark_read(first)
    )
}
pub(crate) type NotificationRow = (
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    i64,
);

/// Who reads, as the sign-in alert rule needs it: the session (`""` for a caller without one,
/// such as an identity-provider token: session ids are never empty), the time, and the idle
/// cut-off (a session last seen before it has ended).
pub(crate) struct Reader<'a> {
    pub session: &'a str,
    pub now: crate::clock::Millis,
    pub idle_cutoff: crate::clock::Millis,
}

/// Binds a `Reader`'s three values, in `may_mark_read`'s order, to a query or a `query_as`.
pub(crate) trait BindReader<'q>: Sized {
    fn bind_reader(self, r: &Reader<'q>) -> Self;
}

impl<'q> BindReader<'q> for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    fn bind_reader(self, r: &Reader<'q>) -> Self {
        self.bind(r.session).bind(r.now).bind(r.idle_cutoff)
    }
}

impl<'q, O> BindReader<'q> for sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    fn bind_reader(self, r: &Reader<'q>) -> Self {
        self.bind(r.session).bind(r.now).bind(r.idle_cutoff)
    }
}

impl<'a> Reader<'a> {
    pub fn new(state: &AppState, session: Option<&'a str>) -> Reader<'a> {
        let now = state.clock.now();
        Reader {
            session: session.unwrap_or(""),
            now,
            idle_cutoff: now - state.config.limits.session_idle_ms(),
        }
    }
}

/// SQL true when the reader bound at `$first` (session), `$first + 1` (now) and `$first + 2`
/// (idle cut-off) may mark a notification read. Anything but a sign-in alert, yes. A sign-in
/// alert is news to the sessions signed in before the one it reports: while that session lives,
/// only an older session may mark it read, so a session cannot dismiss the alert about itself,
/// nor one about an older session. Once the reported session has ended, still only a session
/// older than it may, while one lives; so of two stolen codes, the newer cannot sign the older
/// out and then clear the older's alert. When no session older than it lives (a device that
/// signed in again after its last session ended), any session may.
pub(crate) fn may_mark_read(first: u8) -> String {
    let (s, now, cut) = (first, first + 1, first + 2);
    let live = |t: &str| format!("{t}.expires_at > ${now} AND {t}.last_seen_at > ${cut}");
    let (x, y) = (live("x"), live("y"));
    let reader = format!("COALESCE((SELECT c.created_at FROM sessions c WHERE c.id = ${s}), -1)");
    format!(
        "(session_id IS NULL \
         OR EXISTS (SELECT 1 FROM sessions x WHERE x.id = notifications.session_id AND {x} \
         AND x.created_at > {reader}) \
         OR (NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id = notifications.session_id AND {x}) \
         AND ({reader} < notifications.created_at OR NOT EXISTS (SELECT 1 FROM sessions y \
         WHERE y.user_id = notifications.user_id AND {y} AND y.created_at < notifications.created_at))))"
    )
}

/// One notification, as the list and each event's `data` show it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    /// Increases with every notification; the event stream's `id:`.
    pub id: i64,
    #[schema(value_type = Kind)]
    pub kind: String,
    pub message: String,
    /// Details that depend on the kind (ids and names of the people and files involved).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    pub read: bool,
    /// A sign-in alert about the session reading it.
    pub this_session: bool,
    /// Whether the reader may mark it read: false for a sign-in alert about a session that is
    /// the reader's own or older than it, while that session lives or, once it ended, while a
    /// session older than it lives (see `readNotification`). Such an alert is not
    /// counted as unread for the reader, nor replayed as unread on its stream.
    pub can_mark_read: bool,
}

impl NotificationView {
    /// The row as the session `reader` (none for an identity-provider token) sees it.
    pub(crate) fn new(
        (id, kind, message, data, created_at, read_at, about, may_read): NotificationRow,
        reader: &str,
    ) -> Self {
        NotificationView {
            id,
            kind,
            message,
            data: serde_json::from_str(&data).unwrap_or_else(|_| serde_json::json!({})),
            created_at: crate::clock::rfc3339(created_at),
            read: read_at.is_some(),
            this_session: about.as_deref() == Some(reader),
            can_mark_read: may_read == 1,
        }
    }
}

/// The live event stream (Server-Sent Events).
///
/// On connect: the unread notifications this session may mark read (see `readNotification`),
/// oldest first, then new ones as they happen. With
/// `Last-Event-ID` (sent by browsers on reconnect): every notification after that id, read or
/// not, then new ones. Each event is `event: notification`, `id: <id>`, `data: <notification as
/// JSON>`; a comment line `: keep-alive` every 15 s. The stream ends when the session ends, when
/// the same user opens more streams than allowed (the oldest closes first), or on shutdown.
#[utoipa::path(get, path = "/protected/notification/notify", tag = "notification",
    params(("Last-Event-ID" = Option<i64>, Header, description = "resume after this notification id")),
    responses(
        (status = 200, description = "an endless `text/event-stream`; each event's data is a NotificationView",
            content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)),
    security(("session" = [])))]
async fn notify(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let last = match headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::trim))
    {
        None | Some(Ok("")) => None,
        Some(Ok(v)) => match v.parse::<i64>() {
            Ok(id) if id >= 0 => Some(id),
            _ => return Err(bad_last_event_id()),
        },
        Some(Err(_)) => return Err(bad_last_event_id()),
    };
    // Registered before the head is read, so nothing committed after that read goes unwoken.
    let reg = Feed::register(&state, &user.user_id);
    let start = match last {
        Some(id) => Start::After(id),
        None => {
            let (head,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(id) FROM notifications WHERE user_id = $1")
                    .bind(&user.user_id)
                    .fetch_one(&state.db.pool)
                    .await?;
            Start::Unread {
                head: head.unwrap_or(0),
            }
        }
    };
    let keepalive = Duration::from_secs(state.config.limits.sse_keepalive_secs.max(1));
    let feed = Feed::new(
        state.clone(),
        reg,
        user.user_id,
        user.session_id,
        user.valid_until,
        start,
        keepalive,
    );
    let mut res = Sse::new(feed.into_stream()).into_response();
    let h = res.headers_mut();
    // nginx buffers proxied responses unless told not to; an event must not wait in a buffer.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn bad_last_event_id() -> AppError {
    AppError::bad_request(
        "BAD_LAST_EVENT_ID",
        "Last-Event-ID must be a notification id (a whole number)",
    )
}

/// Mark one notification as read.
///
/// A sign-in alert is news to the devices signed in before it: while the session it reports
/// lives, only an older session may mark it read (403 `SIGN_IN_ALERT_NOT_YOURS` for that session
/// itself or a newer one). Once that session has ended, the same holds while a session older
/// than it lives; when none does, any session may. Marking a notification
/// that is already read changes nothing and answers 200.
#[utoipa::path(post, path = "/protected/notification/readNotification/{notification_id}", tag = "notification",
    params(("notification_id" = i64, Path, description = "the notification's id")),
    responses(
        (status = 200, body = crate::api::Envelope<Done>),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)),
    security(("session" = [])))]
async fn read_notification(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Done> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(not_found("notification"));
    };
    let reader = Reader::new(&state, user.session_id.as_deref());
    // COALESCE keeps the first read time; a read row counts as matched either way (idempotent).
    let r = sqlx::query(&format!(
        "UPDATE notifications SET read_at = COALESCE(read_at, $1) WHERE id = $2 AND user_id = $3 \
         AND (read_at IS NOT NULL OR {})",
        may_mark_read(4)
    ))
    .bind(reader.now)
    .bind(id)
    .bind(&user.user_id)
    .bind_reader(&reader)
    .execute(&state.db.pool)
    .await?;
    if r.rows_affected() == 0 {
        let (mine,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(&user.user_id)
                .fetch_one(&state.db.pool)
                .await?;
        if mine == 0 {
            return Err(not_found("notification"));
        }
        return Err(AppError::forbidden(
            "SIGN_IN_ALERT_NOT_YOURS",
            "this sign-in alert is for the devices signed in before it; one of those can mark it read",
        ));
    }
    Ok(ApiOk::new(done(), "marked as read"))
}

const PAGE_SIZE: i64 = 20;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1-based page number (20 per page, newest first); default 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub notifications: Vec<NotificationView>,
    pub page: i64,
    pub page_size: i64,
    /// All of the caller's notifications.
    pub total: i64,
    /// Of those, not yet read, counting only those the caller may mark read.
    pub unread: i64,
}

/// The caller's notifications, newest first, 20 per page, with the total and unread counts.
#[utoipa::path(get, path = "/protected/notification/list", tag = "notification",
    params(ListQuery),
    responses(
        (status = 200, body = crate::api::Envelope<NotificationPage>),
        (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)),
    security(("session" = [])))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<NotificationPage> {
    let page = q.page.unwrap_or(1);
    if !(1..=1_000_000).contains(&page) {
        return Err(AppError::invalid(
            "page",
            "page must be between 1 and 1000000",
        ));
    }
    let reader = Reader::new(&state, user.session_id.as_deref());
    let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
        "SELECT {} FROM notifications WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        cols(4)
    ))
    .bind(&user.user_id)
    .bind(PAGE_SIZE)
    .bind((page - 1) * PAGE_SIZE)
    .bind_reader(&reader)
    .fetch_all(&state.db.pool)
    .await?;
    let (total, unread): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(*), COUNT(CASE WHEN read_at IS NULL AND {} THEN 1 END) \
         FROM notifications WHERE user_id = $1",
        may_mark_read(2)
    ))
    .bind(&user.user_id)
    .bind_reader(&reader)
    .fetch_one(&state.db.pool)
    .await?;
    Ok(ApiOk::new(
        NotificationPage {
            notifications: rows
                .into_iter()
                .map(|row| NotificationView::new(row, reader.session))
                .collect(),
            page,
            page_size: PAGE_SIZE,
            total,
            unread,
        },
        "notifications",
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ReadAllData {
    pub success: bool,
    /// How many notifications were unread and are now read.
    pub updated: i64,
}

/// Mark every notification of the caller as read, except the sign-in alerts the caller may not
/// mark read (see `readNotification`).
#[utoipa::path(post, path = "/protected/notification/readAll", tag = "notification",
    responses(
        (status = 200, body = crate::api::Envelope<ReadAllData>),
        (status = 401, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)),
    security(("session" = [])))]
async fn read_all(State(state): State<AppState>, user: AuthUser) -> ApiResult<ReadAllData> {
    let reader = Reader::new(&state, user.session_id.as_deref());
    let r = sqlx::query(&format!(
        "UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL AND {}",
        may_mark_read(3)
    ))
    .bind(reader.now)
    .bind(&user.user_id)
    .bind_reader(&reader)
    .execute(&state.db.pool)
    .await?;
    Ok(ApiOk::new(
        ReadAllData {
            success: true,
            updated: r.rows_affected() as i64,
        },
        "all marked as read",
    ))
}
