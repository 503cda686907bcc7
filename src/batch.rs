//! Batched point reads. Requests that need the same kind of row at the same moment (the session
//! behind a cookie, say) share one query: a loader task takes the first waiting key, lets the
//! scheduler run while that brings more keys (a few turns at most), and reads them all (up to a
//! cap) with one `IN (...)` query.
//!
//! Nothing is cached: each key's query starts after its request asked, so a row deleted before
//! the request arrived (a revoked session) is never seen, on any instance. Batching only shares the
//! round trip — on SQLite the hand-off to sqlx's worker thread, on PostgreSQL the network trip
//! and the backend's per-statement work — among requests that are waiting anyway. A lone request
//! is read at once, with no timer.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::db::Dialect;
use crate::error::AppError;

type Reply<V> = oneshot::Sender<Result<Option<V>, Arc<sqlx::Error>>>;

/// Reads the rows for a set of distinct keys, each row paired with its key. A key without a row
/// is simply absent.
pub type Loader<K, V> =
    Arc<dyn Fn(Vec<K>) -> BoxFuture<'static, Result<Vec<(K, V)>, sqlx::Error>> + Send + Sync>;

/// The most scheduler turns a batch waits for more keys.
pub const MAX_TURNS: usize = 4;

pub struct Batcher<K, V> {
    tx: mpsc::UnboundedSender<(K, Reply<V>)>,
    counts: Arc<Counts>,
}

/// Queries run and keys read, for `/metrics`: keys ÷ queries is the mean batch size.
#[derive(Default)]
pub struct Counts {
    queries: AtomicU64,
    keys: AtomicU64,
}

impl Counts {
    /// One query answering `keys` requests.
    pub fn add(&self, keys: usize) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.keys.fetch_add(keys as u64, Ordering::Relaxed);
    }

    /// (queries run, requests they answered) since start.
    pub fn get(&self) -> (u64, u64) {
        (
            self.queries.load(Ordering::Relaxed),
            self.keys.load(Ordering::Relaxed),
        )
    }
}

impl<K, V> Batcher<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    /// Starts the loader task. At most `in_flight` queries run at once; while they do, new keys
    /// queue and form the next batch. `max_batch` is rounded up to a power of two.
    pub fn start(max_batch: usize, in_flight: usize, load: Loader<K, V>) -> Self {
        let max_batch = max_batch.max(1).next_power_of_two();
        let (tx, mut rx) = mpsc::unbounded_channel::<(K, Reply<V>)>();
        let permits = Arc::new(Semaphore::new(in_flight.max(1)));
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else {
                    return;
                };
                let jobs = gather(first, max_batch, MAX_TURNS, || rx.try_recv().ok()).await;
                counted.add(jobs.len());
                let keys = padded_keys(&jobs);
                let load = load.clone();
                tokio::spawn(async move {
                    let result = load(keys)
                        .await
                        .map(|rows| rows.into_iter().collect::<HashMap<K, V>>())
                        .map_err(Arc::new);
                    for (key, reply) in jobs {
                        let answer = match &result {
                            Ok(rows) => Ok(rows.get(&key).cloned()),
                            Err(e) => Err(e.clone()),
                        };
                        let _ = reply.send(answer);
                    }
                    drop(permit);
                });
            }
        });
        Batcher { tx, counts }
    }

    /// A batcher for database reads: up to 64 keys a query, as many queries in flight as suit
    /// the database (`in_flight`). `load` runs each batch's query on a connection from
    /// `Db::with_kept` (kept between reads, so no release check after each), told which
    /// database it is (for `placeholders`).
    pub fn reading<F>(db: crate::db::Db, load: F) -> Self
    where
        F: for<'c> Fn(
                &'c mut sqlx::AnyConnection,
                Dialect,
                Vec<K>,
            ) -> BoxFuture<'c, Result<Vec<(K, V)>, sqlx::Error>>
            + Send
            + Sync
            + 'static,
    {
        let (dialect, in_flight) = (db.dialect, in_flight(db.dialect));
        let load = Arc::new(load);
        Self::start(
            64,
            in_flight,
            Arc::new(move |keys| {
                let (db, load) = (db.clone(), load.clone());
                Box::pin(async move {
                    db.with_kept(Box::new(move |conn| load(conn, dialect, keys)))
                        .await
                })
            }),
        )
    }

    /// (queries run, requests they answered) since start.
    pub fn counts(&self) -> (u64, u64) {
        self.counts.get()
    }

    /// The row for `key`, read by a query that started after this call.
    pub async fn get(&self, key: K) -> Result<Option<V>, AppError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((key, reply))
            .map_err(|_| AppError::internal(anyhow::anyhow!("the batch loader has stopped")))?;
        match answer.await {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(e)) => Err(match Arc::try_unwrap(e) {
                Ok(e) => e.into(),
                Err(shared) => AppError::from_shared_db_error(&shared),
            }),
            Err(_) => Err(AppError::internal(anyhow::anyhow!(
                "the batch loader dropped a request"
            ))),
        }
    }
}

