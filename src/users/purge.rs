//! The purge job (the seed's DELETE_USERS): each erased account leaves a `deleted_users` row
//! listing its stored objects; this job deletes them, retrying with back-off until it succeeds.
//! All of its state is in that table, so it survives restarts and several instances may run it.

use std::time::Duration;

use crate::app::AppState;

/// How long a claimed row is left to one worker before another may try it (a crashed worker's
/// rows come back after this).
const LEASE_MS: i64 = 10 * 60 * 1000;

/// The wait before retry number `attempts + 1`: 30 s doubling, at most an hour.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(0, 7) as u32;
    (30_000i64 << exp).min(3_600_000)
}

/// Runs the purge every `every` until shutdown.
pub fn spawn(state: &AppState, every: Duration) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = run_once(&state).await {
                tracing::warn!(error = %format!("{e:#}"), "account purge pass failed; will retry");
            }
        }
    });
}

/// One pass: purges every due account. Returns how many were finished.
pub async fn run_once(state: &AppState) -> anyhow::Result<usize> {
    let now = state.clock.now();
    let due: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT user_id, object_keys, attempts FROM deleted_users \
         WHERE done_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT 50",
    )
    .bind(now)
    .fetch_all(&state.db.pool)
    .await?;
    let mut finished = 0;
    for (user_id, keys, attempts) in due {
        // Claim the row so another instance does not work on it at the same time.
        let claimed = sqlx::query(
            "UPDATE deleted_users SET next_attempt_at = $2 \
             WHERE user_id = $1 AND done_at IS NULL AND next_attempt_at <= $3",
        )
        .bind(&user_id)
        .bind(now + LEASE_MS)
        .bind(now)
        .execute(&state.db.pool)
        .await?;
        if claimed.rows_affected() != 1 {
            continue;
        }
        let result = match serde_json::from_str::<Vec<String>>(&keys) {
            Ok(keys) => crate::files::delete_objects(state, &keys).await,
            Err(e) => Err(anyhow::anyhow!("bad object key list: {e}")),
        };
        let after = state.clock.now();
        match result {
            Ok(()) => {
                sqlx::query(
                    "UPDATE deleted_users SET done_at = $2, last_error = NULL, attempts = attempts + 1 \
                     WHERE user_id = $1",
                )
                .bind(&user_id)
                .bind(after)
                .execute(&state.db.pool)
                .await?;
                finished += 1;
            }
            Err(e) => {
                let msg: String = format!("{e:#}").chars().take(500).collect();
                tracing::warn!(user_id, attempts = attempts + 1, error = %msg, "purging an erased account failed; will retry");
                sqlx::query(
                    "UPDATE deleted_users SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 \
                     WHERE user_id = $1",
                )
                .bind(&user_id)
                .bind(&msg)
                .bind(after + backoff_ms(attempts))
                .execute(&state.db.pool)
                .await?;
            }
        }
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(super::backoff_ms(0), 30_000);
        assert_eq!(super::backoff_ms(1), 60_000);
        assert_eq!(super::backoff_ms(6), 1_920_000);
        assert_eq!(super::backoff_ms(7), 3_600_000);
        assert_eq!(super::backoff_ms(100), 3_600_000);
    }
}
