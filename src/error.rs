//! The error half of the product envelope: one `AppError` type that every handler returns,
//! rendered as `{"success": false, "error": {code, message, details}, "timestamp"}` with the
//! fitting status. Internals never reach the client; a 500 is logged with its request id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::clock::rfc3339_now;

/// What a client sees when a request fails.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code such as `OTP_EXPIRED`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Extra context, for example `{"field": "phone"}`.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorBody,
    /// RFC 3339.
    pub timestamp: String,
}

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    pub retry_after: Option<u64>,
    /// The cause of a 5xx, logged and never sent.
    pub source: Option<anyhow::Error>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
            source: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    /// 409 `GONE_MEANWHILE`: an account or row this request refers to was removed between its
    /// checks and its write (an erase, say); nothing was written.
    pub fn gone_meanwhile() -> Self {
        AppError::conflict(
            "GONE_MEANWHILE",
            "something this request refers to was removed meanwhile",
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, code, message)
    }

    /// A field that failed validation; `details.field` names it.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            message,
        )
        .with_details(json!({ "field": field }))
    }

    pub fn rate_limited(
        code: &'static str,
        message: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        let retry_after_secs = retry_after_secs.max(1);
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            .with_details(json!({ "retry_after": retry_after_secs }));
        e.retry_after = Some(retry_after_secs);
        e
    }

    pub fn unavailable(what: &str, source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
            format!("{what} is unavailable; try again shortly"),
        );
        e.source = Some(source.into());
        e
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "something went wrong on our side",
        );
        e.source = Some(source.into());
        e
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unique_violation(&e) {
            return AppError::conflict("ALREADY_EXISTS", "that already exists");
        }
        if crate::db::is_nul_in_text(&e) {
            // The extractors refuse a NUL first; this is for any text that reaches a statement
            // another way: the client's input, not a fault.
            return AppError::bad_request("BAD_TEXT", "text must not contain the NUL character");
        }
        if crate::db::is_foreign_key_violation(&e) {
            // A row this request refers to (the caller's own account, a file, a doctor) was
            // removed between its checks and its write; nothing was written.
            return AppError::gone_meanwhile();
        }
        if crate::db::is_retryable(&e) {
            // PostgreSQL broke a deadlock or a serialization conflict by aborting this
            // transaction; nothing was written, and the same request will succeed when repeated.
            let mut err = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "RETRY",
                "the request collided with another; try again",
            )
            .with_details(json!({ "retry_after": 1 }));
            err.retry_after = Some(1);
            err.source = Some(e.into());
            return err;
        }
        if is_unavailable(&e) {
            AppError::unavailable("the database", e)
        } else {
            AppError::internal(e)
        }
    }
}

/// The database could not be reached (or gave no connection in time): a 503, not a 500.
/// The database could not be reached or dropped the connection: nothing the client did, and
/// worth retrying. PostgreSQL says so with SQLSTATE class 08 (connection exception) or 57P
/// (shut down, crashed, still starting), as a restart or failover ends every connection.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// A database error code that says the database cannot do its work now, whatever was asked.
/// SQLite's codes are numbers (extended: the primary code in the low byte): 10 (IOERR), 13
/// (FULL: the disk is full) and 14 (CANTOPEN: it could not open a file, as when the process is
/// out of file descriptors). PostgreSQL's are five-character SQLSTATEs: class 08 (connection
/// exception), 57P (shut down, crashed, still starting), 53 (insufficient resources: disk full,
/// out of memory, too many connections).
fn unavailable_code(code: &str) -> bool {
    match code.parse::<u32>() {
        Ok(n) if code.len() < 5 => matches!(n & 0xff, 10 | 13 | 14),
        _ => code.starts_with("08") || code.starts_with("57P") || code.starts_with("53"),
    }
}

impl AppError {
    /// A read error shared by every request of a batch (`crate::batch`): the same status the
    /// error would have on its own, its text kept as the logged cause.
    pub fn from_shared_db_error(e: &sqlx::Error) -> Self {
        let cause = anyhow::anyhow!("{e}");
        if is_unavailable(e) {
            AppError::unavailable("the database", cause)
        } else {
            AppError::internal(cause)
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::internal(e)
    }
}

/// Render an error body; used by `AppError` and by the middleware that wraps the framework's
/// own plain-text rejections.
pub fn error_response(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    let body = json!({
        "success": false,
        "error": { "code": code, "message": message, "details": details },
        "timestamp": rfc3339_now(),
    });
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(src) => {
                    tracing::error!(status = self.status.as_u16(), code = self.code, error = %format!("{src:#}"), "request failed")
                }
                None => tracing::error!(
                    status = self.status.as_u16(),
                    code = self.code,
                    "request failed"
                ),
            }
        }
        let mut res = error_response(self.status, self.code, &self.message, self.details);
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // Marks the body as already in the envelope so the fallback middleware leaves it alone.
        res.extensions_mut().insert(Enveloped);
        res
    }
}

/// Response extension: this body is already an envelope.
#[derive(Clone, Copy, Debug)]
pub struct Enveloped;

#[cfg(test)]
mod tests {
    use super::unavailable_code;

    #[test]
    fn full_disks_and_lost_connections_are_unavailable_and_other_codes_are_not() {
        // SQLite: IOERR and an extended IOERR (IOERR_WRITE), FULL, CANTOPEN.
        for code in ["10", "778", "13", "14"] {
            assert!(unavailable_code(code), "{code}");
        }
        // SQLite: CONSTRAINT_UNIQUE, BUSY, ERROR.
        for code in ["2067", "5", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
        // PostgreSQL: connection failure, admin shutdown, disk full, too many connections.
        for code in ["08006", "57P01", "53100", "53300"] {
            assert!(unavailable_code(code), "{code}");
        }
        // PostgreSQL: unique violation, deadlock, syntax error.
        for code in ["23505", "40P01", "42601"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
