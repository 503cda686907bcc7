//! The access ledger's journal (SQLite on a file): a link's row is in the journal before the
//! link is handed out, reaches the table before anyone reads the ledger, survives a process that
//! stops before moving it, is never kept twice, and is never dropped when the database refuses it.
//! (The HTTP tests in `files.rs` read every issued link back through `accessLog`, on both
//! databases.)

use std::time::Duration;

use auravita::db::Db;
use auravita::files::ledger::{Entry, Ledger, MovePolicy};

/// Rows stay in the journal until `flush` (or a new start).
const HOLD: MovePolicy = MovePolicy {
    at_rows: usize::MAX,
    after: Duration::from_secs(3600),
};

fn entry(n: i64) -> Entry {
    Entry {
        owner: "owner-1".into(),
        file_id: "file-1".into(),
        file_name: "scan \"1\".pdf".into(),
        actor: "doctor-1".into(),
        actor_name: None,
        action: "read",
        grant_id: Some("grant-1".into()),
        at: 1_000 + n,
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
    }
}

async fn open(dir: &std::path::Path) -> Db {
    let db = Db::connect(&format!("sqlite://{}/l.db", dir.display()), 4)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    add_user(&db, "owner-1").await;
    db
}

/// The ledger keeps only rows whose owner has an account.
async fn add_user(db: &Db, id: &str) {
    sqlx::query(
        "INSERT INTO users (id, name, name_lower, role, created_at, updated_at) \
         VALUES ($1, 'Owner', 'owner', 'patient', 0, 0) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn rows_in_table(db: &Db) -> Vec<(String, i64, Option<String>)> {
    sqlx::query_as("SELECT actor_id, at, grant_id FROM file_access_log ORDER BY at")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// The journal's segment files (`l.db-ledger.<n>`), in order.
fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("l.db-ledger.")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Everything the journal holds.
fn journal(dir: &std::path::Path) -> String {
    segments(dir)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    segments(dir).pop().expect("a segment")
}

/// Runs `work` on a runtime of its own, which stands for one process: when it returns, the
/// runtime is shut down and every task on it stops where it was.
fn as_a_process<T>(work: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt.block_on(work);
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}

/// Appends `n` rows in a process that is then killed before moving them.
fn append_then_stop(dir: &std::path::Path, n: i64) {
    as_a_process(async {
        let db = open(dir).await;
        let ledger = Ledger::start_with(db.clone(), HOLD).await.unwrap();
        assert!(ledger.journaled());
        for i in 0..n {
            ledger.append(entry(i)).await.unwrap();
        }
        // Durable in the journal, not yet in the table.
        assert_eq!(journal(dir).lines().count(), n as usize);
        assert!(rows_in_table(&db).await.is_empty());
        // Dropping the last handle would let the writer move the rows as it ends; a killed
        // process never gets there.
        std::mem::forget(ledger);
    });
}

#[tokio::test]
async fn rows_reach_the_table_on_flush() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let ledger = Ledger::start_with(db.clone(), HOLD).await.unwrap();
    assert!(ledger.journaled());
    let appends: Vec<_> = (0..300).map(|i| ledger.append(entry(i))).collect();
    for r in futures::future::join_all(appends).await {
        r.unwrap();
    }
    assert!(rows_in_table(&db).await.is_empty());
    assert_eq!(journal(dir.path()).lines().count(), 300);
    ledger.flush().await.unwrap();
    let rows = rows_in_table(&db).await;
    // More than one statement's worth (256): moved in two.
    assert_eq!(rows.len(), 300);
    assert_eq!(
        rows[7],
        ("doctor-1".to_string(), 1_007, Some("grant-1".to_string()))
    );
    assert_eq!(journal(dir.path()), "", "the journal empties once moved");
}

#[tokio::test]
async fn rows_move_by_themselves_after_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let policy = MovePolicy {
        at_rows: usize::MAX,
        after: Duration::from_millis(20),
    };
    let ledger = Ledger::start_with(db.clone(), policy).await.unwrap();
    ledger.append(entry(1)).await.unwrap();
    for _ in 0..250 {
        // (The journal empties just after the move commits.)
        if rows_in_table(&db).await.len() == 1 && journal(dir.path()).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the row was not moved within 5 s");
}

#[test]
fn a_stopped_process_leaves_its_rows_to_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    append_then_stop(dir.path(), 5);
    // A write the stopped process never finished: its link was never handed out.
    let last = last_segment(dir.path());
    let mut torn = std::fs::read_to_string(&last).unwrap();
    torn.push_str("{\"id\":\"0199\",\"owner\":\"own");
    std::fs::write(&last, &torn).unwrap();

    as_a_process(async {
        let db = open(dir.path()).await;
        let ledger = Ledger::start_with(db.clone(), HOLD).await.unwrap();
        assert!(ledger.journaled());
        let rows = rows_in_table(&db).await;
        assert_eq!(rows.len(), 5, "every complete row is moved at start");
        assert_eq!(rows[0].1, 1_000);
        assert_eq!(journal(dir.path()), "");
    });
}

