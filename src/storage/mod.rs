//! Object storage behind one interface: a local folder (the default) or any S3-compatible store.
//! It owns writing finished uploads into the store, deleting and listing objects, readiness, and
//! download links: the server's own HMAC-signed URLs for the local folder, SigV4 presigned GETs for S3.

mod s3;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::app::AppState;
use crate::clock::Millis;
use crate::config::Config;
use crate::error::AppError;

pub use s3::S3Presigner;

pub struct Storage {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    /// Where uploads are streamed before they enter the store (always on local disk).
    tmp_dir: PathBuf,
}

enum Backend {
    /// `links`: the public URL of `/objects/`, joined once; a link appends its key and query.
    Local {
        root: PathBuf,
        links: String,
    },
    S3(S3Presigner),
}

/// What a download link must say about the object it opens.
pub struct LinkSpec<'a> {
    pub key: &'a str,
    pub file_name: &'a str,
    pub content_type: &'a str,
    /// The grant or share the link was issued under (`None` for the owner): a local link
    /// stops working the moment that grant ends.
    pub grant_id: Option<&'a str>,
    pub now: Millis,
    pub expires_at: Millis,
}

impl Storage {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Storage> {
        let url = cfg.storage_url();
        let tmp_dir = cfg.data_dir.join("tmp").join("uploads");
        std::fs::create_dir_all(&tmp_dir)
            .with_context(|| format!("creating {}", tmp_dir.display()))?;
        if let Some(rest) = url.strip_prefix("file://") {
            let root = PathBuf::from(rest);
            std::fs::create_dir_all(&root)
                .with_context(|| format!("creating {}", root.display()))?;
            let root = std::fs::canonicalize(&root)?;
            let store = LocalFileSystem::new_with_prefix(&root)?;
            let links = cfg.public_url.join("/objects/")?.to_string();
            Ok(Storage {
                store: Arc::new(store),
                backend: Backend::Local { root, links },
                tmp_dir,
            })
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let bucket = rest.trim_end_matches('/');
            anyhow::ensure!(
                !bucket.is_empty() && !bucket.contains('/'),
                "AURAVITA_STORAGE_URL must be s3://<bucket>"
            );
            let presigner = S3Presigner::from_config(cfg, bucket)?;
            let store = presigner.object_store()?;
            Ok(Storage {
                store: Arc::new(store),
                backend: Backend::S3(presigner),
                tmp_dir,
            })
        } else {
            anyhow::bail!("AURAVITA_STORAGE_URL must start with file:// or s3://")
        }
    }

    pub fn tmp_dir(&self) -> &FsPath {
        &self.tmp_dir
    }

    pub fn is_s3(&self) -> bool {
        matches!(self.backend, Backend::S3(_))
    }

    /// The S3 presigner, when the store is S3 (tests sign links with a chosen time through it).
    pub fn s3(&self) -> Option<&S3Presigner> {
        match &self.backend {
            Backend::S3(p) => Some(p),
            Backend::Local { .. } => None,
        }
    }

