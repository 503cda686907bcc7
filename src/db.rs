//! The database: one `sqlx::Any` pool over SQLite (embedded default) or PostgreSQL, so every query
//! is written once. Portable SQL only: `$n` parameters (SQLite reads them too), TEXT ids, BIGINT
//! integers and millisecond timestamps, `ON CONFLICT`, `RETURNING`. Migrations are embedded and
//! applied on start; a migration may carry a per-dialect part where DDL must differ.

use std::str::FromStr;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Executor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// How strongly a read in a transaction holds the rows it read until the commit
/// (`Dialect::lock_rows`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLock {
    /// A concurrent delete of the row waits (as a foreign key's check does); updates do not.
    KeyShare,
    /// Any concurrent change of the row waits.
    Share,
    /// Any concurrent change, and any other transaction locking the row, waits.
    Update,
}

impl Dialect {
    /// What ends a `SELECT` in a transaction that must hold the rows it read until the commit,
    /// so that a concurrent change of those rows waits for this transaction and then sees what
    /// it wrote: `FOR KEY SHARE`, `FOR SHARE` or `FOR UPDATE` on PostgreSQL (read committed).
    /// Nothing on SQLite, where `Db::begin` takes the database's write lock at once, so write
    /// transactions already run one at a time.
    pub fn lock_rows(self, lock: RowLock) -> &'static str {
        match (self, lock) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, RowLock::KeyShare) => " FOR KEY SHARE",
            (Dialect::Postgres, RowLock::Share) => " FOR SHARE",
            (Dialect::Postgres, RowLock::Update) => " FOR UPDATE",
        }
    }
}

/// Holds the accounts `ids` (their `users` rows, `FOR KEY SHARE`, in id order, one statement)
/// until the caller commits, on PostgreSQL, and returns those found: an id missing is an account
/// gone. An erase holds its account's row `FOR UPDATE` from its start and then deletes what
/// refers to it, so a write that refers to an account and takes other rows first (a file, a
/// request, a connection) could wait for the erase while the erase waits for one of those rows:
/// a deadlock, one side answered 503. Taken first, before any other row, the write queues behind
/// the erase instead, or the erase behind it. On SQLite, whose write transactions run one at a
/// time (`Db::begin`), nothing is read and every id is returned.
pub async fn hold_accounts(
    conn: &mut AnyConnection,
    dialect: Dialect,
    ids: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    if dialect == Dialect::Sqlite || ids.is_empty() {
        return Ok(ids.iter().map(|id| id.to_string()).collect());
    }
    let sql = format!(
        "SELECT id FROM users WHERE id IN ({}) ORDER BY id FOR KEY SHARE",
        crate::batch::placeholders(dialect, 1, ids.len())
    );
    let mut q = sqlx::query_as::<_, (String,)>(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id,)| id)
        .collect())
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// The URL the pool was opened with (PostgreSQL LISTEN needs its own connection).
    url: String,
    /// Connections kept out of the pool for `with_kept`, so a batched read or the ledger's
    /// group commit does not pay sqlx's release check (a ping, a second round trip) each time.
    kept: Arc<Kept>,
}

#[derive(Debug)]
struct Kept {
    /// Each with the moment it was first kept.
    conns: Mutex<Vec<(PoolConnection<Any>, Instant)>>,
    max: usize,
    /// How long a connection may be kept before it is closed and replaced (the pool's own
    /// `max_lifetime` only applies to connections it holds).
    lifetime: Duration,
}

/// The most a connection lives, in the pool or kept.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Work for `Db::with_kept`: gets a connection, returns what it read. (A named type, for the
/// higher-ranked lifetime a closure cannot spell.)
pub type KeptFn<T> =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send>;

