//! Streaming upload: the file field goes chunk by chunk to a temporary file while it is counted,
//! hashed and sniffed; past the limit the request is refused at once (413). Only a complete,
//! recognised file enters the store, and only then does its row get written.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use crate::api::{ApiOk, ApiResult};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::clock::rfc3339;
use crate::error::{AppError, ErrorEnvelope};

const MAX_TAGS: usize = 10;
const MAX_TAG_CHARS: usize = 32;
const MAX_TEXT_FIELD: usize = 1024;
const MAX_FIELDS: usize = 40;
const MAX_NAME_CHARS: usize = 200;

/// A stored file, as its owner (and whoever it is shared with) sees it.
#[derive(Serialize, ToSchema)]
pub struct FileView {
    pub id: String,
    /// The name it was uploaded with (shown and used for downloads; never part of the storage key).
    pub file_name: String,
    /// Decided from the bytes: application/pdf, image/png, image/jpeg, image/webp, application/dicom.
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    pub tags: Vec<String>,
    /// report | prescription | scan | other
    pub report_type: Option<String>,
    /// YYYY-MM-DD
    pub report_date: Option<String>,
    pub created_at: String,
}

/// The multipart form `uploadFile` takes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The document: PDF, PNG, JPEG, WebP or DICOM, at most 5 MiB (5,242,880 bytes; the server's
    /// `AURAVITA_MAX_UPLOAD_BYTES`).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Up to 10 tags of up to 32 characters; repeat the field (`tags[]` or `tags`).
    #[schema(rename = "tags[]")]
    pub tags: Option<Vec<String>>,
    /// report | prescription | scan | other
    pub report_type: Option<String>,
    /// YYYY-MM-DD
    pub report_date: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    pub detail: String,
    pub file: FileView,
}

/// Removes the temporary file unless it was handed to the store.
struct TmpGuard(Option<std::path::PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn too_large(max: u64) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "FILE_TOO_LARGE",
        format!("files can be at most {max} bytes"),
    )
    .with_details(serde_json::json!({"field": "file", "max_bytes": max}))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max: u64) -> AppError {
    if let Some(timeout) = crate::stall::timed_out(&e) {
        timeout
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(max)
    } else {
        AppError::bad_request("BAD_MULTIPART", "the multipart body could not be read")
    }
}

/// Sniffs the type from the first bytes (DICOM needs 132): the content type, and the file name
/// extensions that type goes by (the first is added to a name that has none of them).
fn sniff(head: &[u8]) -> Option<(&'static str, &'static [&'static str])> {
    if head.starts_with(b"%PDF-") {
        Some(("application/pdf", &["pdf"]))
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", &["png"]))
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", &["jpg", "jpeg", "jpe", "jfif"]))
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(("image/webp", &["webp"]))
    } else if head.len() >= 132 && &head[128..132] == b"DICM" {
        Some(("application/dicom", &["dcm", "dicom"]))
    } else {
        None
    }
}

/// A display name: no folders, no control or bidirectional characters, bounded length, and
/// ending in one of the extensions of the type read from the bytes (`exts`), the first added
/// when it does not, so a PDF sent as `a.html` is saved by whoever downloads it as
/// `a.html.pdf`, and opened as what it is.
fn clean_name(raw: Option<&str>, exts: &[&str]) -> String {
    let ext = exts[0];
    let base = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = base
        .chars()
        .filter(|c| !crate::text::breaks_or_reorders(*c))
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." {
        return format!("document.{ext}");
    }
    let has_ext = name
        .rsplit_once('.')
        .is_some_and(|(_, e)| exts.iter().any(|x| e.eq_ignore_ascii_case(x)));
    if has_ext {
        return name.to_string();
    }
    let room = MAX_NAME_CHARS - ext.len() - 1;
    let base: String = name.chars().take(room).collect();
    format!("{}.{ext}", base.trim_end())
}

