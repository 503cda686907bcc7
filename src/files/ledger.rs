//! The access ledger's "read" rows (one per download link issued). A link is handed out only
//! once its row is durable; concurrent links share the work.
//!
//! Two ways to make a row durable, chosen when the ledger starts:
//!
//! - **Direct** (PostgreSQL, or an in-memory SQLite): concurrent rows share one committed
//!   `INSERT` (group commit).
//! - **Journaled** (SQLite on a file, the embedded default): rows are appended to a journal beside
//!   the database (segments `<database>-ledger.<n>`) with one `write` per group. A commit on SQLite
//!   (WAL, `synchronous = NORMAL`) is itself a `write` to a file beside the database that survives
//!   a crash of the process but not of the machine; the journal gives each row exactly that
//!   durability, without a database commit per group. A task beside the writer moves the rows
//!   into `file_access_log` in 256-row statements (`MovePolicy`: the active segment is closed, a
//!   new one takes the appends, the closed one is deleted once all its rows are committed; a move
//!   cut short is finished by the next, which skips rows already there by id), and every
//!   row appended so far is moved before anyone reads or erases the ledger (`flush`). On start,
//!   rows a stopped process left in the journal are moved before anything is served; a row moved
//!   twice (a stop between a move's commit and its segment's removal) is kept once, by its id.
//!   The journal is locked (`<database>-ledger.lock`) while in use: a second process on the same
//!   database commits directly. (Measured with `bench/uploads.sh`; see `bench/README.md`.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::db::{Db, Dialect};
use crate::error::AppError;

/// One ledger row.
#[derive(Debug, Clone)]
pub struct Entry {
    pub owner: String,
    pub file_id: String,
    pub file_name: String,
    pub actor: String,
    /// The actor's name as it was when they acted (`None`: read when the row is written).
    pub actor_name: Option<String>,
    pub action: &'static str,
    pub grant_id: Option<String>,
    pub at: i64,
    pub ip: String,
    pub user_agent: String,
}

/// A row as written: the entry with its id (and, in the journal, one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Row {
    id: String,
    owner: String,
    file_id: String,
    file_name: String,
    actor: String,
    action: String,
    grant_id: Option<String>,
    at: i64,
    ip: String,
    user_agent: String,
    /// Absent in journal lines written before it existed.
    #[serde(default)]
    actor_name: Option<String>,
}

impl Row {
    fn new(e: Entry) -> Row {
        Row {
            // Time-ordered ids (UUIDv7): each batch appends to the end of the primary-key index
            // instead of dirtying one random page per row.
            id: crate::db::new_ordered_id(),
            owner: e.owner,
            file_id: e.file_id,
            file_name: e.file_name,
            actor: e.actor,
            action: e.action.to_string(),
            grant_id: e.grant_id,
            at: e.at,
            ip: e.ip,
            user_agent: e.user_agent,
            actor_name: e.actor_name,
        }
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

// Nearly every job is an `Append`; boxing its entry would add an allocation to every link.
#[allow(clippy::large_enum_variant)]
enum Job {
    Append(Entry, Ack),
    /// Answered once every row appended before it is in `file_access_log`.
    Flush(Ack),
}

/// The handle every request uses; a single task per instance owns the writing.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Job>,
    counts: Arc<crate::batch::Counts>,
    journaled: bool,
}

/// The most rows one `INSERT` carries (11 parameters each, well under SQLite's limit).
const MAX_BATCH: usize = 256;

/// When journaled rows are moved into the table.
#[derive(Debug, Clone, Copy)]
pub struct MovePolicy {
    /// Once this many wait…
    pub at_rows: usize,
    /// …or once the oldest has waited this long (and before the ledger is read: `flush`).
    pub after: Duration,
}

impl Default for MovePolicy {
    fn default() -> Self {
        MovePolicy {
            at_rows: 4096,
            after: Duration::from_millis(200),
        }
    }
}
/// While this many rows wait (the database refusing the move), new links are refused rather
/// than held in memory without bound.
const MAX_WAITING: usize = 65_536;

impl Ledger {
    /// Starts the writer on `db`: journaled when `db` is SQLite on a file whose journal this
    /// process can lock, direct otherwise. Rows a stopped process left in the journal are moved
    /// into the table first.
    pub async fn start(db: Db) -> anyhow::Result<Ledger> {
        Self::start_with(db, MovePolicy::default()).await
    }