#[test]
fn a_row_moved_twice_is_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    append_then_stop(dir.path(), 3);
    let left = journal(dir.path());
    as_a_process(async {
        let db = open(dir.path()).await;
        drop(Ledger::start_with(db.clone(), HOLD).await.unwrap());
        assert_eq!(rows_in_table(&db).await.len(), 3);
    });
    // As if the process had stopped after the move's commit but before removing the segment.
    std::fs::write(dir.path().join("l.db-ledger.1"), &left).unwrap();
    as_a_process(async {
        let db = open(dir.path()).await;
        let _ledger = Ledger::start_with(db.clone(), HOLD).await.unwrap();
        assert_eq!(rows_in_table(&db).await.len(), 3);
        assert_eq!(journal(dir.path()), "");
    });
}

#[test]
fn a_damaged_journal_stops_the_start_instead_of_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    append_then_stop(dir.path(), 2);
    let last = last_segment(dir.path());
    let damaged = std::fs::read_to_string(&last)
        .unwrap()
        .replacen("{\"id\"", "{\"ix\"", 1);
    std::fs::write(&last, &damaged).unwrap();
    as_a_process(async {
        let db = open(dir.path()).await;
        let err = Ledger::start_with(db.clone(), HOLD)
            .await
            .err()
            .expect("a damaged journal is refused");
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        assert!(rows_in_table(&db).await.is_empty());
    });
    assert_eq!(
        std::fs::read_to_string(&last).unwrap(),
        damaged,
        "the journal is left for a person"
    );
}

#[tokio::test]
async fn a_second_process_on_the_same_database_commits_directly() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let first = Ledger::start_with(db.clone(), HOLD).await.unwrap();
    assert!(first.journaled());
    // The journal's lock is per open file, so a second opening in this process stands for a
    // second process.
    let second = Ledger::start_with(db.clone(), HOLD).await.unwrap();
    assert!(!second.journaled());
    second.append(entry(1)).await.unwrap();
    assert_eq!(
        rows_in_table(&db).await.len(),
        1,
        "committed before the link"
    );
    first.append(entry(2)).await.unwrap();
    assert_eq!(rows_in_table(&db).await.len(), 1);
    first.flush().await.unwrap();
    assert_eq!(rows_in_table(&db).await.len(), 2);
}

#[tokio::test]
async fn when_the_database_refuses_the_move_the_rows_stay_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let ledger = Ledger::start_with(db.clone(), HOLD).await.unwrap();
    ledger.append(entry(1)).await.unwrap();
    sqlx::query("ALTER TABLE file_access_log RENAME TO parked")
        .execute(&db.pool)
        .await
        .unwrap();
    let err = ledger.flush().await.unwrap_err();
    assert_eq!(err.status.as_u16(), 503);
    assert_eq!(journal(dir.path()).lines().count(), 1);
    sqlx::query("ALTER TABLE parked RENAME TO file_access_log")
        .execute(&db.pool)
        .await
        .unwrap();
    ledger.append(entry(2)).await.unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(rows_in_table(&db).await.len(), 2);
    assert_eq!(journal(dir.path()), "");
}

/// A move is one statement per 256 rows: when a later statement is refused, the rows already
/// committed stay, the segment stays, and the next move adds the rest without doubling any.
#[tokio::test]
async fn a_move_cut_short_is_finished_by_the_next_without_doubles() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let ledger = Ledger::start_with(db.clone(), HOLD).await.unwrap();
    let appends: Vec<_> = (0..300).map(|i| ledger.append(entry(i))).collect();
    for r in futures::future::join_all(appends).await {
        r.unwrap();
    }
    // The journal's 281st line is in the second statement (lines are in arrival order).
    let line: serde_json::Value =
        serde_json::from_str(journal(dir.path()).lines().nth(280).unwrap()).unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON file_access_log WHEN NEW.at = {} \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
        line["at"]
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    let err = ledger.flush().await.unwrap_err();
    assert_eq!(err.status.as_u16(), 503);
    assert_eq!(
        rows_in_table(&db).await.len(),
        256,
        "the first statement's rows"
    );
    assert_eq!(
        journal(dir.path()).lines().count(),
        300,
        "the segment stays whole"
    );
    sqlx::query("DROP TRIGGER refuse_one")
        .execute(&db.pool)
        .await
        .unwrap();
    ledger.flush().await.unwrap();
    let ats: Vec<i64> = rows_in_table(&db).await.iter().map(|r| r.1).collect();
    assert_eq!(ats, (1_000..1_300).collect::<Vec<_>>(), "each row once");
    assert_eq!(journal(dir.path()), "");
}