struct Migration {
    version: i64,
    name: &'static str,
    common: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

macro_rules! migration {
    ($v:expr, $name:literal) => {
        Migration {
            version: $v,
            name: $name,
            common: include_str!(concat!("../migrations/", $name, ".sql")),
            sqlite: include_str!(concat!("../migrations/", $name, ".sqlite.sql")),
            postgres: include_str!(concat!("../migrations/", $name, ".postgres.sql")),
        }
    };
}

/// In order. Append only: a shipped migration is never edited.
const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_foundation"),
    migration!(2, "0002_users"),
    migration!(3, "0003_files"),
    migration!(4, "0004_notifications"),
    migration!(5, "0005_oidc"),
    migration!(6, "0006_search"),
    migration!(7, "0007_totp"),
    migration!(8, "0008_totp_sms"),
    migration!(9, "0009_alert_session"),
    migration!(10, "0010_device_lanes"),
    migration!(11, "0011_ledger_names"),
    migration!(12, "0012_access_given"),
    migration!(13, "0013_settings"),
];

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            anyhow::bail!(
                "unsupported database URL {}",
                crate::config::redact_url(url)
            );
        };
        let mut url = url.to_string();
        if dialect == Dialect::Sqlite {
            if let Some(path) = sqlite_path(&url) {
                if let Some(parent) = std::path::Path::new(&path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("creating {}", parent.display()))?;
                    }
                }
            }
            if !url.contains("mode=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
        }
        let opts = AnyConnectOptions::from_str(&url)
            .context("parsing the database URL")?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            // A ping before every checkout doubles the round trips of every query; a connection
            // that has died fails its query instead (503), and is then dropped by the pool.
            .test_before_acquire(false)
            .max_lifetime(CONNECTION_LIFETIME)
            // A connection whose transaction sqlx still counts as open is not handed out again
            // (it is closed and replaced): a ROLLBACK that failed, as SQLite's does after it
            // rolled back by itself on a full disk, leaves the count up, and every later
            // transaction on it would fail. Counting, not asking the database: no round trip.
            .before_acquire(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run beside the writer; busy_timeout queues writers
                        // instead of failing them.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .with_context(|| format!("connecting to {}", crate::config::redact_url(&url)))?;
        // A few connections at most, never half the pool: the rest serve everything else.
        let kept = Arc::new(Kept {
            conns: Mutex::new(Vec::new()),
            max: (max_connections as usize / 4).min(4),
            lifetime: CONNECTION_LIFETIME,
        });
        Ok(Db {
            pool,
            dialect,
            url,
            kept,
        })
    }

    /// Runs single statements, each its own transaction (never `BEGIN`: nothing may be left
    /// open), on a connection this `Db` keeps between uses, or on one from the pool when all kept
    /// ones are busy. sqlx checks every connection returned to its pool with a ping; a kept
    /// connection skips that, and is kept only after its work succeeded (a failed or cancelled
    /// run hands it back to the pool, which checks it).
    pub async fn with_kept<T>(&self, run: KeptFn<T>) -> Result<T, sqlx::Error> {
        let (mut conn, since) = loop {
            let kept = self.kept.conns.lock().expect("kept connections").pop();
            match kept {
                Some((conn, since)) if since.elapsed() < self.kept.lifetime => break (conn, since),
                Some((mut old, _)) => old.close_on_drop(),
                None => break (self.pool.acquire().await?, Instant::now()),
            }
        };
        let result = run(&mut conn).await;
        if result.is_ok() {
            let mut kept = self.kept.conns.lock().expect("kept connections");
            if kept.len() < self.kept.max {
                kept.push((conn, since));
            }
        }
        result
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies every migration not yet applied, each in its own transaction. Several instances
    /// may start at once on PostgreSQL: an advisory lock lets one of them do the work.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            conn.execute("SELECT pg_advisory_lock(7206071)").await?;
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await?;
            for m in MIGRATIONS {
                let done: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(m.version)
                        .fetch_optional(&mut *conn)
                        .await?;
                if done.is_some() {
                    continue;
                }
                let specific = match self.dialect {
                    Dialect::Sqlite => m.sqlite,
                    Dialect::Postgres => m.postgres,
                };
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for sql in [specific, m.common] {
                    if !sql.trim().is_empty() {
                        sqlx::raw_sql(sql)
                            .execute(&mut *tx)
                            .await
                            .with_context(|| format!("migration {}", m.name))?;
                    }
                }
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(m.version)
                    .bind(m.name)
                    .bind(chrono::Utc::now().timestamp_millis())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(migration = m.name, "applied migration");
            }
            anyhow::Ok(())
        }
        .await;
        if self.dialect == Dialect::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7206071)").await?;
        }
        result
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that
    /// reads and then writes cannot wait for the write lock (SQLite answers BUSY at once to avoid
    /// deadlock), whereas an immediate one queues on the busy timeout like any writer.
    ///
    /// The `BEGIN` runs in a task of its own, which finishes even when the request that asked
    /// for it is dropped (its client went away): sqlx's `begin` is not safe to drop half way,
    /// and one dropped after the database began the transaction but before sqlx counted it
    /// would go back to the pool still inside it (on PostgreSQL, later writes on that
    /// connection would then never commit). Finished, the transaction is dropped with the task's
    /// unclaimed result, which rolls it back.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let (pool, dialect) = (self.pool.clone(), self.dialect);
        let begun = tokio::spawn(async move {
            match dialect {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                Dialect::Postgres => pool.begin().await,
            }
        });
        begun.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// The file behind a SQLite URL; `None` for an in-memory database.