/// Uploads a medical document (patients only).
#[utoipa::path(post, path = "/protected/resource/uploadFile", tag = "resource", security(("session" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = crate::api::Envelope<Uploaded>), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 408, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub async fn upload_file(
    State(state): State<AppState>,
    me: AuthUser,
    req: Request,
) -> ApiResult<Uploaded> {
    me.require_role(Role::Patient)?;
    let max = state.config.limits.max_upload_bytes;
    let is_multipart =
        crate::api::media_type(req.headers()).is_some_and(|ct| ct == "multipart/form-data");
    if !is_multipart {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the file as multipart/form-data",
        ));
    }
    // The whole body is capped too (the file plus a little room for the other fields).
    let req = req.map(|b| Body::new(http_body_util::Limited::new(b, (max + 256 * 1024) as usize)));
    let mut form = Multipart::from_request(req, &state).await.map_err(|_| {
        AppError::bad_request("BAD_MULTIPART", "the multipart body could not be read")
    })?;

    let mut tags: Vec<String> = Vec::new();
    let mut report_type: Option<String> = None;
    let mut report_date: Option<String> = None;
    let mut stored: Option<(TmpGuard, u64, String, &'static str, String)> = None;
    let mut fields = 0;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max))?
    {
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(AppError::bad_request(
                "BAD_MULTIPART",
                "too many form fields",
            ));
        }
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if stored.is_some() {
                return Err(AppError::invalid("file", "send one file per upload"));
            }
            let raw_name = field.file_name().map(str::to_string);
            let path = state.storage.tmp_dir().join(crate::db::new_id());
            let guard = TmpGuard(Some(path.clone()));
            // The upload's folder failing (full, read-only) is the server's storage, not the
            // client: 503, as when the object store fails.
            let spool = |e: std::io::Error| AppError::unavailable("storage", e);
            let mut out = tokio::fs::File::create(&path).await.map_err(spool)?;
            let mut hasher = Sha256::new();
            let mut head: Vec<u8> = Vec::with_capacity(132);
            let mut size: u64 = 0;
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
                size += chunk.len() as u64;
                if size > max {
                    return Err(too_large(max));
                }
                if head.len() < 132 {
                    let take = (132 - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(spool)?;
            }
            let Some((ctype, exts)) = sniff(&head) else {
                return Err(AppError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_FILE_TYPE",
                    "only PDF, PNG, JPEG, WebP and DICOM files are accepted",
                )
                .with_details(serde_json::json!({"field": "file"})));
            };
            out.flush().await.map_err(spool)?;
            out.sync_all().await.map_err(spool)?;
            drop(out);
            let file_name = clean_name(raw_name.as_deref(), exts);
            stored = Some((
                guard,
                size,
                hex::encode(hasher.finalize()),
                ctype,
                file_name,
            ));
        } else {
            // Errors name a field as the contract does (`tags`, whichever way it was sent).
            let field_name = if name == "tags[]" {
                "tags"
            } else {
                name.as_str()
            };
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
                text.extend_from_slice(&chunk);
                if text.len() > MAX_TEXT_FIELD {
                    return Err(AppError::invalid(
                        field_name,
                        format!("{field_name} is too long"),
                    ));
                }
            }
            let text = String::from_utf8(text).map_err(|_| {
                AppError::invalid(field_name, format!("{field_name} must be UTF-8 text"))
            })?;
            match name.as_str() {
                "tags[]" | "tags" => {
                    let tag = text.trim().to_string();
                    if tag.is_empty() {
                        continue;
                    }
                    if tag.chars().any(crate::text::breaks_or_reorders) {
                        return Err(AppError::invalid(
                            "tags",
                            "a tag cannot contain control characters or ones that change the \
                             direction of text",
                        ));
                    }
                    if tag.chars().count() > MAX_TAG_CHARS {
                        return Err(AppError::invalid(
                            "tags",
                            "a tag can have at most 32 characters",
                        ));
                    }
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                    if tags.len() > MAX_TAGS {
                        return Err(AppError::invalid("tags", "at most 10 tags"));
                    }
                }
                "report_type" => {
                    let t = text.trim();
                    if !t.is_empty() {
                        if !matches!(t, "report" | "prescription" | "scan" | "other") {
                            return Err(AppError::invalid(
                                "report_type",
                                "report_type must be report, prescription, scan or other",
                            ));
                        }
                        report_type = Some(t.to_string());
                    }
                }
                "report_date" => {
                    let d = text.trim();
                    if !d.is_empty() {
                        // Exactly YYYY-MM-DD (chrono alone also takes signs, spaces and
                        // one-digit months), and a real date.
                        let shaped = d.len() == 10
                            && d.bytes().enumerate().all(|(i, b)| match i {
                                4 | 7 => b == b'-',
                                _ => b.is_ascii_digit(),
                            });
                        let ok = shaped && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok();
                        if !ok {
                            return Err(AppError::invalid(
                                "report_date",
                                "report_date must be YYYY-MM-DD",
                            ));
                        }
                        report_date = Some(d.to_string());
                    }
                }
                // Unknown fields are ignored, as forms often carry extras.
                _ => {}
            }
        }
    }
    let Some((mut guard, size, sha256, ctype, file_name)) = stored else {
        return Err(AppError::invalid(
            "file",
            "attach the document as the field file",
        ));
    };

    // The object first, then its row: a crash in between leaves an orphan object (swept), never
    // a row without its object.
    let id = crate::db::new_id();
    let key = format!("files/{}", crate::db::new_id());
    let tmp = guard.0.clone().expect("temporary file");
    state
        .storage
        .put_file(&key, &tmp, size)
        .await
        .map_err(|e| AppError::unavailable("object storage", e))?;
    guard.0 = None;
    let now = state.clock.now();
    let tags_json = serde_json::to_string(&tags).expect("strings serialise");
    let inserted = sqlx::query(
        "INSERT INTO files (id, owner_id, object_key, file_name, content_type, size_bytes, sha256, tags, \
         report_type, report_date, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&id)
    .bind(&me.user_id)
    .bind(&key)
    .bind(&file_name)
    .bind(ctype)
    .bind(size as i64)
    .bind(&sha256)
    .bind(&tags_json)
    .bind(&report_type)
    .bind(&report_date)
    .bind(now)
    .execute(&state.db.pool)
    .await;
    if let Err(e) = inserted {
        let _ = state.storage.delete(&key).await;
        return Err(e.into());
    }
    Ok(ApiOk::new(
        Uploaded {
            detail: "file uploaded".into(),
            file: FileView {
                id,
                file_name,
                content_type: ctype.into(),
                size_bytes: size as i64,
                sha256,
                tags,
                report_type,
                report_date,
                created_at: rfc3339(now),
            },
        },
        "file uploaded",
    )
    .created())
}