    /// `start`, with when journaled rows move (tests hold them in the journal).
    pub async fn start_with(db: Db, policy: MovePolicy) -> anyhow::Result<Ledger> {
        let journal = match journal_path(&db) {
            Some(path) => Journal::open(&db, &path).await?,
            None => None,
        };
        let journaled = journal.is_some();
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let counts = Arc::new(crate::batch::Counts::default());
        tokio::spawn(run(db, journal, policy, rx, counts.clone()));
        Ok(Ledger {
            tx,
            counts,
            journaled,
        })
    }

    /// Whether rows go through the journal (false: each group is committed directly).
    pub fn journaled(&self) -> bool {
        self.journaled
    }

    /// (groups written, rows they carried) since start; a write that failed counts too.
    pub fn counts(&self) -> (u64, u64) {
        self.counts.get()
    }

    /// Appends `entry` and returns once it is durable.
    pub async fn append(&self, entry: Entry) -> Result<(), AppError> {
        let (ack, done) = oneshot::channel();
        self.send(Job::Append(entry, ack), done).await
    }

    /// Returns once every row appended before this call is in `file_access_log` (a no-op
    /// without a journal): called before the ledger is read or erased.
    pub async fn flush(&self) -> Result<(), AppError> {
        if !self.journaled {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.send(Job::Flush(ack), done).await
    }

    async fn send(
        &self,
        job: Job,
        done: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), AppError> {
        self.tx
            .send(job)
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("the ledger writer has stopped")))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AppError::unavailable("the database", anyhow::anyhow!(e))),
            Err(_) => Err(AppError::internal(anyhow::anyhow!(
                "the ledger writer dropped a row"
            ))),
        }
    }
}

/// The writer task: gathers concurrent jobs into groups, makes each group's rows durable, and
/// (journaled) moves waiting rows into the table beside it.
async fn run(
    db: Db,
    mut journal: Option<Journal>,
    policy: MovePolicy,
    mut rx: mpsc::Receiver<Job>,
    counts: Arc<crate::batch::Counts>,
) {
    // A move in flight (journaled): its segments come back if the database refused them.
    let mut moving: Option<Moving> = None;
    loop {
        let due = match (&journal, &moving) {
            (Some(j), None) if j.has_rows() => Some(j.since + policy.after),
            _ => None,
        };
        let first = tokio::select! {
            job = rx.recv() => job,
            done = async { (&mut moving.as_mut().expect("a move in flight").task).await }, if moving.is_some() => {
                moving = None;
                if let Some(j) = journal.as_mut() {
                    j.settle(done);
                }
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                if let Some(j) = journal.as_mut() {
                    moving = j.start_move(&db);
                }
                continue;
            }
        };
        let Some(first) = first else { break };
        // A journal write costs little: one scheduler turn for requests already running, then
        // what is queued. A commit is worth waiting a few turns for.
        let turns = if journal.is_some() {
            1
        } else {
            crate::batch::MAX_TURNS
        };
        let jobs = crate::batch::gather(first, MAX_BATCH, turns, || rx.try_recv().ok()).await;
        let (mut rows, mut acks, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
        for job in jobs {
            match job {
                Job::Append(entry, ack) => {
                    rows.push(Row::new(entry));
                    acks.push(ack);
                }
                Job::Flush(ack) => flushes.push(ack),
            }
        }
        if !rows.is_empty() {
            counts.add(rows.len());
            let in_flight = moving.as_ref().map_or(0, |m| m.rows);
            let result = match journal.as_mut() {
                None => insert(&db, rows.into(), false)
                    .await
                    .map_err(|e| e.to_string()),
                Some(j) if j.rows() + in_flight + rows.len() > MAX_WAITING => {
                    Err("the ledger's journal is full: the database refuses its rows".into())
                }
                Some(j) => j
                    .append(rows)
                    .map_err(|e| format!("writing the ledger's journal: {e:#}")),
            };
            for ack in acks {
                let _ = ack.send(result.clone());
            }
        }
        let Some(j) = journal.as_mut() else {
            for ack in flushes {
                let _ = ack.send(Ok(()));
            }
            continue;
        };
        if !flushes.is_empty() {
            // Everything appended so far, in the table before the readers go on.
            let result = j.move_all(&db, moving.take()).await;
            for ack in flushes {
                let _ = ack.send(result.clone());
            }
        } else if moving.is_none() && j.waiting.len() >= policy.at_rows {
            moving = j.start_move(&db);
        }
    }
    // Every handle is gone: move what waits (what cannot be moved stays in the journal).
    if let Some(j) = journal.as_mut() {
        let _ = j.move_all(&db, moving.take()).await;
    }
}

/// `<database>-ledger` for SQLite on a file; `None` for PostgreSQL or an in-memory database.
fn journal_path(db: &Db) -> Option<PathBuf> {
    if db.dialect != Dialect::Sqlite {
        return None;
    }
    let file = crate::db::sqlite_path(db.url())?;
    if db.url().contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(format!("{file}-ledger")))
}

