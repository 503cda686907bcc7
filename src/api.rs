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

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ct == "application/json"
                    || (ct.starts_with("application/") && ct.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
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
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
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