pub(crate) fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path.to_string())
    }
}

/// A unique-constraint violation, on either database.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.code().as_deref() == Some("2067")
                || db.code().as_deref() == Some("1555")
        }
        _ => false,
    }
}

/// PostgreSQL refusing a NUL character in text (SQLite stores it).
pub fn is_nul_in_text(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("22021"))
}

/// A foreign-key violation, on either database (SQLite: SQLITE_CONSTRAINT_FOREIGNKEY).
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_foreign_key_violation()
                || db.code().as_deref() == Some("23503")
                || db.code().as_deref() == Some("787")
        }
        _ => false,
    }
}

/// A deadlock or serialization failure that PostgreSQL resolved by aborting the transaction.
pub fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01") | Some("40001")))
}

/// A fresh random id for a row: 128 bits, URL-safe, never derived from user input.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new id that sorts after every id this process made before it (UUIDv7: milliseconds, then a
/// counter, then random bits). Ledger rows take these, so rows written in the same millisecond
/// (a revoke, then a link) still list newest first, whichever way each was written.
pub fn new_ordered_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_increase_within_a_millisecond() {
        let ids: Vec<String> = (0..10_000).map(|_| new_ordered_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    fn count() -> KeptFn<i64> {
        Box::new(|conn| {
            Box::pin(async move {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM notes")
                    .fetch_one(conn)
                    .await?;
                Ok(n)
            })
        })
    }

    /// A kept connection is reused, still sees every write committed elsewhere (it holds no
    /// transaction), and one whose read failed is not kept.
    #[tokio::test]
    async fn reads_keep_connections_only_after_success_and_see_fresh_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::connect(&url, 8).await.unwrap();
        db.pool
            .execute("CREATE TABLE notes (id BIGINT PRIMARY KEY)")
            .await
            .unwrap();
        let kept = || db.kept.conns.lock().unwrap().len();
        assert_eq!(db.with_kept(count()).await.unwrap(), 0);
        assert_eq!(kept(), 1);
        // A write through the pool (another connection) is seen by the kept one.
        sqlx::query("INSERT INTO notes (id) VALUES (1)")
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(db.with_kept(count()).await.unwrap(), 1);
        assert_eq!(kept(), 1, "the same connection went back");
        // A failed read hands its connection back to the pool instead.
        let failed = db
            .with_kept::<i64>(Box::new(|conn| {
                Box::pin(async move {
                    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM no_such_table")
                        .fetch_one(conn)
                        .await?;
                    Ok(n)
                })
            }))
            .await;
        assert!(failed.is_err());
        assert_eq!(kept(), 0);
        // Never more than `max` kept, however many reads ran at once.
        let reads = (0..16).map(|_| db.with_kept(count()));
        for n in futures::future::join_all(reads).await {
            assert_eq!(n.unwrap(), 1);
        }
        assert!(kept() >= 1 && kept() <= db.kept.max, "{} kept", kept());
    }

    /// A connection kept past its lifetime is closed and replaced, not reused: a TEMP table
    /// (visible to its own connection only) is found while the connection is young, and gone
    /// once it has aged out.
    #[tokio::test]
    async fn kept_connections_are_replaced_after_their_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let mut db = Db::connect(&url, 8).await.unwrap();
        let temp = |sql: &'static str| -> KeptFn<()> {
            Box::new(move |conn| {
                Box::pin(async move {
                    conn.execute(sql).await?;
                    Ok(())
                })
            })
        };
        db.with_kept(temp("CREATE TEMP TABLE mine (x BIGINT)"))
            .await
            .unwrap();
        db.with_kept(temp("SELECT x FROM mine")).await.unwrap();
        let young = std::mem::take(&mut *db.kept.conns.lock().unwrap());
        db.kept = Arc::new(Kept {
            conns: Mutex::new(young),
            max: 4,
            lifetime: Duration::ZERO,
        });
        assert_eq!(db.kept.conns.lock().unwrap().len(), 1);
        let aged = db.with_kept(temp("SELECT x FROM mine")).await;
        assert!(aged.is_err(), "the aged connection was reused");
    }
}