    /// Moves a finished, fsynced temporary file into the store under `key`. Never holds the file
    /// in memory: a rename (or copy) locally, a streamed PUT to S3.
    pub async fn put_file(&self, key: &str, tmp: &FsPath, size: u64) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Local { root, .. } => {
                let dest = root.join(key);
                if let Some(parent) = dest.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                if tokio::fs::rename(tmp, &dest).await.is_err() {
                    // Another filesystem: copy, then drop the temporary file.
                    tokio::fs::copy(tmp, &dest).await?;
                    tokio::fs::File::open(&dest).await?.sync_all().await?;
                    let _ = tokio::fs::remove_file(tmp).await;
                }
                Ok(())
            }
            Backend::S3(s3) => {
                s3.put_file(key, tmp, size).await?;
                let _ = tokio::fs::remove_file(tmp).await;
                Ok(())
            }
        }
    }

    /// Deletes an object; one already gone counts as deleted.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Keys under `prefix` last modified before `before` (Unix ms).
    pub async fn list_older_than(
        &self,
        prefix: &str,
        before: Millis,
    ) -> anyhow::Result<Vec<String>> {
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await?;
        Ok(metas
            .into_iter()
            .filter(|m| m.last_modified.timestamp_millis() < before)
            .map(|m| m.location.to_string())
            .collect())
    }

    /// Readiness: the store answers a request about one object (one that does not exist: "not
    /// found" is an answer). A listing would read the whole store on every probe.
    pub async fn ping(&self) -> anyhow::Result<()> {
        match self.store.head(&Path::from("ready-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A download link for one object, valid until `spec.expires_at`.
    pub fn download_url(&self, state: &AppState, spec: &LinkSpec<'_>) -> anyhow::Result<String> {
        match &self.backend {
            Backend::Local { links, .. } => {
                let grant = spec.grant_id.unwrap_or("");
                let exp = spec.expires_at.to_string();
                let sig = link_sig(
                    state,
                    spec.key,
                    &exp,
                    grant,
                    spec.file_name,
                    spec.content_type,
                );
                Ok(local_link(links, spec, &exp, grant, &sig))
            }
            Backend::S3(s3) => {
                let secs = ((spec.expires_at - spec.now) / 1000).max(1) as u64;
                // The lifetime comes from the server's clock (grant ends, tests moving time); the
                // signing instant must be real time, as the S3 server checks it against its own.
                let signed_at = chrono::Utc::now().timestamp_millis();
                let disposition = content_disposition(spec.file_name);
                Ok(s3.presign_get(spec.key, &disposition, spec.content_type, signed_at, secs))
            }
        }
    }
}

/// What a URL's path percent-encodes (the `url` crate's path set): controls, space, `"`, `#`,
/// `<`, `>`, `?`, `` ` ``, `{`, `}`.
const PATH: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// A local download link: `links` (the public `/objects/` URL) then the key and the signed query,
/// written straight into one string (as `Url::join` and `query_pairs_mut` would write it, without
/// parsing the URL again for every link). Unlike `Url::join` it folds no `.`/`..` segments: keys
/// are the server's own (`files/<uuid>`), never a caller's.
fn local_link(links: &str, spec: &LinkSpec<'_>, exp: &str, grant: &str, sig: &str) -> String {
    let mut url = String::with_capacity(links.len() + spec.key.len() + 160);
    url.push_str(links);
    url.extend(utf8_percent_encode(spec.key, PATH));
    url.push('?');
    let start = url.len();
    form_urlencoded::Serializer::for_suffix(url, start)
        .append_pair("exp", exp)
        .append_pair("g", grant)
        .append_pair("n", spec.file_name)
        .append_pair("t", spec.content_type)
        .append_pair("sig", sig)
        .finish()
}

fn link_sig(
    state: &AppState,
    key: &str,
    exp: &str,
    grant: &str,
    name: &str,
    ctype: &str,
) -> String {
    state.keys.link_mac(&[
        b"download",
        key.as_bytes(),
        exp.as_bytes(),
        grant.as_bytes(),
        name.as_bytes(),
        ctype.as_bytes(),
    ])
}

/// RFC 6266 `attachment` with an ASCII fallback name and the exact name as RFC 8187 UTF-8.
pub fn content_disposition(name: &str) -> String {
    const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let fallback: String = name
        .chars()
        .map(|c| {
            // '%' too: some clients decode `%xx` in the plain parameter (RFC 6266, appendix D).
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

/// The route that serves local download links (S3 links go straight to the store).
pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/objects/{*key}", axum::routing::get(serve_local))
}

#[derive(Deserialize)]
struct LinkQuery {
    exp: String,
    #[serde(default)]
    g: String,
    n: String,
    t: String,
    sig: String,
}

async fn serve_local(
    State(state): State<AppState>,
    axum::extract::Path(key): axum::extract::Path<String>,
    q: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let refused = || AppError::forbidden("LINK_INVALID", "this download link is not valid");
    let Ok(Query(q)) = q else {
        return Err(refused());
    };
    // The signature binds the exact key, expiry, grant, name and type: editing any of them breaks it.
    let expected = link_sig(&state, &key, &q.exp, &q.g, &q.n, &q.t);
    use subtle::ConstantTimeEq;
    if !bool::from(expected.as_bytes().ct_eq(q.sig.as_bytes())) {
        return Err(refused());
    }
    let exp: Millis = q.exp.parse().map_err(|_| refused())?;
    let now = state.clock.now();
    if now >= exp {
        return Err(AppError::gone(
            "LINK_EXPIRED",
            "this download link has expired",
        ));
    }
    if !q.g.is_empty() && !crate::files::grant_is_live(&state, &q.g, now).await? {
        return Err(AppError::gone(
            "ACCESS_ENDED",
            "the access this link was issued under has ended",
        ));
    }
    // The owner's own link: the file must still be theirs to have (deleted, or its account
    // erased, it goes at once, not when the purge removes the object).
    if q.g.is_empty() && !crate::files::file_is_kept(&state, &key).await? {
        return Err(AppError::gone(
            "FILE_DELETED",
            "the file this link was issued for has been deleted",
        ));
    }
    let Backend::Local { .. } = &state.storage.backend else {
        return Err(refused());
    };
    let got = match state.storage.store.get(&Path::from(key.as_str())).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Err(AppError::not_found("file")),
        Err(e) => return Err(AppError::unavailable("storage", e)),
    };
    let size = got.meta.size;
    let stream = got.into_stream().map_err(std::io::Error::other);
    let mut res = Body::from_stream(stream).into_response();
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&q.t).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(&q.n)).map_err(|_| refused())?,
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_file_name_carries_no_percent_escapes_or_quotes() {
        assert_eq!(
            content_disposition("R\u{f6}ntgen 50% %22x%22;y\\z.pdf"),
            "attachment; filename=\"R_ntgen 50_ _22x_22;y_z.pdf\"; \
             filename*=UTF-8''R%C3%B6ntgen%2050%25%20%2522x%2522%3By%5Cz.pdf"
        );
    }

    /// The link as the `url` crate writes it: the public URL joined with the object's path,
    /// then the query pairs appended.
    fn parsed_link(public: &str, spec: &LinkSpec<'_>, exp: &str, grant: &str, sig: &str) -> String {
        let mut url = url::Url::parse(public)
            .unwrap()
            .join(&format!("/objects/{}", spec.key))
            .unwrap();
        url.query_pairs_mut()
            .append_pair("exp", exp)
            .append_pair("g", grant)
            .append_pair("n", spec.file_name)
            .append_pair("t", spec.content_type)
            .append_pair("sig", sig);
        url.to_string()
    }

    #[test]
    fn a_local_link_is_written_as_the_url_crate_would_write_it() {
        let publics = [
            "http://127.0.0.1:8080",
            "https://auravita.example/",
            "https://auravita.example/app/",
            "http://[::1]:9000/x/y",
        ];
        let names = [
            (
                "files/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "scan.pdf",
                "application/pdf",
                "",
            ),
            (
                "files/k",
                "Röntgen 2026 #1 & \"notes\"?.png",
                "image/png",
                "g-1",
            ),
            (
                "files/a b{c}`<d>",
                "x%20y+z=;",
                "application/dicom",
                "a&b=c",
            ),
        ];
        for public in publics {
            let links = url::Url::parse(public)
                .unwrap()
                .join("/objects/")
                .unwrap()
                .to_string();
            for (key, file_name, content_type, grant) in names {
                let spec = LinkSpec {
                    key,
                    file_name,
                    content_type,
                    grant_id: Some(grant),
                    now: 0,
                    expires_at: 120_000,
                };
                assert_eq!(
                    local_link(&links, &spec, "120000", grant, "ab12"),
                    parsed_link(public, &spec, "120000", grant, "ab12"),
                    "{public} {key}"
                );
            }
        }
    }
}
