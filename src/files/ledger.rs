//! Group commit for the access ledger's "read" rows (one per download link issued). Every link
//! still waits until its row is committed before it is handed out, but concurrent links share one
//! transaction: on SQLite, one writer at a time would otherwise cap link issuance at the rate of
//! single-row commits.

use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::error::AppError;

/// One ledger row.
#[derive(Debug, Clone)]
pub struct Entry {
    pub owner: String,
    pub file_id: String,
    pub file_name: String,
    pub actor: String,
    pub action: &'static str,
    pub grant_id: Option<String>,
    pub at: i64,
    pub ip: String,
    pub user_agent: String,
}

type Job = (Entry, oneshot::Sender<Result<(), String>>);

/// The handle every request uses; a single task per instance owns the writing.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Job>,
    counts: std::sync::Arc<crate::batch::Counts>,
}

/// The most rows one transaction carries (10 parameters each, well under SQLite's limit).
const MAX_BATCH: usize = 256;

impl Ledger {
    pub fn start(db: Db) -> Ledger {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        let counts = std::sync::Arc::new(crate::batch::Counts::default());
        let counted = counts.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let batch = crate::batch::gather(first, MAX_BATCH, || rx.try_recv().ok()).await;
                counted.add(batch.len());
                let (entries, acks): (Vec<Entry>, Vec<_>) = batch.into_iter().unzip();
                let result = write(&db, entries).await.map_err(|e| e.to_string());
                for ack in acks {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Ledger { tx, counts }
    }

    /// (group commits run, rows they carried) since start; a commit that failed counts too.
    pub fn counts(&self) -> (u64, u64) {
        self.counts.get()
    }

    /// Appends `entry` and returns once it is committed.
    pub async fn append(&self, entry: Entry) -> Result<(), AppError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((entry, ack))
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

async fn write(db: &Db, batch: Vec<Entry>) -> Result<(), sqlx::Error> {
    let dialect = db.dialect;
    db.with_kept(Box::new(move |conn| {
        Box::pin(async move {
            // subject_id (the doctor a grant was about) is left NULL: a read has none.
            let sql = format!(
                "INSERT INTO file_access_log (id, owner_id, file_id, file_name, actor_id, action, \
                 grant_id, at, ip, user_agent) VALUES {}",
                crate::batch::placeholder_rows(dialect, batch.len(), 10)
            );
            let mut q = sqlx::query(&sql);
            for e in &batch {
                q = q
                    // Time-ordered ids (UUIDv7): each batch appends to the end of the primary-key
                    // index instead of dirtying one random page per row.
                    .bind(uuid::Uuid::now_v7().simple().to_string())
                    .bind(&e.owner)
                    .bind(&e.file_id)
                    .bind(&e.file_name)
                    .bind(&e.actor)
                    .bind(e.action)
                    .bind(&e.grant_id)
                    .bind(e.at)
                    .bind(&e.ip)
                    .bind(&e.user_agent);
            }
            // One statement is atomic on its own: all of the batch's rows are committed, or none.
            q.persistent(false).execute(conn).await?;
            Ok(())
        })
    }))
    .await
}