/// A closed journal segment (`<base>.<n>`) whose rows are not yet known to be in the table.
/// (Shared: each statement of a move reads its chunk from them, and a refused move keeps them.)
struct Segment {
    path: PathBuf,
    rows: Arc<[Row]>,
}

/// A move running beside the writer, and how many rows it carries.
struct Moving {
    task: tokio::task::JoinHandle<Result<(), (Vec<Segment>, String)>>,
    rows: usize,
}

/// The journal: segments `<base>.1`, `<base>.2`, … (the highest one open for appends) and the
/// lock file `<base>.lock`, held for as long as this process writes them.
struct Journal {
    _lock: std::fs::File,
    base: PathBuf,
    seq: u64,
    active: std::fs::File,
    /// The bytes in the active segment that hold whole rows.
    active_len: u64,
    /// The rows in the active segment…
    waiting: Vec<Row>,
    /// …and in closed segments a move has not taken (or gave back).
    sealed: Vec<Segment>,
    /// When the oldest of them was appended (or the last move failed).
    since: Instant,
}

impl Journal {
    /// Locks the journal and moves any rows a stopped process left in it into the table. `None`
    /// when another live process holds it.
    async fn open(db: &Db, base: &Path) -> anyhow::Result<Option<Journal>> {
        let lock_path = suffixed(base, "lock");
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::warn!(
                    path = %base.display(),
                    "another process holds the ledger journal; this one commits each group directly"
                );
                return Ok(None);
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()))
            }
        }
        let mut left = Vec::new();
        for (seq, path) in segments(base)? {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the ledger journal {}", path.display()))?;
            let rows = parse(&text).with_context(|| format!("in {}", path.display()))?;
            left.push((
                seq,
                Segment {
                    path,
                    rows: rows.into(),
                },
            ));
        }
        let seq = left.last().map_or(0, |(seq, _)| *seq) + 1;
        let active = create_segment(base, seq)?;
        let mut journal = Journal {
            _lock: lock,
            base: base.to_path_buf(),
            seq,
            active,
            active_len: 0,
            waiting: Vec::new(),
            sealed: left.into_iter().map(|(_, s)| s).collect(),
            since: Instant::now(),
        };
        let n = journal.rows();
        // (Empty segments a stopped process left go too.)
        journal
            .move_all(db, None)
            .await
            .map_err(anyhow::Error::msg)?;
        if n > 0 {
            tracing::info!(
                rows = n,
                "moved ledger rows left in the journal by a stopped process"
            );
        }
        Ok(Some(journal))
    }

    fn rows(&self) -> usize {
        self.waiting.len() + self.sealed.iter().map(|s| s.rows.len()).sum::<usize>()
    }

    fn has_rows(&self) -> bool {
        !self.waiting.is_empty() || !self.sealed.is_empty()
    }

    /// Appends `rows` to the active segment with one `write`.
    fn append(&mut self, rows: Vec<Row>) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(rows.len() * 320);
        for row in &rows {
            serde_json::to_writer(&mut buf, row)?;
            buf.push(b'\n');
        }
        if let Err(e) = self.active.write_all(&buf) {
            // Part of the group may be on disk: cut it off, so that the segment holds only rows
            // whose links were handed out, and go on in a new segment (where a cut that failed
            // leaves a torn last line, which a start drops).
            let _ = self.active.set_len(self.active_len);
            let _ = self.next_segment();
            return Err(e.into());
        }
        self.active_len += buf.len() as u64;
        if !self.has_rows() {
            self.since = Instant::now();
        }
        self.waiting.extend(rows);
        Ok(())
    }

    /// Closes the active segment (if it holds rows) and opens the next.
    fn seal(&mut self) -> anyhow::Result<()> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        self.next_segment()
    }

    /// Closes the active segment and opens the next.
    fn next_segment(&mut self) -> anyhow::Result<()> {
        let next = create_segment(&self.base, self.seq + 1)?;
        let path = segment_path(&self.base, self.seq);
        self.active = next;
        self.active_len = 0;
        self.seq += 1;
        self.sealed.push(Segment {
            path,
            rows: std::mem::take(&mut self.waiting).into(),
        });
        Ok(())
    }

    /// Seals the active segment and moves every closed one on a task of its own, so appends go
    /// on meanwhile.
    fn start_move(&mut self, db: &Db) -> Option<Moving> {
        if let Err(e) = self.seal() {
            tracing::warn!(error = %format!("{e:#}"), "sealing a ledger journal segment failed");
        }
        if self.sealed.is_empty() {
            return None;
        }
        let segments = std::mem::take(&mut self.sealed);
        let rows = segments.iter().map(|s| s.rows.len()).sum();
        let db = db.clone();
        Some(Moving {
            task: tokio::spawn(move_segments(db, segments)),
            rows,
        })
    }

    /// Takes back what a move could not do, to try again after a while.
    fn moved(&mut self, result: Result<(), (Vec<Segment>, String)>) {
        if let Err((mut back, e)) = result {
            tracing::warn!(error = %e, "moving journaled ledger rows failed; retrying");
            back.append(&mut self.sealed);
            self.sealed = back;
            self.since = Instant::now();
        }
    }

    /// Takes in how a move task ended.
    fn settle(
        &mut self,
        ended: Result<Result<(), (Vec<Segment>, String)>, tokio::task::JoinError>,
    ) {
        match ended {
            Ok(result) => self.moved(result),
            // Its rows are still in their segments, which the next start reads.
            Err(e) => tracing::error!(error = %e, "a ledger move stopped"),
        }
    }

    /// Waits for `moving`, then moves every row appended so far.
    async fn move_all(&mut self, db: &Db, moving: Option<Moving>) -> Result<(), String> {
        if let Some(m) = moving {
            self.settle(m.task.await);
        }
        self.seal().map_err(|e| format!("{e:#}"))?;
        let segments = std::mem::take(&mut self.sealed);
        let result = move_segments(db.clone(), segments).await;
        match result {
            Ok(()) => Ok(()),
            Err((back, e)) => {
                let message = e.clone();
                self.moved(Err((back, e)));
                Err(message)
            }
        }
    }
}

