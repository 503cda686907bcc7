//! Wake-ups after commit: on PostgreSQL a LISTEN connection per instance (every instance hears
//! every commit's `pg_notify`); on SQLite an in-process tailer of the table. Both only wake
//! streams; what a stream delivers always comes from the database (see the module above).

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::app::AppState;
use crate::db::Dialect;

/// Connections in the delivery pool of each instance.
const READ_POOL: u32 = 4;

pub fn start(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        match crate::db::Db::connect(state.db.url(), READ_POOL).await {
            Ok(db) => {
                let _ = state.notifications.reads.set(db.pool);
            }
            // Deliveries then share the main pool: slower under load, still correct.
            Err(e) => tracing::warn!(error = %e, "no separate pool for notification streams"),
        }
        match state.db.dialect {
            Dialect::Postgres => listen(state).await,
            Dialect::Sqlite => tail(state).await,
        }
    });
}

/// PostgreSQL: one dedicated listener connection, reconnected with back-off when it fails; after
/// every (re)connect all local streams are woken once, because notifies sent while this instance
/// was not listening are gone (the streams then re-read from their cursors).
async fn listen(state: AppState) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if state.shutdown.is_cancelled() {
            return;
        }
        let connected = async {
            let mut l = sqlx::postgres::PgListener::connect(state.db.url()).await?;
            l.listen(super::CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            r = connected => match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "notification listener cannot connect; retrying");
                    tokio::select! {
                        _ = state.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
        };
        backoff = Duration::from_millis(100);
        state.notifications.wake_all();
        loop {
            // try_recv reports a lost connection as Ok(None) instead of silently reconnecting,
            // so we get to re-sync after reconnecting ourselves.
            let got = tokio::select! {
                _ = state.shutdown.cancelled() => return,
                r = listener.try_recv() => r,
            };
            match got {
                Ok(Some(n)) => state.notifications.wake(n.payload()),
                Ok(None) => {
                    tracing::warn!("notification listener lost its connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notification listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// How long the tailer keeps re-checking for a raised id that has not shown up (its transaction
/// may still be running, or may have rolled back).
const SETTLE: Duration = Duration::from_secs(5);
const PAGE: i64 = 1000;

/// SQLite: the one instance tails the table. SQLite has a single writer and ids are taken under
/// its lock, so committed ids appear in increasing order and "id > cursor" sees every one.
async fn tail(state: AppState) {
    let hub = &state.notifications;
    let mut cursor: i64 = loop {
        match sqlx::query_as::<_, (Option<i64>,)>("SELECT MAX(id) FROM notifications")
            .fetch_one(hub.pool(&state.db.pool))
            .await
        {
            Ok((m,)) => break m.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "notification tailer cannot read; retrying");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = hub.nudge.notified() => {}
            // The safety net: also catches rows written by another process on this file.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let deadline = Instant::now() + SETTLE;
        let mut pause = Duration::from_millis(1);
        loop {
            let rows: Vec<(i64, String)> = match sqlx::query_as(
                "SELECT id, user_id FROM notifications WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(cursor)
            .bind(PAGE)
            .fetch_all(hub.pool(&state.db.pool))
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "notification tailer cannot read; retrying");
                    Vec::new()
                }
            };
            let full = rows.len() as i64 == PAGE;
            let mut users = HashSet::new();
            for (id, user) in rows {
                cursor = cursor.max(id);
                users.insert(user);
            }
            for u in &users {
                hub.wake(u);
            }
            if full {
                continue;
            }
            if cursor >= hub.highest_raised() || Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