/// A batch: `first`, then whatever `try_next` has ready, up to `max`. Scheduler turns let
/// requests that are already running add theirs: another turn is taken while the last one brought
/// more (up to `turns`; `MAX_TURNS` for work that costs a hand-off). A lone request loses one turn
/// and no time, for nothing else is waiting to run. Shared by the batched reads and the ledger.
pub async fn gather<T>(
    first: T,
    max: usize,
    turns: usize,
    mut try_next: impl FnMut() -> Option<T>,
) -> Vec<T> {
    let mut jobs = vec![first];
    for _ in 0..turns {
        tokio::task::yield_now().await;
        let before = jobs.len();
        while jobs.len() < max {
            match try_next() {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        if jobs.len() == before || jobs.len() == max {
            break;
        }
    }
    jobs
}

/// The distinct keys of a batch, padded to a power of two by repeating the last one, so that a
/// database sees a handful of statement shapes (1, 2, 4, … placeholders) and keeps them prepared.
fn padded_keys<K: Eq + Hash + Clone, R>(jobs: &[(K, R)]) -> Vec<K> {
    let mut seen = HashSet::with_capacity(jobs.len());
    let mut keys: Vec<K> = jobs
        .iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .map(|(k, _)| k.clone())
        .collect();
    let last = keys.last().cloned().expect("a batch has a first key");
    keys.resize(keys.len().next_power_of_two(), last);
    keys
}

/// How many batch queries of one kind may run at once. SQLite answers in microseconds but each
/// query costs a hand-off to sqlx's worker thread, so one at a time (and bigger batches) is
/// fastest; PostgreSQL's answers take a network round trip, which a few queries in flight hide.
/// Measured with `bench/auth.sh`'s sessionDetail (SQLite: one in flight 41k req/s, three or four
/// 25–30k; PostgreSQL: one 26–31k, eight 32–34k).
fn in_flight(dialect: crate::db::Dialect) -> usize {
    match dialect {
        crate::db::Dialect::Sqlite => 1,
        crate::db::Dialect::Postgres => 8,
    }
}

/// Prometheus text for batchers' `(name, (queries, keys))`.
pub fn render(batchers: &[(&str, (u64, u64))]) -> String {
    let mut out = String::from(
        "# HELP auravita_batch_queries_total Batched queries run (reads, and the ledger's group commits), by kind.\n\
         # TYPE auravita_batch_queries_total counter\n",
    );
    for (name, (queries, _)) in batchers {
        out.push_str(&format!(
            "auravita_batch_queries_total{{kind=\"{name}\"}} {queries}\n"
        ));
    }
    out.push_str(
        "# HELP auravita_batch_keys_total Requests answered by batched queries, by kind.\n\
         # TYPE auravita_batch_keys_total counter\n",
    );
    for (name, (_, keys)) in batchers {
        out.push_str(&format!(
            "auravita_batch_keys_total{{kind=\"{name}\"}} {keys}\n"
        ));
    }
    out
}

/// `$first, $first+1, …` for `n` parameters: the inside of an `IN (...)` list. On SQLite,
/// as many anonymous `?` instead: sqlx binds a named parameter (`$n`) by looking its name up,
/// a linear search each, which makes a long list quadratic (a 256-row ledger batch spent most
/// of its time there). Either way parameters bind in the order they appear, so a statement
/// built with these uses no other placeholders and binds in that order.
pub fn placeholders(dialect: Dialect, first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 4);
    push_placeholders(&mut out, dialect, first, n);
    out
}

/// `($1, $2), ($3, $4), …`: `rows` rows of `width` parameters, for a `VALUES` list (on
/// SQLite, `(?, ?), …`, as `placeholders`). Written into one string: a 256-row ledger
/// statement has 2,560 parameters.
pub fn placeholder_rows(dialect: Dialect, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * (width * 4 + 4));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        push_placeholders(&mut out, dialect, r * width + 1, width);
        out.push(')');
    }
    out
}

fn push_placeholders(out: &mut String, dialect: Dialect, first: usize, n: usize) {
    use std::fmt::Write;
    for i in first..first + n {
        if i > first {
            out.push_str(", ");
        }
        match dialect {
            Dialect::Postgres => {
                let _ = write!(out, "${i}");
            }
            Dialect::Sqlite => out.push('?'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_then_padded_to_a_power_of_two() {
        let jobs: Vec<(&str, ())> = vec![("a", ()), ("b", ()), ("a", ()), ("c", ())];
        assert_eq!(padded_keys(&jobs), vec!["a", "b", "c", "c"]);
        let one: Vec<(&str, ())> = vec![("x", ())];
        assert_eq!(padded_keys(&one), vec!["x"]);
        assert_eq!(placeholders(Dialect::Postgres, 2, 3), "$2, $3, $4");
        assert_eq!(
            placeholder_rows(Dialect::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Dialect::Sqlite, 2, 3), "?, ?, ?");
        assert_eq!(placeholder_rows(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(placeholders(Dialect::Sqlite, 1, 0), "");
        assert_eq!(placeholder_rows(Dialect::Postgres, 1, 1), "($1)");
    }

    #[tokio::test]
    async fn concurrent_gets_share_queries_and_each_gets_its_own_row() {
        use std::sync::atomic::AtomicUsize;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let load: Loader<u32, u32> = Arc::new(move |keys: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::task::yield_now().await;
                // Odd keys have no row.
                Ok(keys
                    .into_iter()
                    .filter(|k| k % 2 == 0)
                    .map(|k| (k, k * 10))
                    .collect())
            })
        });
        let batcher = Arc::new(Batcher::start(64, 1, load));
        let tasks: Vec<_> = (0..200u32)
            .map(|k| {
                let b = batcher.clone();
                tokio::spawn(async move { (k, b.get(k).await.unwrap()) })
            })
            .collect();
        for t in tasks {
            let (k, row) = t.await.unwrap();
            assert_eq!(row, (k % 2 == 0).then_some(k * 10), "key {k}");
        }
        let queries = calls.load(Ordering::SeqCst);
        assert!(queries < 200, "200 concurrent reads took {queries} queries");
        assert_eq!(batcher.counts(), (queries as u64, 200));
    }

    #[tokio::test]
    async fn a_failed_query_fails_every_request_in_its_batch() {
        let load: Loader<u32, u32> =
            Arc::new(|_keys| Box::pin(async { Err(sqlx::Error::PoolTimedOut) }));
        let batcher = Batcher::start(8, 1, load);
        let err = batcher.get(1).await.unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