/// Inserts each segment's rows (skipping ids already present), deleting the segment once they
/// are committed. Stops at the first failure and gives back the segments not done.
async fn move_segments(db: Db, segments: Vec<Segment>) -> Result<(), (Vec<Segment>, String)> {
    let mut segments = segments.into_iter();
    while let Some(segment) = segments.next() {
        if let Err(e) = insert(&db, segment.rows.clone(), true).await {
            let mut back = vec![segment];
            back.extend(segments);
            return Err((
                back,
                format!("moving journaled ledger rows into the database: {e}"),
            ));
        }
        match std::fs::remove_file(&segment.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Its rows are committed; read again at the next start, they are skipped by id.
            Err(e) => {
                tracing::warn!(error = %e, path = %segment.path.display(), "removing a moved ledger segment")
            }
        }
    }
    Ok(())
}

fn suffixed(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn segment_path(base: &Path, seq: u64) -> PathBuf {
    suffixed(base, &seq.to_string())
}

fn create_segment(base: &Path, seq: u64) -> anyhow::Result<std::fs::File> {
    let path = segment_path(base, seq);
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .with_context(|| format!("creating the ledger journal segment {}", path.display()))
}

/// The journal's segments, in order.
fn segments(base: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!(
        "{}.",
        base.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name
            .strip_prefix(&prefix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The rows of a journal's text. A last line without its newline is a write the process did not
/// finish: its link was never handed out, so it is dropped. Any other unreadable line is an error.
fn parse(text: &str) -> anyhow::Result<Vec<Row>> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("line {} is not a ledger row", i + 1))
        })
        .collect()
}

/// Inserts `rows` on a kept connection, `MAX_BATCH` rows per statement. A statement is atomic
/// on its own; more rows than one statement holds are only ever a journal's (`replay`), whose
/// segment stays until every statement committed and whose rows already present are skipped by
/// id, so a move cut short is finished, not doubled, by the next one.
async fn insert(db: &Db, rows: Arc<[Row]>, replay: bool) -> Result<(), sqlx::Error> {
    debug_assert!(replay || rows.len() <= MAX_BATCH);
    let dialect = db.dialect;
    for start in (0..rows.len()).step_by(MAX_BATCH) {
        let (rows, end) = (rows.clone(), (start + MAX_BATCH).min(rows.len()));
        db.with_kept(Box::new(move |conn| {
            Box::pin(async move { insert_chunk(conn, dialect, &rows[start..end], replay).await })
        }))
        .await?;
    }
    Ok(())
}

