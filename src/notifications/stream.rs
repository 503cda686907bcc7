//! One open event stream: replays, then follows the user's notifications from the database,
//! woken by the hub; keeps the connection alive; ends when its session is revoked, when the
//! user opens one stream too many, or when the server shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;

use super::hub::{Hub, Registration};
use super::routes::{cols, may_mark_read, BindReader, NotificationRow, NotificationView, Reader};
use crate::app::AppState;

const PAGE: i64 = 100;

pub struct Feed {
    state: AppState,
    user_id: String,
    session_id: Option<String>,
    /// An identity-provider token's end: the stream ends with it.
    valid_until: Option<crate::clock::Millis>,
    /// The last id delivered (or skipped over as already read during the first replay).
    cursor: i64,
    /// While replaying on connect without `Last-Event-ID`: unread rows up to this id.
    replay_upto: Option<i64>,
    buf: VecDeque<Event>,
    reg: Registration,
    keepalive: tokio::time::Interval,
    fetch_now: bool,
    farewell_sent: bool,
}

/// Where a new stream starts.
pub enum Start {
    /// Resume strictly after this id (the client's `Last-Event-ID`): every row after it.
    After(i64),
    /// A fresh connect: the unread rows up to the user's newest id now, then live ones.
    Unread { head: i64 },
}

impl Feed {
    pub fn new(
        state: AppState,
        reg: Registration,
        user_id: String,
        session_id: Option<String>,
        valid_until: Option<crate::clock::Millis>,
        start: Start,
        keepalive: Duration,
    ) -> Feed {
        let (cursor, replay_upto) = match start {
            Start::After(id) => (id, None),
            Start::Unread { head } => (0, Some(head)),
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Feed {
            state,
            user_id,
            session_id,
            valid_until,
            cursor,
            replay_upto,
            buf: VecDeque::new(),
            reg,
            keepalive: tick,
            fetch_now: true,
            farewell_sent: false,
        }
    }

    pub fn register(state: &AppState, user_id: &str) -> Registration {
        Hub::register(&state.0, user_id, state.config.limits.max_streams_per_user)
    }

    pub fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(self, |mut feed| async move {
            feed.next().await.map(|e| (Ok(e), feed))
        })
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.state.shutdown.is_cancelled() {
                return None;
            }
            if self.reg.close.is_cancelled() {
                return self.farewell();
            }
            if let Some(e) = self.buf.pop_front() {
                return Some(e);
            }
            if self.fetch_now {
                self.fetch_now = false;
                if self.token_expired() {
                    return None;
                }
                match self.fetch().await {
                    // Nothing came back: perhaps nothing new, perhaps the session is gone.
                    Ok(0) if !self.session_alive().await => return None,
                    Ok(_) => {}
                    Err(e) => {
                        // The client reconnects with Last-Event-ID and loses nothing.
                        tracing::warn!(error = %e, "notification stream cannot read; closing it");
                        return None;
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.state.shutdown.cancelled() => return None,
                _ = self.reg.close.cancelled() => return self.farewell(),
                _ = self.reg.wake.notified() => self.fetch_now = true,
                _ = self.keepalive.tick() => {
                    if !self.session_alive().await {
                        return None;
                    }
                    return Some(Event::default().comment("keep-alive"));
                }
            }
        }
    }

    /// Reads the next page into the buffer and returns how many rows came. Rows come only while
    /// the stream's session is alive (checked in the same query): a revoked session receives
    /// nothing more.
    async fn fetch(&mut self) -> Result<usize, sqlx::Error> {
        let reader = Reader::new(&self.state, self.session_id.as_deref());
        let (upto, unread_only) = match self.replay_upto {
            Some(upto) => (upto, 1i64),
            None => (i64::MAX, 0i64),
        };
        // Unread for this stream: only what its session may mark read (see `routes`).
        let unread_here = may_mark_read(5);
        let session = "($5 = '' OR EXISTS (SELECT 1 FROM sessions s WHERE s.id = $5 AND s.expires_at > $6 AND s.last_seen_at > $7))";
        let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
            "SELECT {} FROM notifications WHERE user_id = $1 AND id > $2 AND id <= $3 \
             AND ($4 = 0 OR (read_at IS NULL AND {unread_here})) AND {session} ORDER BY id LIMIT $8",
            cols(5)
        ))
        .bind(&self.user_id)
        .bind(self.cursor)
        .bind(upto)
        .bind(unread_only)
        .bind_reader(&reader)
        .bind(PAGE)
        .fetch_all(self.state.notifications.pool(&self.state.db.pool))
        .await?;
        let n = rows.len();
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            self.cursor = row.0;
            let view = NotificationView::new(row, reader.session);
            let data = serde_json::to_string(&view).unwrap_or_else(|_| "{}".into());
            self.buf.push_back(
                Event::default()
                    .event("notification")
                    .id(view.id.to_string())
                    .data(data),
            );
        }
        if full {
            self.fetch_now = true;
        } else if let Some(upto) = self.replay_upto.take() {
            // Replay done: anything after the head (raised meanwhile) comes next, read or not.
            self.cursor = self.cursor.max(upto);
            self.fetch_now = true;
        }
        Ok(n)
    }

    /// The last frame of a stream closed for a newer one of the same user (beyond
    /// `max_streams_per_user`): a browser reconnects a stream that ended after its `retry`
    /// delay, and reconnecting at once would close the next-oldest, and so on round the tabs.
    /// An hour's delay ends that; the tab's notifications come back when it is reloaded or the
    /// hour is over, and nothing is lost (the reconnect replays).
    fn farewell(&mut self) -> Option<Event> {
        if std::mem::replace(&mut self.farewell_sent, true) {
            return None;
        }
        Some(
            Event::default()
                .retry(Duration::from_secs(3600))
                .comment("replaced by a newer stream of this account"),
        )
    }

    /// Whether the identity-provider token the stream was opened with has run out (a stream on
    /// a session is checked against the database instead).
    fn token_expired(&self) -> bool {
        self.valid_until
            .is_some_and(|until| self.state.clock.now() >= until)
    }

    async fn session_alive(&self) -> bool {
        let Some(session_id) = &self.session_id else {
            return !self.token_expired();
        };
        let now = self.state.clock.now();
        let idle_ms = self.state.config.limits.session_idle_ms();
        let row: Result<Option<(i64, i64)>, _> =
            sqlx::query_as("SELECT expires_at, last_seen_at FROM sessions WHERE id = $1")
                .bind(session_id)
                .fetch_optional(self.state.notifications.pool(&self.state.db.pool))
                .await;
        match row {
            Ok(Some((expires_at, last_seen))) => now < expires_at && now < last_seen + idle_ms,
            Ok(None) => false,
            Err(e) => {
                // Cannot tell: end the stream rather than keep serving a session we cannot check.
                tracing::warn!(error = %e, "cannot check a stream's session; closing it");
                false
            }
        }
    }
}