/// A database the ledger commits to directly: PostgreSQL when the suite runs against it (a new
/// database, dropped by `drop_direct`), an in-memory SQLite otherwise. Holds "owner-1".
async fn direct_db() -> (Db, Option<(sqlx::PgConnection, String)>) {
    let url = std::env::var("AURAVITA_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        db.migrate().await.unwrap();
        add_user(&db, "owner-1").await;
        return (db, None);
    };
    use sqlx::Connection;
    let name = format!("auravita_l_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut own = url::Url::parse(&url).unwrap();
    own.set_path(&format!("/{name}"));
    let db = Db::connect(own.as_str(), 2).await.unwrap();
    db.migrate().await.unwrap();
    add_user(&db, "owner-1").await;
    (db, Some((admin, name)))
}

async fn drop_direct(db: Db, pg: Option<(sqlx::PgConnection, String)>) {
    db.pool.close().await;
    if let Some((mut admin, name)) = pg {
        sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn without_a_file_the_ledger_commits_each_group() {
    let (db, pg) = direct_db().await;
    let ledger = Ledger::start(db.clone()).await.unwrap();
    assert!(!ledger.journaled());
    ledger.append(entry(1)).await.unwrap();
    assert_eq!(rows_in_table(&db).await.len(), 1);
    drop(ledger);
    drop_direct(db, pg).await;
}

#[tokio::test]
async fn a_row_whose_owner_is_gone_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let ledger = Ledger::start_with(db.clone(), HOLD).await.unwrap();
    let mut orphan = entry(1);
    orphan.owner = "erased-owner".into();
    ledger.append(orphan).await.unwrap();
    ledger.append(entry(2)).await.unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(
        rows_in_table(&db).await,
        vec![("doctor-1".to_string(), 1_002, Some("grant-1".to_string()))]
    );
    assert_eq!(
        journal(dir.path()),
        "",
        "the dropped row leaves the journal too"
    );
}

/// An account erase (`users::profile::erase_account`: the user's row deleted, then its ledger)
/// racing a link whose read came first: the link's row must not outlive the erase. Committing
/// directly, the row's insert waits for the erase (PostgreSQL: it holds the owner's row; SQLite:
/// the erase holds the only connection) and then finds no owner.
#[tokio::test]
async fn a_row_written_while_its_owner_is_erased_does_not_outlive_the_erase() {
    let (db, pg) = direct_db().await;
    let ledger = Ledger::start(db.clone()).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = 'owner-1'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let writing = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.append(entry(1)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writing.is_finished(),
        "the row was written past an erase in progress"
    );
    auravita::files::forget_ledger(&mut tx, "owner-1")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    writing.await.unwrap().unwrap();
    assert!(rows_in_table(&db).await.is_empty());
    drop(ledger);
    drop_direct(db, pg).await;
}

#[tokio::test]
async fn appends_go_on_while_rows_move() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    // A move every few rows: most groups arrive while one is in flight.
    let policy = MovePolicy {
        at_rows: 3,
        after: Duration::from_millis(1),
    };
    let ledger = Ledger::start_with(db.clone(), policy).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                ledger.append(entry(t * 1_000 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    ledger.flush().await.unwrap();
    let rows = rows_in_table(&db).await;
    assert_eq!(rows.len(), 400);
    let distinct: std::collections::HashSet<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(distinct.len(), 400, "each row once");
    assert_eq!(journal(dir.path()), "");
    assert_eq!(segments(dir.path()).len(), 1, "moved segments are removed");
}

/// The owner's row is held only against its delete: a ledger row is not held up by an update
/// of the owner's profile in progress (PostgreSQL; SQLite runs writers one at a time anyway).
#[tokio::test]
async fn a_profile_update_in_progress_does_not_hold_up_a_row() {
    let (db, pg) = direct_db().await;
    if pg.is_none() {
        return;
    }
    let ledger = Ledger::start(db.clone()).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE users SET name = 'Renamed' WHERE id = 'owner-1'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), ledger.append(entry(1)))
        .await
        .expect("the row waited for a profile update")
        .unwrap();
    assert_eq!(rows_in_table(&db).await.len(), 1);
    tx.rollback().await.unwrap();
    drop(ledger);
    drop_direct(db, pg).await;
}