async fn insert_chunk(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    rows: &[Row],
    replay: bool,
) -> Result<(), sqlx::Error> {
    // The actor's name is the one read with the link's own read (`actor_name`), or else as the
    // row is written: a journaled row (SQLite) a moment after its link, and a rename
    // (`updateProfile`) and an erase flush the journal first.
    // subject_id (the doctor a grant was about) is left NULL: a read has none. A row whose
    // owner's account is gone is dropped: its link was read before the erase committed, and
    // the erase removes the ledger after the user's row (`files::forget_ledger`). Holding the
    // owner's row against its delete while this writes makes the two wait for each other on
    // PostgreSQL (and nothing else: a profile update does not wait).
    let sql = format!(
        "INSERT INTO file_access_log (id, owner_id, file_id, file_name, actor_id, action, \
         grant_id, at, ip, user_agent, actor_name) \
         SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, \
         v.column8, v.column9, v.column10, \
         COALESCE(v.column11, (SELECT a.name FROM users a WHERE a.id = v.column5)) \
         FROM (VALUES {}) AS v \
         WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = v.column2{}){}",
        crate::batch::placeholder_rows(dialect, rows.len(), 11),
        dialect.lock_rows(crate::db::RowLock::KeyShare),
        if replay {
            " ON CONFLICT (id) DO NOTHING"
        } else {
            ""
        }
    );
    let mut q = sqlx::query(&sql);
    for r in rows {
        q = q
            .bind(&r.id)
            .bind(&r.owner)
            .bind(&r.file_id)
            .bind(&r.file_name)
            .bind(&r.actor)
            .bind(&r.action)
            .bind(&r.grant_id)
            .bind(r.at)
            .bind(&r.ip)
            .bind(&r.user_agent)
            .bind(&r.actor_name);
    }
    // A full chunk (most of a journal move) has one shape, kept prepared; the sizes of other
    // groups vary, and would only crowd the connection's statement cache.
    q.persistent(rows.len() == MAX_BATCH).execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Row {
        Row {
            id: id.into(),
            owner: "o".into(),
            file_id: "f".into(),
            file_name: "a \"b\"\n.pdf".into(),
            actor: "a".into(),
            action: "read".into(),
            grant_id: None,
            at: 1,
            ip: "127.0.0.1".into(),
            user_agent: "ua".into(),
            actor_name: None,
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_complete_lines_are_kept() {
        let mut text = String::new();
        for id in ["1", "2"] {
            text.push_str(&serde_json::to_string(&row(id)).unwrap());
            text.push('\n');
        }
        let whole = parse(&text).unwrap();
        assert_eq!(whole, vec![row("1"), row("2")]);
        let torn = format!("{text}{}", &serde_json::to_string(&row("3")).unwrap()[..20]);
        assert_eq!(parse(&torn).unwrap(), whole);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn a_failed_write_refuses_the_group_and_goes_on_in_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("x.db-ledger");
        std::fs::write(segment_path(&base, 1), "").unwrap();
        let mut journal = Journal {
            _lock: std::fs::File::create(suffixed(&base, "lock")).unwrap(),
            base: base.clone(),
            seq: 1,
            // Opened for reading only: every write to it fails.
            active: std::fs::File::open(segment_path(&base, 1)).unwrap(),
            active_len: 0,
            waiting: Vec::new(),
            sealed: Vec::new(),
            since: Instant::now(),
        };
        assert!(journal.append(vec![row("1")]).is_err());
        assert_eq!(journal.rows(), 0, "a refused group is not waiting");
        journal.append(vec![row("2")]).unwrap();
        assert_eq!(journal.waiting, vec![row("2")]);
        let written = std::fs::read_to_string(segment_path(&base, 2)).unwrap();
        assert_eq!(parse(&written).unwrap(), vec![row("2")]);
        assert_eq!(std::fs::read_to_string(segment_path(&base, 1)).unwrap(), "");
    }

    #[test]
    fn a_damaged_complete_line_is_an_error() {
        let text = format!("{}\nnot json\n", serde_json::to_string(&row("1")).unwrap());
        let err = parse(&text).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
