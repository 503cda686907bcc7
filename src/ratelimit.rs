//! Fixed-window counters kept in the database, so every instance shares them: one upsert per hit,
//! which both counts and reads, so concurrent requests cannot slip past the limit.

use crate::db::Db;
use crate::error::AppError;

/// Counts a hit on `key`; refuses with 429 (and `Retry-After`) past `limit` per `window_secs`.
pub async fn hit(
    db: &Db,
    key: &str,
    limit: i64,
    window_secs: i64,
    now: i64,
) -> Result<(), AppError> {
    let mut conn = db.pool.acquire().await?;
    hit_in(&mut conn, key, limit, window_secs, now).await
}

/// `hit` inside the caller's transaction: the count stands only if that transaction commits, so
/// an action refused after it (and rolled back) uses up nothing.
pub async fn hit_in(
    conn: &mut sqlx::AnyConnection,
    key: &str,
    limit: i64,
    window_secs: i64,
    now: i64,
) -> Result<(), AppError> {
    let window_ms = window_secs * 1000;
    let (count, window_start): (i64, i64) = sqlx::query_as(
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           count = CASE WHEN rate_limits.window_start <= $3 THEN 1 ELSE rate_limits.count + 1 END, \
           window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 ELSE rate_limits.window_start END \
         RETURNING count, window_start",
    )
    .bind(key)
    .bind(now)
    .bind(now - window_ms)
    .fetch_one(&mut *conn)
    .await?;
    if count > limit {
        let retry = ((window_start + window_ms - now).max(0) as u64).div_ceil(1000);
        return Err(AppError::rate_limited(
            "RATE_LIMITED",
            "too many requests; slow down",
            retry,
        ));
    }
    Ok(())
}

/// Drops counters whose window ended long ago.
pub async fn sweep(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
        .bind(now - 2 * 3_600_000)
        .execute(&db.pool)
        .await?;
    Ok(r.rows_affected())
}
