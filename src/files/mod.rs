//! Medical files: upload, storage, grants, 30-minute shares, download links and the access ledger.
//! Access is decided from rows only (a grant is live while not ended and not past its end time),
//! so revocation and expiry take effect on the very next request, on every instance.

pub mod ledger;
mod upload;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{not_found, ApiOk, ApiPath, ApiQuery, ApiResult};
use crate::app::AppState;
use crate::auth::session::{self, Caller};
use crate::auth::{AuthUser, ClientInfo, Role};
use crate::clock::{rfc3339, Millis};
use crate::db::{Dialect, RowLock};
use crate::error::{AppError, ErrorEnvelope};
use crate::notifications::{raise, Kind};
use crate::storage::LinkSpec;

pub use upload::{FileView, UploadForm};

/// How long a download link lives at most.
pub const LINK_TTL_MS: Millis = 2 * 60 * 1000;
/// How long a temporary share lives.
pub const SHARE_TTL_MS: Millis = 30 * 60 * 1000;

/// Shares a patient may send in an hour to doctors they are not connected with. Each raises a
/// notice for a doctor who never agreed to hear from them; sharing and revoking in a loop must
/// not bury a doctor in notices (as for connection requests). Connected doctors are not counted.
pub const UNCONNECTED_SHARES_PER_HOUR: i64 = 20;
/// Orphan objects (no row points at them) older than this are removed by the sweep.
pub const ORPHAN_AGE_MS: Millis = 60 * 60 * 1000;
const FILES_PER_PAGE: i64 = 10;
const LOG_PER_PAGE: i64 = 20;
const GIVEN_PER_PAGE: i64 = 50;
/// The longest end time a permanent grant may carry (`e`), in minutes: one year.
const MAX_GRANT_MINUTES: i64 = 525_600;

/// The SQL condition for a live grant or share aliased `g`, given the parameter holding now.
fn live(now_param: &str) -> String {
    format!("g.ended_at IS NULL AND (g.expires_at IS NULL OR g.expires_at > {now_param})")
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload::upload_file))
        // The upload route counts and limits its own body while streaming it.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .merge(
            OpenApiRouter::new()
                .routes(routes!(user_files))
                .routes(routes!(file_url))
                .routes(routes!(shared_file_url))
                .routes(routes!(create_file_access))
                .routes(routes!(revoke_file_access))
                .routes(routes!(temp_file_share))
                .routes(routes!(patient_file_data))
                .routes(routes!(delete_file))
                .routes(routes!(shared_with_me))
                .routes(routes!(access_log))
                .routes(routes!(access_given)),
        )
}

// ---------------------------------------------------------------------------------------------
// Views

