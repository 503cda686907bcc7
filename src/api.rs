//! The success half of the envelope and the extractors that turn every malformed request into a
//! clear error in that envelope (never the framework's plain-text rejection).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::clock::rfc3339_now;
use crate::error::{AppError, Enveloped};

/// The success envelope: `{"success": true, "data": ..., "message": ..., "timestamp": ...}`.
#[derive(Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: bool,
    pub data: T,
    pub message: String,
    /// RFC 3339.
    pub timestamp: String,
}

/// What a handler returns on success.
pub struct ApiOk<T> {
    pub data: T,
    pub message: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
}

impl<T: Serialize> ApiOk<T> {
    pub fn new(data: T, message: impl Into<String>) -> Self {
        Self {
            data,
            message: message.into(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        }
    }

    pub fn created(mut self) -> Self {
        self.status = StatusCode::CREATED;
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

impl<T: Serialize> IntoResponse for ApiOk<T> {
    fn into_response(self) -> Response {
        let body = Envelope {
            success: true,
            data: self.data,
            message: self.message,
            timestamp: rfc3339_now(),
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        res.headers_mut().extend(self.headers);
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res.extensions_mut().insert(Enveloped);
        res
    }
}

pub type ApiResult<T> = Result<ApiOk<T>, AppError>;

/// A JSON body. Wrong content type → 415, bad syntax → 400, wrong shape → 422 naming the field,
/// too large → 413.
pub struct ApiJson<T>(pub T);

/// The request's media type without its parameters, lower-cased (`multipart/form-data` for
/// `Multipart/Form-Data; boundary=x`); `None` without a readable `Content-Type`.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Whether the request says its body is JSON: `application/json` or `application/*+json`.
pub fn says_json(headers: &axum::http::HeaderMap) -> bool {
    media_type(headers).is_some_and(|ct| {
        ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !says_json(req.headers()) {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if let Some(field) = nul_in_json(bytes) {
        return Err(nul_refused(&field));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut *de) {
        // Only whitespace may follow the value: `{..} garbage` is not a JSON body.
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(inner) => Err(AppError::bad_request(
                "MALFORMED_JSON",
                format!("the body is not valid JSON: {inner}"),
            )),
        },
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            use serde_json::error::Category;
            match inner.classify() {
                Category::Syntax | Category::Eof | Category::Io => Err(AppError::bad_request(
                    "MALFORMED_JSON",
                    format!("the body is not valid JSON: {inner}"),
                )),
                Category::Data => {
                    let msg = inner.to_string();
                    let field = if path == "." || path.is_empty() {
                        // A missing field is reported at the parent: take its name from the message.
                        msg.split('`').nth(1).unwrap_or("body").to_string()
                    } else {
                        path
                    };
                    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                    Err(AppError::invalid(&field, format!("{field}: {msg}")))
                }
            }
        }
    }
}

/// The NUL character is refused in every text a client sends: PostgreSQL cannot store it in
/// text (SQLite can), so it would fail a statement — and in a batched read, the other requests
/// sharing that statement too. Refused up front, it is the same 4xx on both databases.
fn nul_refused(field: &str) -> AppError {
    AppError::invalid(field, format!("{field} must not contain the NUL character"))
}

/// Where a JSON body holds a string with `\u0000` in it (a key or a value), if anywhere: the
/// field named as in other 422s (`a.b`, `list[2]`). JSON cannot carry a raw NUL in a string, so
/// a body without the escape (nearly every body: one scan) is not parsed twice.
fn nul_in_json(bytes: &[u8]) -> Option<String> {
    let escaped = bytes.windows(6).enumerate().any(|(i, w)| {
        w == b"\\u0000" && bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    });
    if !escaped {
        return None;
    }
    fn walk(v: &serde_json::Value, path: &str) -> Option<String> {
        let here = || {
            if path.is_empty() {
                "body".to_string()
            } else {
                path.to_string()
            }
        };
        match v {
            serde_json::Value::String(s) if s.contains('\0') => Some(here()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{}[{i}]", here()))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, item)| {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k.contains('\0') {
                    Some(here())
                } else {
                    walk(item, &key)
                }
            }),
            _ => None,
        }
    }
    // Malformed JSON falls through to the parser's own error.
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&value, "")
}

pub fn bytes_rejection(e: BytesRejection) -> AppError {
    if let Some(timeout) = crate::stall::timed_out(&e) {
        timeout
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the request body is too large",
        )
    } else {
        AppError::bad_request("BAD_BODY", "the request body could not be read")
    }
}

/// Path parameters, with rejections in the envelope.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // (A raw NUL cannot be in a request line: only its percent-encoding.)
        if parts.uri.path().contains("%00") {
            return Err(AppError::bad_request(
                "BAD_PATH",
                "a path parameter must not contain the NUL character",
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| {
                AppError::bad_request("BAD_PATH", format!("bad path parameter: {}", e.body_text()))
            })
    }
}

/// Query parameters, with rejections in the envelope (422 naming the parameter).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        if q.contains("%00") {
            let named = form_urlencoded::parse(q.as_bytes())
                .find(|(k, v)| k.contains('\0') || v.contains('\0'));
            if let Some((k, _)) = named {
                return Err(nul_refused(&k.replace('\0', "")));
            }
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(ApiQuery)
            .map_err(|err| {
                let path = err.path().to_string();
                let msg = err.into_inner().to_string();
                let field = if path == "." || path.is_empty() {
                    msg.split('`').nth(1).unwrap_or("query").to_string()
                } else {
                    path
                };
                AppError::invalid(&field, format!("query parameter {field}: {msg}"))
            })
    }
}

/// Empty data for routes that only confirm.
#[derive(Serialize, ToSchema)]
pub struct Done {
    pub success: bool,
}

pub fn done() -> Done {
    Done { success: true }
}

/// A 404 for ids that do not exist *or* are not the caller's: the two must look the same.
pub fn not_found(what: &str) -> AppError {
    AppError::not_found(what).with_details(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_escape_is_found_where_it_is_and_nowhere_else() {
        assert_eq!(
            nul_in_json(br#"{"name": "a\u0000b"}"#).as_deref(),
            Some("name")
        );
        assert_eq!(
            nul_in_json(br#"{"p": {"tags": ["x", "\u0000"]}}"#).as_deref(),
            Some("p.tags[1]")
        );
        assert_eq!(nul_in_json(br#"{"a\u0000": 1}"#).as_deref(), Some("body"));
        assert_eq!(nul_in_json(br#""\u0000""#).as_deref(), Some("body"));
        // An escaped backslash followed by the text u0000 is not a NUL; three backslashes are.
        assert_eq!(nul_in_json(br#"{"name": "a\\u0000"}"#), None);
        assert_eq!(
            nul_in_json(br#"{"name": "a\\\u0000"}"#).as_deref(),
            Some("name")
        );
        assert_eq!(nul_in_json(br#"{"name": "plain"}"#), None);
        // Malformed JSON is left to the parser's own error.
        assert_eq!(nul_in_json(br#"{"name": "\u0000"#), None);
        let refused = parse_json::<serde_json::Value>(br#"{"name": "a\u0000b"}"#).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