#[derive(Serialize, ToSchema)]
pub struct FilePage {
    pub files: Vec<FileView>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LinkView {
    /// Opens this one file, as an attachment, until `expires_at`.
    pub url: String,
    pub detail: String,
    pub expires_at: String,
    /// The grant or share the link was issued under (absent for the owner).
    pub access_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct GrantView {
    pub detail: String,
    pub access_id: String,
    /// `null` for a permanent grant without an end.
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Detail {
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct PersonView {
    pub id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SharedFileView {
    pub file: FileView,
    /// Use with `sharedFileURL/{access_id}`.
    pub access_id: String,
    /// `grant` (permanent, maybe with an end) or `share` (30 minutes).
    pub access_kind: String,
    pub granted_at: String,
    /// When this access ends by itself; `null` = only when revoked.
    pub expires_at: Option<String>,
    pub patient: PersonView,
}

#[derive(Serialize, ToSchema)]
pub struct SharedFiles {
    pub files: Vec<SharedFileView>,
}

#[derive(Serialize, ToSchema)]
pub struct FileRef {
    pub id: String,
    pub name: String,
}

/// One live grant or share the caller gave: who may open which file, and until when.
#[derive(Serialize, ToSchema)]
pub struct GivenAccessView {
    /// The grant's or share's id (the doctor opens the file with it).
    pub access_id: String,
    /// `grant` (permanent, maybe with an end) or `share` (30 minutes).
    pub access_kind: String,
    pub granted_at: String,
    /// When this access ends by itself; `null` = only when revoked.
    pub expires_at: Option<String>,
    pub file: FileRef,
    pub doctor: crate::users::PeerView,
}

#[derive(Serialize, ToSchema)]
pub struct GivenAccessPage {
    pub access: Vec<GivenAccessView>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LogEntry {
    pub id: String,
    /// `read` (a download link issued), `grant`, `revoke`, `share`, `delete`, or `end` (a grant
    /// or share that ended with its connection or with the doctor's account).
    pub action: String,
    pub actor: PersonView,
    pub file_id: String,
    pub file_name: String,
    pub access_id: Option<String>,
    /// The doctor a grant, share or revoke was about.
    pub subject: Option<PersonView>,
    pub at: String,
    pub ip: String,
    pub user_agent: String,
}

#[derive(Serialize, ToSchema)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

// ---------------------------------------------------------------------------------------------
// Queries

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub q: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GivenQuery {
    /// Only the access given to this one of the caller's files.
    pub f: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UrlQuery {
    /// `t`: as the owner; `f`: under a grant or share. Absent: whichever applies.
    pub o: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// The doctor's user id.
    pub p: String,
    /// Access type: only `r` (read).
    pub t: Option<String>,
    /// Optional end, in minutes from now (1 to 525600).
    pub e: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShareQuery {
    /// The doctor's user id.
    pub p: String,
    /// Access type: only `r` (read).
    pub t: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PersonQuery {
    /// The doctor's user id.
    pub p: String,
}

fn page_number(v: Option<i64>, field: &str) -> Result<i64, AppError> {
    match v {
        None => Ok(1),
        Some(p) if (1..=1_000_000).contains(&p) => Ok(p),
        Some(_) => Err(AppError::invalid(
            field,
            format!("{field} must be a page number from 1 to 1000000"),
        )),
    }
}

fn access_type(t: &Option<String>) -> Result<(), AppError> {
    match t.as_deref() {
        None | Some("r") => Ok(()),
        Some(_) => Err(AppError::invalid(
            "t",
            "t must be r (read): only read access exists",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

type FileRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

const FILE_COLS: &str = "f.id, f.file_name, f.content_type, f.size_bytes, f.sha256, f.tags, \
     f.report_type, f.report_date, f.created_at";

fn file_view(r: FileRow) -> FileView {
    let (
        id,
        file_name,
        content_type,
        size_bytes,
        sha256,
        tags,
        report_type,
        report_date,
        created_at,
    ) = r;
    FileView {
        id,
        file_name,
        content_type,
        size_bytes,
        sha256,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        report_type,
        report_date,
        created_at: rfc3339(created_at),
    }
}

#[derive(Clone, Debug)]
struct OwnedFile {
    key: String,
    name: String,
    content_type: String,
}

///
/// `lock` (`Dialect::lock_rows`) holds the file's row until the caller commits: a grant or share
/// written meanwhile cannot lose its file to a concurrent delete (PostgreSQL would refuse its
/// row, or keep a grant the delete did not see), and a delete waits for them and ends them.
/// Before it, the owner's account and those of `others` (the doctors the caller writes about)
/// are held (`db::hold_accounts`): their erases end grants on this file, and would otherwise
/// deadlock with the caller. The owner gone is 409; another account gone is no one to write about.
async fn owned_file(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    lock: RowLock,
    file_id: &str,
    owner: &str,
    others: &[&str],
) -> Result<OwnedFile, AppError> {
    let mut accounts = vec![owner];
    accounts.extend_from_slice(others);
    let held = crate::db::hold_accounts(conn, dialect, &accounts).await?;
    if !held.iter().any(|id| id == owner) {
        return Err(AppError::gone_meanwhile());
    }
    let row: Option<(String, String, String)> = sqlx::query_as(&format!(
        "SELECT object_key, file_name, content_type FROM files WHERE id = $1 AND owner_id = $2{}",
        dialect.lock_rows(lock)
    ))
    .bind(file_id)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?;
    let (key, name, content_type) = row.ok_or_else(|| not_found("file"))?;
    Ok(OwnedFile {
        key,
        name,
        content_type,
    })
}

/// The doctor a grant or share is for. Unknown ids are 404; patients cannot receive files.
/// The rows read (the doctor, the connection) are held until the caller commits
/// (`Dialect::lock_rows`): an account erased or a connection ended meanwhile waits for the
/// grant and then ends it with the rest, instead of missing it.
async fn target_doctor(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    owner: &str,
    doctor: &str,
    need_connection: bool,
) -> Result<(), AppError> {
    // Held against a delete (an erase, an ended connection), not against updates.
    let lock = dialect.lock_rows(RowLock::KeyShare);
    let row: Option<(String,)> =
        sqlx::query_as(&format!("SELECT role FROM users WHERE id = $1{lock}"))
            .bind(doctor)
            .fetch_optional(&mut *conn)
            .await?;
    let (role,) = row.ok_or_else(|| not_found("user"))?;
    if role != "doctor" {
        return Err(AppError::invalid("p", "files can only be given to doctors"));
    }
    if need_connection {
        let connected: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT id FROM connections WHERE patient_id = $1 AND doctor_id = $2{lock}"
        ))
        .bind(owner)
        .bind(doctor)
        .fetch_optional(&mut *conn)
        .await?;
        if connected.is_none() {
            return Err(AppError::forbidden(
                "NOT_CONNECTED",
                "permanent access goes only to doctors you are connected with",
            ));
        }
    }
    Ok(())
}

/// The caller's file and the doctor a grant or share of it is for (with their connection when
/// `need_connection`), each row held against a delete until the caller commits; the file's row
/// with `lock` (`Update` where two such transactions must not overlap).
async fn to_give(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    lock: RowLock,
    file_id: &str,
    owner: &str,
    doctor: &str,
    need_connection: bool,
) -> Result<OwnedFile, AppError> {
    // A doctor gone is looked up below (404).
    let file = owned_file(conn, dialect, lock, file_id, owner, &[doctor]).await?;
    target_doctor(conn, dialect, owner, doctor, need_connection).await?;
    Ok(file)
}

/// One ledger entry, in the caller's transaction.
#[allow(clippy::too_many_arguments)]
async fn record(
    conn: &mut sqlx::AnyConnection,
    owner: &str,
    file_id: &str,
    file_name: &str,
    actor: &str,
    action: &str,
    grant_id: Option<&str>,
    subject: Option<&str>,
    now: Millis,
    client: &ClientInfo,
) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO file_access_log (id, owner_id, file_id, file_name, actor_id, action, grant_id, \
         subject_id, at, ip, user_agent, actor_name, subject_name) VALUES ($1, $2, $3, $4, $5, $6, \
         $7, $8, $9, $10, $11, (SELECT name FROM users WHERE id = $5), \
         (SELECT name FROM users WHERE id = $8))",
    )
    .bind(crate::db::new_ordered_id())
    .bind(owner)
    .bind(file_id)
    .bind(file_name)
    .bind(actor)
    .bind(action)
    .bind(grant_id)
    .bind(subject)
    .bind(now)
    .bind(&client.ip)
    .bind(&client.user_agent)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether a grant or share is live now (local download links re-check it on every use).
pub async fn grant_is_live(
    state: &AppState,
    grant_id: &str,
    now: Millis,
) -> Result<bool, AppError> {
    let row: Option<(String,)> = sqlx::query_as(&format!(
        "SELECT g.id FROM file_grants g WHERE g.id = $1 AND {}",
        live("$2")
    ))
    .bind(grant_id)
    .bind(now)
    .fetch_optional(&state.db.pool)
    .await?;
    Ok(row.is_some())
}

/// Whether a file row still holds the object `key` (a deleted file's row, and an erased
/// account's, go before their objects do).
pub async fn file_is_kept(state: &AppState, key: &str) -> Result<bool, AppError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM files WHERE object_key = $1")
        .bind(key)
        .fetch_optional(&state.db.pool)
        .await?;
    Ok(row.is_some())
}

struct IssuedLink<'a> {
    file_id: &'a str,
    owner: &'a str,
    file: &'a OwnedFile,
    grant_id: Option<String>,
    grant_expires: Option<Millis>,
    /// The caller's name, read with the request's own read (`None`: read as the row is written).
    actor_name: Option<String>,
}

/// Issues a download link and records it as a read, in one transaction: no link without its entry.
async fn issue_link(
    state: &AppState,
    me: &AuthUser,
    client: &ClientInfo,
    link: IssuedLink<'_>,
    now: Millis,
) -> ApiResult<LinkView> {
    let expires_at = match link.grant_expires {
        Some(g) => g.min(now + LINK_TTL_MS),
        None => now + LINK_TTL_MS,
    };
    let url = state
        .storage
        .download_url(
            state,
            &LinkSpec {
                key: &link.file.key,
                file_name: &link.file.name,
                content_type: &link.file.content_type,
                grant_id: link.grant_id.as_deref(),
                now,
                expires_at,
            },
        )
        .map_err(AppError::internal)?;
    // A link is a read: it is handed out only once its ledger row is durable.
    state
        .ledger
        .append(ledger::Entry {
            owner: link.owner.to_string(),
            file_id: link.file_id.to_string(),
            file_name: link.file.name.clone(),
            actor: me.user_id.clone(),
            actor_name: link.actor_name,
            action: "read",
            grant_id: link.grant_id.clone(),
            at: now,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        })
        .await?;
    Ok(ApiOk::new(
        LinkView {
            url,
            detail: "download link issued".into(),
            expires_at: rfc3339(expires_at),
            access_id: link.grant_id,
        },
        "download link issued",
    ))
}

// ---------------------------------------------------------------------------------------------
// Routes

/// The caller's own files, 10 a page, newest first.
#[utoipa::path(get, path = "/protected/resource/userFiles", tag = "resource", security(("session" = [])), params(PageQuery),
    responses((status = 200, body = crate::api::Envelope<FilePage>), (status = 401, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
async fn user_files(
    State(state): State<AppState>,
    me: AuthUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<FilePage> {
    let page = page_number(q.q, "q")?;
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files WHERE owner_id = $1")
        .bind(&me.user_id)
        .fetch_one(&state.db.pool)
        .await?;
    let rows: Vec<FileRow> = sqlx::query_as(&format!(
        "SELECT {FILE_COLS} FROM files f WHERE f.owner_id = $1 ORDER BY f.created_at DESC, f.id DESC \
         LIMIT $2 OFFSET $3"
    ))
    .bind(&me.user_id)
    .bind(FILES_PER_PAGE)
    .bind((page - 1) * FILES_PER_PAGE)
    .fetch_all(&state.db.pool)
    .await?;
    Ok(ApiOk::new(
        FilePage {
            files: rows.into_iter().map(file_view).collect(),
            total,
            page,
            per_page: FILES_PER_PAGE,
        },
        "your files",
    ))
}

/// A 2-minute download link: for the owner (`o=t`) or under a live grant or share (`o=f`).
#[utoipa::path(get, path = "/protected/resource/fileURL/{file_id}", tag = "resource", security(("session" = [])),
    params(("file_id" = String, Path), UrlQuery),
    responses((status = 200, body = crate::api::Envelope<LinkView>), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 400, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn file_url(
    State(state): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    path: Result<ApiPath<String>, AppError>,
    query: Result<ApiQuery<UrlQuery>, AppError>,
) -> ApiResult<LinkView> {
    let asked = path.and_then(|ApiPath(file_id)| {
        let ApiQuery(q) = query?;
        Ok((file_id, link_roles(q.o.as_deref())?))
    });
    let (file_id, (as_owner, as_grantee)) = match asked {
        Ok(asked) => asked,
        // Malformed, but a caller without a live session is told that first.
        Err(e) => {
            caller.judge(&state).await?;
            return Err(e);
        }
    };
    let now = state.clock.now();
    let (me, actor_name, access) = match caller {
        // One batched read brings the session, the caller's name, the file and the caller's
        // grants on it.
        Caller::Session(token) => {
            let found = state
                .session_files
                .get((session::token_key(&token), file_id.clone(), now))
                .await?;
            let (found, rest) = found
                .map(|(session, name, access)| (session, (name, access)))
                .unzip();
            let (name, access) = rest.unzip();
            let me = session::admit(&state, found, now).await?;
            (me, name, access.flatten())
        }
        Caller::Judged(me) => {
            let access = state
                .file_access
                .get((file_id.clone(), me.user_id.clone(), now))
                .await?;
            (me, None, access)
        }
    };
    let Some(access) = access else {
        return Err(not_found("file"));
    };
    let (grant_id, grant_expires) = if as_owner && access.owner == me.user_id {
        (None, None)
    } else if let Some((id, expires)) = access.best_grant().filter(|_| as_grantee) {
        (Some(id), expires)
    } else {
        return Err(not_found("file"));
    };
    let link = IssuedLink {
        file_id: &file_id,
        owner: &access.owner,
        file: &access.file,
        grant_id,
        grant_expires,
        actor_name,
    };
    issue_link(&state, &me, &client, link, now).await
}

/// `fileURL`'s `o`: whether the caller asks as the owner, as a grantee, or either (absent).
fn link_roles(o: Option<&str>) -> Result<(bool, bool), AppError> {
    match o {
        None => Ok((true, true)),
        Some("t") => Ok((true, false)),
        Some("f") => Ok((false, true)),
        Some(_) => Err(AppError::invalid(
            "o",
            "o must be t (owner) or f (shared with me)",
        )),
    }
}

/// A file and the caller's live grants on it, as `fileURL` needs them.
#[derive(Clone, Debug)]
pub struct FileAccess {
    owner: String,
    file: OwnedFile,
    /// Live grants and shares to the caller: (id, expires_at).
    grants: Vec<(String, Option<Millis>)>,
}

impl FileAccess {
    /// The longest-lasting live access wins (a permanent grant over a 30-minute share).
    fn best_grant(&self) -> Option<(String, Option<Millis>)> {
        self.grants
            .iter()
            .max_by_key(|(id, expires)| (expires.unwrap_or(i64::MAX), id.clone()))
            .cloned()
    }

    /// Adds one row of a file joined with a live grant (or none) to what was read of the file.
    fn add_row(
        slot: &mut Option<FileAccess>,
        (owner, key, name, content_type, grant, expires): AccessJoinRow,
    ) {
        let access = slot.get_or_insert_with(|| FileAccess {
            owner,
            file: OwnedFile {
                key,
                name,
                content_type,
            },
            grants: Vec::new(),
        });
        if let Some(grant) = grant {
            access.grants.push((grant, expires));
        }
    }
}

/// A file's owner, object key, name and content type, then a live grant's id and end (or NULLs).
type AccessJoinRow = (String, String, String, String, Option<String>, Option<i64>);

/// The columns of `AccessJoinRow`, for files `f` left-joined with grants `g`.
const ACCESS_JOIN_COLS: &str =
    "f.owner_id, f.object_key, f.file_name, f.content_type, g.id, g.expires_at";

/// (file id, caller, the request's time) → the file and the caller's grants live at that time.
pub type FileAccessLookups = crate::batch::Batcher<(String, String, Millis), FileAccess>;

/// `fileURL` lookups, batched (`crate::batch`): each read starts after its request arrived, so a
/// grant revoked or a file deleted before then is never seen.
pub fn file_access_lookups(db: crate::db::Db) -> FileAccessLookups {
    type Row = (
        String,
        String,
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<i64>,
    );
    crate::batch::Batcher::reading(db, |conn, dialect, keys| {
        Box::pin(async move {
            // Both databases name a VALUES list's columns column1, column2, ….
            let values = crate::batch::placeholder_rows(dialect, keys.len(), 3);
            let sql = format!(
                    "SELECT k.column1, k.column2, k.column3, {ACCESS_JOIN_COLS} FROM (VALUES {values}) AS k \
                     JOIN files f ON f.id = k.column1 \
                     LEFT JOIN file_grants g ON g.file_id = f.id AND g.grantee_id = k.column2 AND {}",
                    live("k.column3")
                );
            let mut q = sqlx::query_as::<_, Row>(&sql);
            for (file, caller, now) in &keys {
                q = q.bind(file).bind(caller).bind(*now);
            }
            let mut found: std::collections::HashMap<_, Option<FileAccess>> =
                std::collections::HashMap::new();
            for (file, caller, now, owner, key, name, content_type, grant, expires) in
                q.fetch_all(conn).await?
            {
                let slot = found.entry((file, caller, now)).or_default();
                FileAccess::add_row(slot, (owner, key, name, content_type, grant, expires));
            }
            Ok(found
                .into_iter()
                .filter_map(|(key, access)| Some((key, access?)))
                .collect())
        })
    })
}

/// (session token hash, file id, the request's time) → the session, and the file with the
/// session's user's grants live at that time (`None` when there is no such file).
pub type SessionFileLookups = crate::batch::Batcher<
    (String, String, Millis),
    (session::SessionCore, String, Option<FileAccess>),
>;

/// `fileURL`'s read for a session cookie, batched (`crate::batch`): the session (with its user)
/// and the file with the user's live grants, in one query. Each read starts after its request
/// arrived, so a session ended, a grant revoked or a file deleted before then is never seen.
pub fn session_file_lookups(db: crate::db::Db) -> SessionFileLookups {
    use session::{SESSION_CORE_COLS, SESSION_CORE_COL_COUNT};
    crate::batch::Batcher::reading(db, |conn, dialect, keys| {
        Box::pin(async move {
            let values = crate::batch::placeholder_rows(dialect, keys.len(), 3);
            let sql = format!(
                "SELECT {SESSION_CORE_COLS}, m.name, k.column2, k.column3, {ACCESS_JOIN_COLS} \
                 FROM (VALUES {values}) AS k \
                 JOIN sessions s ON s.token_hash = k.column1 JOIN users m ON m.id = s.user_id \
                 LEFT JOIN files f ON f.id = k.column2 \
                 LEFT JOIN file_grants g ON g.file_id = f.id AND g.grantee_id = s.user_id AND {}",
                live("k.column3")
            );
            let mut q = sqlx::query(&sql);
            for (hash, file, now) in &keys {
                q = q.bind(hash).bind(file).bind(*now);
            }
            let mut found = std::collections::HashMap::new();
            for row in q.fetch_all(conn).await? {
                let (hash, session) = session::session_core(&row)?;
                let name: String = row.try_get(SESSION_CORE_COL_COUNT)?;
                let at = |i| SESSION_CORE_COL_COUNT + 1 + i;
                let key = (hash, row.try_get(at(0))?, row.try_get(at(1))?);
                let (_, _, file) = found.entry(key).or_insert_with(|| (session, name, None));
                // No file row: the session alone (the file is not there).
                let Some(owner) = row.try_get::<Option<String>, _>(at(2))? else {
                    continue;
                };
                FileAccess::add_row(
                    file,
                    (
                        owner,
                        row.try_get(at(3))?,
                        row.try_get(at(4))?,
                        row.try_get(at(5))?,
                        row.try_get(at(6))?,
                        row.try_get(at(7))?,
                    ),
                );
            }
            Ok(found.into_iter().collect())
        })
    })
}

/// file, expires_at, ended_at, owner, object key, name, content type, the caller's name
type AccessRow = (
    String,
    Option<i64>,
    Option<i64>,
    String,
    String,
    String,
    String,
    Option<String>,
);

/// A 2-minute download link under one grant or share given to the caller.
#[utoipa::path(get, path = "/protected/resource/sharedFileURL/{access_id}", tag = "resource", security(("session" = [])),
    params(("access_id" = String, Path)),
    responses((status = 200, body = crate::api::Envelope<LinkView>), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 410, body = ErrorEnvelope),
        (status = 400, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn shared_file_url(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientInfo,
    ApiPath(access_id): ApiPath<String>,
) -> ApiResult<LinkView> {
    let now = state.clock.now();
    let mut tx = state.db.pool.acquire().await?;
    let row: Option<AccessRow> = sqlx::query_as(
        "SELECT g.file_id, g.expires_at, g.ended_at, f.owner_id, f.object_key, f.file_name, f.content_type, \
         (SELECT u.name FROM users u WHERE u.id = $2) \
         FROM file_grants g JOIN files f ON f.id = g.file_id WHERE g.id = $1 AND g.grantee_id = $2",
    )
    .bind(&access_id)
    .bind(&me.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (file_id, expires, ended, owner, key, name, content_type, actor_name) =
        row.ok_or_else(|| not_found("access"))?;
    if ended.is_some() {
        return Err(AppError::gone(
            "ACCESS_REVOKED",
            "this access has been taken back",
        ));
    }
    if expires.is_some_and(|e| e <= now) {
        return Err(AppError::gone("ACCESS_EXPIRED", "this access has expired"));
    }
    let file = OwnedFile {
        key,
        name,
        content_type,
    };
    let link = IssuedLink {
        file_id: &file_id,
        owner: &owner,
        file: &file,
        grant_id: Some(access_id.clone()),
        grant_expires: expires,
        actor_name,
    };
    drop(tx); // the connection is not needed while the ledger row commits
    issue_link(&state, &me, &client, link, now).await
}

/// Permanent read access for a connected doctor, optionally ending after `e` minutes.
#[utoipa::path(post, path = "/protected/resource/createFileAccess/{file_id}", tag = "resource", security(("session" = [])),
    params(("file_id" = String, Path), GrantQuery),
    responses((status = 200, body = crate::api::Envelope<GrantView>), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 400, body = ErrorEnvelope)))]
async fn create_file_access(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientInfo,
    ApiPath(file_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<GrantQuery>,
) -> ApiResult<GrantView> {
    access_type(&q.t)?;
    if let Some(e) = q.e {
        if !(1..=MAX_GRANT_MINUTES).contains(&e) {
            return Err(AppError::invalid(
                "e",
                "e must be a number of minutes from 1 to 525600",
            ));
        }
    }
    let now = state.clock.now();
    let expires_at = q.e.map(|m| now + m * 60_000);
    let mut tx = state.db.begin().await?;
    // The file's row is held against other grants of it until the commit: a second grant made
    // at the same moment waits, then replaces this one, as it would a moment later (both
    // replacing none, the second would break the one-open-grant index).
    let file = to_give(
        &mut tx,
        state.db.dialect,
        RowLock::Update,
        &file_id,
        &me.user_id,
        &q.p,
        true,
    )
    .await?;
    // A new grant replaces the doctor's open one (e.g. to change its end time).
    sqlx::query(
        "UPDATE file_grants SET ended_at = $1, ended_reason = 'replaced' \
         WHERE file_id = $2 AND grantee_id = $3 AND kind = 'grant' AND ended_at IS NULL",
    )
    .bind(now)
    .bind(&file_id)
    .bind(&q.p)
    .execute(&mut *tx)
    .await?;
    let id = crate::db::new_id();
    sqlx::query(
        "INSERT INTO file_grants (id, file_id, owner_id, grantee_id, kind, access, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, 'grant', 'r', $5, $6)",
    )
    .bind(&id)
    .bind(&file_id)
    .bind(&me.user_id)
    .bind(&q.p)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    record(
        &mut tx,
        &me.user_id,
        &file_id,
        &file.name,
        &me.user_id,
        "grant",
        Some(&id),
        Some(&q.p),
        now,
        &client,
    )
    .await?;
    raise(
        &mut tx,
        &state,
        &q.p,
        Kind::FileAccessGranted,
        &format!("You were given access to {}", file.name),
        json!({"file_id": file_id, "access_id": id, "patient_id": me.user_id,
               "expires_at": expires_at.map(rfc3339)}),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiOk::new(
        GrantView {
            detail: "access granted".into(),
            access_id: id,
            expires_at: expires_at.map(rfc3339),
        },
        "access granted",
    ))
}

/// Takes back every live grant and share the doctor holds on this file, at once.
#[utoipa::path(post, path = "/protected/resource/revokeFileAccess/{file_id}", tag = "resource", security(("session" = [])),
    params(("file_id" = String, Path), PersonQuery),
    responses((status = 200, body = crate::api::Envelope<Detail>), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 400, body = ErrorEnvelope)))]
async fn revoke_file_access(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientInfo,
    ApiPath(file_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PersonQuery>,
) -> ApiResult<Detail> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let file = owned_file(
        &mut tx,
        state.db.dialect,
        RowLock::KeyShare,
        &file_id,
        &me.user_id,
        &[&q.p],
    )
    .await?;
    let ended: Vec<(String,)> = sqlx::query_as(&format!(
        "UPDATE file_grants SET ended_at = $1, ended_reason = 'revoked' \
         WHERE file_id = $2 AND grantee_id = $3 AND {} RETURNING id",
        live("$1").replace("g.", "")
    ))
    .bind(now)
    .bind(&file_id)
    .bind(&q.p)
    .fetch_all(&mut *tx)
    .await?;
    if ended.is_empty() {
        return Err(not_found("access"));
    }
    for (id,) in &ended {
        record(
            &mut tx,
            &me.user_id,
            &file_id,
            &file.name,
            &me.user_id,
            "revoke",
            Some(id),
            Some(&q.p),
            now,
            &client,
        )
        .await?;
    }
    raise(
        &mut tx,
        &state,
        &q.p,
        Kind::FileAccessRevoked,
        &format!("Your access to {} was taken back", file.name),
        json!({"file_id": file_id, "patient_id": me.user_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiOk::new(
        Detail {
            detail: "access revoked".into(),
        },
        "access revoked",
    ))
}

/// Shares a file with a doctor for 30 minutes (no connection needed: a second opinion, a walk-in).
#[utoipa::path(post, path = "/protected/resource/tempFileShare/{file_id}", tag = "resource", security(("session" = [])),
    params(("file_id" = String, Path), ShareQuery),
    responses((status = 200, body = crate::api::Envelope<GrantView>), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
async fn temp_file_share(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientInfo,
    ApiPath(file_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShareQuery>,
) -> ApiResult<GrantView> {
    access_type(&q.t)?;
    let now = state.clock.now();
    let expires_at = now + SHARE_TTL_MS;
    // Counted before the transaction (the counter is a write of its own), and only for a share
    // of the caller's own file to an unconnected doctor: anything else is refused below, or not
    // counted.
    let unconnected: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT u.id, c.id FROM users u \
         JOIN files f ON f.id = $3 AND f.owner_id = $1 \
         LEFT JOIN connections c ON c.patient_id = $1 AND c.doctor_id = u.id \
         WHERE u.id = $2 AND u.role = 'doctor'",
    )
    .bind(&me.user_id)
    .bind(&q.p)
    .bind(&file_id)
    .fetch_optional(&state.db.pool)
    .await?;
    if let Some((_, None)) = unconnected {
        crate::ratelimit::hit(
            &state.db,
            &format!("unconnected-share:{}", me.user_id),
            UNCONNECTED_SHARES_PER_HOUR,
            3600,
            now,
        )
        .await?;
    }
    let mut tx = state.db.begin().await?;
    let file = to_give(
        &mut tx,
        state.db.dialect,
        RowLock::KeyShare,
        &file_id,
        &me.user_id,
        &q.p,
        false,
    )
    .await?;
    let id = crate::db::new_id();
    sqlx::query(
        "INSERT INTO file_grants (id, file_id, owner_id, grantee_id, kind, access, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, 'share', 'r', $5, $6)",
    )
    .bind(&id)
    .bind(&file_id)
    .bind(&me.user_id)
    .bind(&q.p)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    record(
        &mut tx,
        &me.user_id,
        &file_id,
        &file.name,
        &me.user_id,
        "share",
        Some(&id),
        Some(&q.p),
        now,
        &client,
    )
    .await?;
    raise(
        &mut tx,
        &state,
        &q.p,
        Kind::FileShared,
        &format!("{} was shared with you for 30 minutes", file.name),
        json!({"file_id": file_id, "access_id": id, "patient_id": me.user_id,
               "expires_at": rfc3339(expires_at)}),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiOk::new(
        GrantView {
            detail: "shared for 30 minutes".into(),
            access_id: id,
            expires_at: Some(rfc3339(expires_at)),
        },
        "shared for 30 minutes",
    ))
}

type SharedRow = (
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

async fn live_shared(
    state: &AppState,
    doctor: &str,
    patient: Option<&str>,
) -> Result<Vec<SharedFileView>, AppError> {
    let now = state.clock.now();
    let rows: Vec<SharedRow> = sqlx::query_as(&format!(
        "SELECT g.id, g.kind, g.created_at, g.expires_at, u.id, u.name, {FILE_COLS} \
         FROM file_grants g JOIN files f ON f.id = g.file_id JOIN users u ON u.id = f.owner_id \
         WHERE g.grantee_id = $1 AND ($2 = '' OR f.owner_id = $2) AND {} \
         ORDER BY g.created_at DESC, g.id DESC",
        live("$3")
    ))
    .bind(doctor)
    .bind(patient.unwrap_or(""))
    .bind(now)
    .fetch_all(&state.db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SharedFileView {
            access_id: r.0,
            access_kind: r.1,
            granted_at: rfc3339(r.2),
            expires_at: r.3.map(rfc3339),
            patient: PersonView { id: r.4, name: r.5 },
            file: file_view((r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13, r.14)),
        })
        .collect())
}

/// A doctor's view of what one patient shares with them right now.
#[utoipa::path(get, path = "/protected/resource/patientFileData/{patient_id}", tag = "resource", security(("session" = [])),
    params(("patient_id" = String, Path)),
    responses((status = 200, body = crate::api::Envelope<SharedFiles>), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 400, body = ErrorEnvelope)))]
async fn patient_file_data(
    State(state): State<AppState>,
    me: AuthUser,
    ApiPath(patient_id): ApiPath<String>,
) -> ApiResult<SharedFiles> {
    me.require_role(Role::Doctor)?;
    let files = live_shared(&state, &me.user_id, Some(&patient_id)).await?;
    Ok(ApiOk::new(
        SharedFiles { files },
        "files shared with you by this patient",
    ))
}

/// Everything shared with the calling doctor right now, with the patient and the end time.
#[utoipa::path(get, path = "/protected/resource/sharedWithMe", tag = "resource", security(("session" = [])),
    responses((status = 200, body = crate::api::Envelope<SharedFiles>), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
async fn shared_with_me(State(state): State<AppState>, me: AuthUser) -> ApiResult<SharedFiles> {
    me.require_role(Role::Doctor)?;
    let files = live_shared(&state, &me.user_id, None).await?;
    Ok(ApiOk::new(SharedFiles { files }, "files shared with you"))
}

/// Deletes one of the caller's files: its grants and shares end with it.
#[utoipa::path(post, path = "/protected/resource/deleteFile/{file_id}", tag = "resource", security(("session" = [])),
    params(("file_id" = String, Path)),
    responses((status = 200, body = crate::api::Envelope<Detail>), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 400, body = ErrorEnvelope)))]
async fn delete_file(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientInfo,
    ApiPath(file_id): ApiPath<String>,
) -> ApiResult<Detail> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    // Everyone the delete writes about: each holder of a grant gets a ledger row and a notice.
    let holders: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT grantee_id FROM file_grants WHERE file_id = $1 AND owner_id = $2",
    )
    .bind(&file_id)
    .bind(&me.user_id)
    .fetch_all(&mut *tx)
    .await?;
    let holder_ids: Vec<&str> = holders.iter().map(|(id,)| id.as_str()).collect();
    let file = owned_file(
        &mut tx,
        state.db.dialect,
        RowLock::Update,
        &file_id,
        &me.user_id,
        &holder_ids,
    )
    .await?;
    let holders: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT DISTINCT g.grantee_id FROM file_grants g WHERE g.file_id = $1 AND {}",
        live("$2")
    ))
    .bind(&file_id)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    record(
        &mut tx,
        &me.user_id,
        &file_id,
        &file.name,
        &me.user_id,
        "delete",
        None,
        None,
        now,
        &client,
    )
    .await?;
    sqlx::query("DELETE FROM file_grants WHERE file_id = $1")
        .bind(&file_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM files WHERE id = $1")
        .bind(&file_id)
        .execute(&mut *tx)
        .await?;
    // Fixed order of notification-head locks (see users::profile::erase_account).
    let mut holders = holders;
    holders.sort();
    holders.dedup();
    for (doctor,) in &holders {
        raise(
            &mut tx,
            &state,
            doctor,
            Kind::FileAccessRevoked,
            &format!("{} was deleted by its owner", file.name),
            json!({"file_id": file_id, "patient_id": me.user_id}),
        )
        .await?;
    }
    tx.commit().await?;
    // The row is gone first, so no row ever points at a missing object; if this delete fails the
    // object is an orphan and the sweep removes it.
    if let Err(e) = state.storage.delete(&file.key).await {
        tracing::warn!(error = %e, "deleting an object failed; the sweep will retry");
    }
    Ok(ApiOk::new(
        Detail {
            detail: "file deleted".into(),
        },
        "file deleted",
    ))
}

type LogRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    String,
    String,
);

/// The owner's audit trail: every link issued, grant, revoke, share and delete on their files.
#[utoipa::path(get, path = "/protected/resource/accessLog", tag = "resource", security(("session" = [])), params(LogQuery),
    responses((status = 200, body = crate::api::Envelope<LogPage>), (status = 401, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn access_log(
    State(state): State<AppState>,
    me: AuthUser,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<LogPage> {
    let page = page_number(q.page, "page")?;
    // Links issued a moment ago may still wait in the ledger's journal.
    state.ledger.flush().await?;
    let (total,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM file_access_log WHERE owner_id = $1")
            .bind(&me.user_id)
            .fetch_one(&state.db.pool)
            .await?;
    let rows: Vec<LogRow> = sqlx::query_as(
        "SELECT l.id, l.action, l.actor_id, COALESCE(l.actor_name, a.name), l.file_id, l.file_name, \
         l.grant_id, l.subject_id, COALESCE(l.subject_name, s.name), l.at, l.ip, l.user_agent \
         FROM file_access_log l \
         LEFT JOIN users a ON a.id = l.actor_id LEFT JOIN users s ON s.id = l.subject_id \
         WHERE l.owner_id = $1 ORDER BY l.at DESC, l.id DESC LIMIT $2 OFFSET $3",
    )
    .bind(&me.user_id)
    .bind(LOG_PER_PAGE)
    .bind((page - 1) * LOG_PER_PAGE)
    .fetch_all(&state.db.pool)
    .await?;
    let gone = || "deleted account".to_string();
    let entries = rows
        .into_iter()
        .map(|r| LogEntry {
            id: r.0,
            action: r.1,
            actor: PersonView {
                id: r.2,
                name: r.3.unwrap_or_else(gone),
            },
            file_id: r.4,
            file_name: r.5,
            access_id: r.6,
            subject: r.7.map(|id| PersonView {
                id,
                name: r.8.unwrap_or_else(gone),
            }),
            at: rfc3339(r.9),
            ip: r.10,
            user_agent: r.11,
        })
        .collect();
    Ok(ApiOk::new(
        LogPage {
            entries,
            total,
            page,
            per_page: LOG_PER_PAGE,
        },
        "access log",
    ))
}

type GivenRow = (
    String,
    String,
    Millis,
    Option<Millis>,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
);

/// The access the caller has given and that is live now: every grant and share on their files
/// that has not been revoked, replaced or run out, newest first, 50 a page (all files, or the
/// one named by `f`). What the owner can take back with `revokeFileAccess`.
#[utoipa::path(get, path = "/protected/resource/accessGiven", tag = "resource", security(("session" = [])), params(GivenQuery),
    responses((status = 200, body = crate::api::Envelope<GivenAccessPage>), (status = 401, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
async fn access_given(
    State(state): State<AppState>,
    me: AuthUser,
    ApiQuery(q): ApiQuery<GivenQuery>,
) -> ApiResult<GivenAccessPage> {
    let page = page_number(q.page, "page")?;
    let now = state.clock.now();
    let file = q.f.unwrap_or_default();
    if !file.is_empty() {
        let mine: Option<(String,)> =
            sqlx::query_as("SELECT id FROM files WHERE id = $1 AND owner_id = $2")
                .bind(&file)
                .bind(&me.user_id)
                .fetch_optional(&state.db.pool)
                .await?;
        if mine.is_none() {
            return Err(not_found("file"));
        }
    }
    let given = format!(
        "FROM file_grants g JOIN files f ON f.id = g.file_id JOIN users u ON u.id = g.grantee_id \
         WHERE g.owner_id = $1 AND ($2 = '' OR g.file_id = $2) AND {}",
        live("$3")
    );
    let (total,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) {given}"))
        .bind(&me.user_id)
        .bind(&file)
        .bind(now)
        .fetch_one(&state.db.pool)
        .await?;
    let rows: Vec<GivenRow> = sqlx::query_as(&format!(
        "SELECT g.id, g.kind, g.created_at, g.expires_at, f.id, f.file_name, {} {given} \
         ORDER BY g.created_at DESC, g.id DESC LIMIT $4 OFFSET $5",
        crate::users::PEER_COLS
    ))
    .bind(&me.user_id)
    .bind(&file)
    .bind(now)
    .bind(GIVEN_PER_PAGE)
    .bind((page - 1) * GIVEN_PER_PAGE)
    .fetch_all(&state.db.pool)
    .await?;
    let access = rows
        .into_iter()
        .map(|r| GivenAccessView {
            access_id: r.0,
            access_kind: r.1,
            granted_at: rfc3339(r.2),
            expires_at: r.3.map(rfc3339),
            file: FileRef { id: r.4, name: r.5 },
            doctor: crate::users::PeerView::from_row((r.6, r.7, r.8, r.9, r.10)),
        })
        .collect();
    Ok(ApiOk::new(
        GivenAccessPage {
            access,
            total,
            page,
            per_page: GIVEN_PER_PAGE,
        },
        "access you have given",
    ))
}

// ---------------------------------------------------------------------------------------------
// Hooks other features call, and housekeeping

/// Ends every grant and live share `doctor_id` holds on `patient_id`'s files (on every
/// patient's, with `None`), inside the caller's transaction: called when a connection ends (by
/// `actor`, either side) and when the doctor's account is erased. The rows go: the owners'
/// ledgers keep their history, with an `end` row for each one that was live.
pub async fn end_access(
    tx: &mut sqlx::AnyConnection,
    patient_id: Option<&str>,
    doctor_id: &str,
    actor: &str,
    now: Millis,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let patient = patient_id.unwrap_or("");
    let ended: Vec<(String, String, String, String)> = sqlx::query_as(&format!(
        "SELECT g.id, g.owner_id, g.file_id, f.file_name FROM file_grants g \
         JOIN files f ON f.id = g.file_id \
         WHERE ($1 = '' OR g.owner_id = $1) AND g.grantee_id = $2 AND {} \
         ORDER BY g.created_at, g.id",
        live("$3")
    ))
    .bind(patient)
    .bind(doctor_id)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for (grant_id, owner, file_id, file_name) in &ended {
        record(
            tx,
            owner,
            file_id,
            file_name,
            actor,
            "end",
            Some(grant_id),
            Some(doctor_id),
            now,
            client,
        )
        .await?;
    }
    sqlx::query("DELETE FROM file_grants WHERE ($1 = '' OR owner_id = $1) AND grantee_id = $2")
        .bind(patient)
        .bind(doctor_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Removes the rows of everything `user_id` owns or was given, inside the caller's transaction
/// (account deletion), and returns the object keys the purge job must delete.
pub async fn forget_user(
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<Vec<String>, AppError> {
    let keys: Vec<(String,)> = sqlx::query_as("SELECT object_key FROM files WHERE owner_id = $1")
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM file_grants WHERE owner_id = $1 OR grantee_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM files WHERE owner_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    Ok(keys.into_iter().map(|(k,)| k).collect())
}

/// Removes `user_id`'s access ledger, inside the caller's transaction and *after* it deleted
/// the user's row. A link whose read came before the erase may still be writing its ledger row;
/// every ledger insert keeps only rows whose owner exists, holding that user's row while it
/// writes (`ledger::insert_chunk`). So the row either lands before the user's delete goes
/// through (which waits for it) and is removed here, or finds the user gone and is dropped.
pub async fn forget_ledger(tx: &mut sqlx::AnyConnection, user_id: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM file_access_log WHERE owner_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Deletes stored objects; idempotent (an object already gone is fine). Called by the purge job,
/// which retries until this succeeds.
pub async fn delete_objects(state: &AppState, keys: &[String]) -> anyhow::Result<()> {
    for key in keys {
        state.storage.delete(key).await?;
    }
    Ok(())
}

/// Removes objects no row points at once they are an hour old (a crash between writing an object
/// and its row, or a failed delete), and abandoned temporary uploads.
pub async fn sweep(state: &AppState) -> anyhow::Result<usize> {
    let cutoff = state.clock.now() - ORPHAN_AGE_MS;
    let mut removed = 0;
    let old = state.storage.list_older_than("files", cutoff).await?;
    // One query per 256 keys, not one per stored object.
    for chunk in old.chunks(256) {
        let sql = format!(
            "SELECT object_key FROM files WHERE object_key IN ({})",
            crate::batch::placeholders(state.db.dialect, 1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (String,)>(&sql);
        for key in chunk {
            q = q.bind(key);
        }
        let known: std::collections::HashSet<String> = q
            .fetch_all(&state.db.pool)
            .await?
            .into_iter()
            .map(|(k,)| k)
            .collect();
        for key in chunk.iter().filter(|k| !known.contains(*k)) {
            state.storage.delete(key).await?;
            removed += 1;
        }
    }
    if let Ok(mut dir) = tokio::fs::read_dir(state.storage.tmp_dir()).await {
        while let Ok(Some(entry)) = dir.next_entry().await {
            let old = entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|d| (d.as_millis() as i64) < cutoff);
            if old {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
    Ok(removed)
}
