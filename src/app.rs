//! The shared state and the whole HTTP surface: every feature's router merged, the OpenAPI
//! document and explorer, the web client, health and metrics, and the layers every response
//! passes through (request id, logs, security headers, Origin check, the error envelope).

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::{ApiOk, ApiResult};
use crate::auth::ClientInfo;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::{error_response, AppError, Enveloped, ErrorEnvelope};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::sms::SmsSender;
use crate::storage::Storage;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub clock: Clock,
    pub keys: Keys,
    pub sms: Arc<dyn SmsSender>,
    pub storage: Storage,
    /// Group-committed access-ledger writes (download links).
    pub ledger: crate::files::ledger::Ledger,
    /// This instance's open notification streams.
    pub notifications: crate::notifications::Hub,
    /// SMS being sent in the background (sign-in codes); lets tests and shutdown wait for them.
    pub sms_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub metrics: Metrics,
    /// Batched session-cookie lookups (every authenticated request).
    pub sessions: crate::auth::session::SessionLookups,
    /// Batched connection-list reads (sessionDetail, profile).
    pub connections: crate::users::connections::ConnectionLookups,
    /// Batched `sessionDetail` reads: the session and the connection list in one query.
    pub session_details: crate::users::connections::SessionDetailLookups,
    /// Batched file-and-grant reads behind download links (fileURL).
    pub file_access: crate::files::FileAccessLookups,
    /// fileURL's batched read for a session cookie: the session, the file and its grants at once.
    pub session_files: crate::files::SessionFileLookups,
    /// Bearer tokens from an external identity provider; `None` unless `AURAVITA_OIDC_ISSUER` is set.
    pub oidc: Option<crate::auth::oidc::Oidc>,
    /// Cancelled on shutdown: long-lived responses (event streams) end when it fires.
    pub shutdown: CancellationToken,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// Returns once no sign-in code is being sent in the background, or at `deadline`.
    pub async fn sms_sent_by(&self, deadline: tokio::time::Instant) {
        while self.sms_in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Connects and migrates the database, loads the secret, and sets up the providers.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        let db = Db::connect(&config.database_url(), config.limits.db_max_connections).await?;
        db.migrate().await.context("migrating the database")?;
        let keys = Keys::load(&config)?;
        same_secret(&db, &keys).await?;
        let sms = crate::sms::from_config(&config)?;
        let ledger = crate::files::ledger::Ledger::start(db.clone())
            .await
            .context("starting the access ledger")?;
        let storage = Storage::from_config(&config).context("setting up object storage")?;
        let oidc = crate::auth::oidc::Oidc::from_config(&config)?;
        Ok(AppState(Arc::new(App {
            config,
            db: db.clone(),
            clock: Clock::default(),
            keys,
            sms,
            sms_in_flight: Default::default(),
            storage,
            ledger,
            notifications: Default::default(),
            metrics: Metrics::default(),
            sessions: crate::auth::session::session_lookups(db.clone()),
            connections: crate::users::connections::connection_lookups(db.clone()),
            session_details: crate::users::connections::session_detail_lookups(db.clone()),
            file_access: crate::files::file_access_lookups(db.clone()),
            session_files: crate::files::session_file_lookups(db.clone()),
            oidc,
            shutdown: CancellationToken::new(),
        })))
    }
}

/// Refuses to start with a secret other than the one the database was first used with. Every
/// instance on one database must share it: with another, codes sent by one instance fail on the
/// next (each try counted as wrong), its links are refused, and authenticator keys sealed by one
/// cannot be opened by the other. The first start records the secret's fingerprint.
async fn same_secret(db: &Db, keys: &Keys) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO server_settings (name, value) VALUES ('secret_fingerprint', $1) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(keys.fingerprint())
    .execute(&db.pool)
    .await?;
    let (recorded,): (String,) =
        sqlx::query_as("SELECT value FROM server_settings WHERE name = 'secret_fingerprint'")
            .fetch_one(&db.pool)
            .await?;
    anyhow::ensure!(
        recorded == keys.fingerprint(),
        "this database was first used with another secret: every instance on one database needs \
         the same AURAVITA_SECRET (without it, each data folder's secret.key is its own). Codes, \
         download links and authenticator keys depend on it"
    );
    Ok(())
}

/// Called inside the sign-in transaction, after the session is created, for a sign-in to an
/// account already in use (not for the session an account is created or claimed with).
pub async fn on_sign_in(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    session_id: &str,
    client: &ClientInfo,
) -> Result<(), AppError> {
    crate::notifications::on_sign_in(state, tx, user_id, session_id, client).await
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Auravita API", description = "Patients keep their medical documents and share them with the doctors they choose."),
    components(schemas(ErrorEnvelope)),
    tags(
        (name = "auth", description = "Sign-up, sign-in, sessions"),
        (name = "user", description = "Profiles, doctors, connections, sessions"),
        (name = "resource", description = "Medical files, sharing, download links, the access ledger"),
        (name = "notification", description = "Live notifications"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
struct ApiDoc;

/// What the document says beyond each handler's own annotations:
/// - the session cookie under the name this server gives it (`__Host-` prefixed over https);
/// - 403 on every route that changes something, which `check_origin` answers (`ORIGIN_REFUSED`)
///   to a request from another site's page;
/// - 413 on every route that takes a body (its size limit).
fn document_common(openapi: &mut utoipa::openapi::OpenApi, cookie: &str) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(cookie))),
    );
    let refusal = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                    .build(),
            )
            .build()
    };
    for (changes, op) in operations_mut(openapi) {
        let responses = &mut op.responses.responses;
        if changes {
            responses.entry("403".into()).or_insert_with(|| {
                refusal("Refused (`ORIGIN_REFUSED`: sent from another site's page)").into()
            });
        }
        if op.request_body.is_some() {
            responses
                .entry("413".into())
                .or_insert_with(|| refusal("The body is larger than this route takes").into());
        }
    }
}

/// Every operation in the document, each with whether its method changes something (anything
/// but GET, HEAD, OPTIONS and TRACE, which `check_origin` lets through).
pub(crate) fn operations_mut(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (bool, &mut utoipa::openapi::path::Operation)> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        let utoipa::openapi::PathItem {
            get,
            put,
            post,
            delete,
            options,
            head,
            patch,
            trace,
            ..
        } = item;
        [
            (false, get),
            (false, head),
            (false, options),
            (false, trace),
            (true, post),
            (true, put),
            (true, patch),
            (true, delete),
        ]
        .into_iter()
        .filter_map(|(changes, op)| op.as_mut().map(|op| (changes, op)))
    })
}

/// The documented API routes, as one router with its OpenAPI document.
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        // Each route carries its full path (merged, not nested): a nested route pays for a
        // rewritten URI on every request.
        .merge(crate::auth::router(state))
        .merge(crate::users::router())
        .merge(crate::auth::totp::router())
        .merge(crate::files::router())
        .merge(crate::notifications::router())
        .routes(routes!(live))
        .routes(routes!(ready))
        .split_for_parts();
    let mut openapi = openapi;
    document_common(&mut openapi, state.config.cookie_name());
    crate::auth::oidc::document_bearer(&mut openapi);
    (router, openapi)
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api(&state);
    let openapi = Arc::new(openapi);
    let doc = openapi.clone();
    let app = api
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/metrics", axum::routing::get(metrics))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
        .merge(crate::storage::router())
        .merge(crate::web::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method);
    layered(app, state)
}

/// Every route's middleware, around `routes`: the body limit, the origin check, error envelopes,
/// panics answered as 500 (inside the metrics, so they are counted), metrics, security headers,
/// request ids and tracing. Public so tests can put a route of their own (one that panics, say)
/// behind exactly this stack.
pub fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let hsts = state
        .config
        .https()
        .then(|| HeaderValue::from_static(crate::wire::HSTS));
    let app = routes
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(state.clone(), check_origin))
        .layer(axum::middleware::from_fn(refuse_head_on_links))
        .layer(axum::middleware::from_fn(envelope_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            move |_: &Response| hsts.clone(),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::from_fn(drop_unusable_request_id));
    app.with_state(state)
}

/// A request id a client (or nginx, which sets one) sent is kept only if it looks like one:
/// up to 64 letters, digits, `-`, `_`, `.` or `:`. Anything else is replaced by a fresh one, so an
/// id cannot carry text into the log lines it tags.
async fn drop_unusable_request_id(mut req: Request, next: Next) -> Response {
    let usable = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 64
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
    };
    let headers = req.headers_mut();
    let values: Vec<&HeaderValue> = headers.get_all("x-request-id").iter().collect();
    if !(values.len() == 1 && usable(values[0])) {
        headers.remove("x-request-id");
    }
    next.run(req).await
}

/// Strict by default; the API explorer under `/docs` needs inline styles and scripts of its own.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Refuses state-changing requests sent by pages of another origin.
async fn check_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let allowed = state.config.public_origin();
            if origin.to_str().map(|o| o != allowed).unwrap_or(true) {
                return AppError::forbidden(
                    "ORIGIN_REFUSED",
                    "this request came from a page of another site and was refused",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// `HEAD` on the routes that issue download links is refused (405, `Allow: GET`) rather than run
/// as a `GET` whose body is dropped: each link is recorded in the owner's ledger, and a `HEAD`
/// would record a link nobody received.
async fn refuse_head_on_links(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() == Method::HEAD
        && (path.starts_with("/protected/resource/fileURL/")
            || path.starts_with("/protected/resource/sharedFileURL/"))
    {
        let mut res = wrong_method().await.into_response();
        res.headers_mut()
            .insert(header::ALLOW, axum::http::HeaderValue::from_static("GET"));
        return res;
    }
    next.run(req).await
}

/// Wraps any error the framework produced on its own (plain text or empty) in the envelope.
async fn envelope_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.extensions().get::<Enveloped>().is_some()
    {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("NOT_FOUND", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "that method is not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("UNSUPPORTED_MEDIA_TYPE", "unsupported content type")
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            ("VALIDATION_FAILED", "the request could not be understood")
        }
        StatusCode::REQUEST_TIMEOUT => ("TIMEOUT", "the request took too long"),
        s if s.is_server_error() => ("INTERNAL", "something went wrong on our side"),
        _ => ("BAD_REQUEST", "the request could not be understood"),
    };
    let mut out = error_response(status, code, message, serde_json::json!({}));
    if let Some(allow) = res.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "something went wrong on our side",
        serde_json::json!({}),
    )
}

async fn unknown_route() -> AppError {
    AppError::not_found("route")
}

async fn wrong_method() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "that method is not allowed here",
    )
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // HTTP lets a client make up any method name: those are counted together, so that no
    // client can add series (and memory) without end.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    };
    let started = Instant::now();
    let res = next.run(req).await;
    state
        .metrics
        .observe(method, &route, res.status().as_u16(), started.elapsed());
    res
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, body = crate::api::Envelope<Health>)))]
async fn live() -> ApiResult<Health> {
    Ok(ApiOk::new(
        Health {
            status: "ok".into(),
        },
        "alive",
    ))
}

/// The database (and storage) can be reached.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = crate::api::Envelope<Health>), (status = 503, body = ErrorEnvelope)))]
async fn ready(State(state): State<AppState>) -> ApiResult<Health> {
    state
        .db
        .ping()
        .await
        .map_err(|e| AppError::unavailable("the database", e))?;
    state
        .storage
        .ping()
        .await
        .map_err(|e| AppError::unavailable("object storage", e))?;
    Ok(ApiOk::new(
        Health {
            status: "ready".into(),
        },
        "ready",
    ))
}

/// Prometheus text, for the operator's scraper: served only to loopback and private addresses
/// (behind a trusted proxy, the client's forwarded address), as `deploy/nginx.conf` allows it,
/// so an instance reached directly does not show its traffic to the internet.
async fn metrics(State(state): State<AppState>, client: ClientInfo) -> Response {
    if !private_address(&client.ip) {
        return AppError::forbidden(
            "FORBIDDEN",
            "metrics are served to the private network only",
        )
        .into_response();
    }
    let pool = &state.db.pool;
    let mut body = state.metrics.render(pool.size(), pool.num_idle());
    body.push_str(&crate::batch::render(&[
        ("session", state.sessions.counts()),
        ("connections", state.connections.counts()),
        ("session_detail", state.session_details.counts()),
        ("file_access", state.file_access.counts()),
        ("session_file", state.session_files.counts()),
        ("ledger", state.ledger.counts()),
    ]));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

/// Periodic housekeeping every instance runs (each step is idempotent, so instances may overlap).
pub fn spawn_background(state: &AppState) {
    crate::notifications::start(state);
    crate::users::purge::spawn(state, Duration::from_secs(30));
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        for minute in 0u64.. {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e, "housekeeping failed; will retry");
            }
            // Orphaned objects are an hour old before they go, and finding them lists the whole
            // store: hourly (from the first minute) is soon enough.
            if minute % 60 == 0 {
                if let Err(e) = crate::files::sweep(&state).await {
                    tracing::warn!(error = %e, "sweeping orphaned objects failed; will retry");
                }
            }
        }
    });
}

async fn sweep(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now();
    let idle = state.config.limits.session_idle_ms();
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
        .bind(now)
        .bind(now - idle)
        .execute(&state.db.pool)
        .await?;
    sqlx::query("DELETE FROM otp_challenges WHERE created_at < $1")
        .bind(now - 86_400_000)
        .execute(&state.db.pool)
        .await?;
    sqlx::query("DELETE FROM second_factor_challenges WHERE created_at < $1")
        .bind(now - 86_400_000)
        .execute(&state.db.pool)
        .await?;
    crate::ratelimit::sweep(&state.db, now).await?;
    Ok(())
}

/// The most an HTTP/1 connection buffers of what it has read but not yet handed on (hyper's
/// default is ~400 KB). Uploads stream through this buffer, the multipart parser's and the file
/// write's, each about as large as the chunks it yields, so it sets an upload's memory: 32
/// concurrent 5 MB uploads grew the server by 52–66 MB with hyper's default and by 24–27 MB with
/// this (`bench/uploads.sh`). A request head longer than this gets 431 (hyper's own answer, put
/// in the envelope by `crate::wire`).
const MAX_READ_BUF: usize = 64 * 1024;

/// `axum::serve`, with hyper's connection settings in reach (`MAX_READ_BUF`, and a timer, without
/// which hyper silently drops its header-read timeout): accepts until `token` is cancelled (the
/// listener sleeps through errors such as running out of file descriptors), closes a connection
/// that takes longer than `client_timeout` to send a request head or stays that long idle
/// between requests, fails a body read that waits that long (`crate::stall`), gives each request
/// its peer's address (`ConnectInfo`), then lets open connections finish what they are doing.
/// At most `max_connections` are served at once: at the cap it accepts nothing until one
/// closes (the kernel queues the rest). One client holds at most `per_client` of them (0: no
/// limit): past that its new connections are answered 429 and closed. The answers written here
/// rather than by the router (that 429, and hyper's own 400/414/431 in the envelope) carry
/// `raw_extra`'s header lines too.
async fn serve(
    mut listener: tokio::net::TcpListener,
    app: Router,
    token: tokio_util::sync::CancellationToken,
    client_timeout: Duration,
    max_connections: usize,
    per_client: usize,
    raw_extra: &'static str,
) -> std::io::Result<()> {
    use axum::serve::Listener;
    use hyper_util::rt::{TokioIo, TokioTimer};
    // HTTP/1.1 only. hyper's auto-detecting builder waits for a connection's first bytes (to
    // tell HTTP/1 from HTTP/2) with no timeout, so a connection that never sent anything was
    // held for ever, and HTTP/2 connections had no idle limit. Clients reach the server through
    // nginx (HTTP/1.1 upstream) or directly over HTTP/1.1; nothing here needs HTTP/2.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(MAX_READ_BUF)
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let clients = PerClient::new(per_client);
    let refusals = std::sync::Arc::new(tokio::sync::Semaphore::new(REFUSALS_IN_FLIGHT));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = token.cancelled() => break,
        };
        let (io, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            _ = token.cancelled() => break,
        };
        let Some(client_slot) = clients.take(peer.ip()) else {
            // Refused: its global slot goes back at once, and it is answered only while few
            // refusals are in flight (else just closed), so a client opening connections in a
            // loop cannot fill the cap with connections waiting for their refusal.
            drop(slot);
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_connection(io, raw_extra).await;
                    drop(permit);
                });
            }
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let mut req = req.map(|b| crate::stall::StallBody::wrap(b, client_timeout));
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        // What hyper answers on its own (a head it cannot read) goes out in the envelope.
        let io = crate::wire::Enveloped::new(io, raw_extra);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!("connection from {peer} ended: {e}");
            }
            drop(client_slot);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Loopback, or a private network's: 10/8, 172.16/12, 192.168/16, fc00::/7 (an IPv4 address
/// written as IPv6 counts as itself). Anything else, or no address at all, is not.
pub fn private_address(ip: &str) -> bool {
    use std::net::IpAddr;
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback() || v4.is_private(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_loopback() || v4.is_private(),
            None => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        },
        Err(_) => false,
    }
}

/// Open connections per client: an IPv4 address, or an IPv6 /64 (one host has a whole /64), as
/// the `/auth` limits count them. Without it one client could hold every connection slot (idle
/// keep-alives, or request heads sent a byte at a time) and nobody else would be served.
struct PerClient {
    limit: usize,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open connection of a client; closing it (drop) gives the client's slot back.
struct ClientSlot {
    key: String,
    table: std::sync::Arc<PerClient>,
}

impl PerClient {
    /// `limit` 0 lifts the limit.
    fn new(limit: usize) -> std::sync::Arc<PerClient> {
        std::sync::Arc::new(PerClient {
            limit: if limit == 0 { usize::MAX } else { limit },
            open: Default::default(),
        })
    }

    /// A slot for `ip`'s new connection, or none when it already holds `limit`.
    fn take(self: &std::sync::Arc<Self>, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let key = crate::auth::client_key(&ip.to_string());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            key,
            table: self.clone(),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Refused connections being answered at once (each holds a descriptor for up to
/// `REFUSAL_GRACE`; part of `FD_RESERVE`). Past it a refused connection is closed unanswered.
const REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refused connection is given to take its answer.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// Answers a connection past its client's limit with 429 in the envelope, without reading its
/// request: written at once, then the write side is closed and what the client sent is read and
/// dropped until it closes too (so the kernel does not reset the connection over unread bytes
/// and lose the answer), for at most `REFUSAL_GRACE` in all. `raw_extra`: `serve`'s.
async fn refuse_connection(mut io: tokio::net::TcpStream, raw_extra: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let refusal = crate::wire::raw_answer(
        429,
        "Too Many Requests",
        "TOO_MANY_CONNECTIONS",
        "too many open connections from your address; close some and try again",
        serde_json::json!({"retry_after": 1}),
        &format!("retry-after: 1\r\n{raw_extra}"),
    );
    let answer = async {
        io.write_all(&refusal).await?;
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        while io.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_GRACE, answer).await;
}

/// File descriptors kept free of connections: the database pool, the object store's and the
/// SMS provider's connections, the ledger's journal, files being uploaded, refused connections
/// being answered.
const FD_RESERVE: u64 = 256;

/// The connection cap that fits `fd_limit` open files with `FD_RESERVE` kept for the rest (at
/// least 64 connections however low the limit).
pub fn connection_cap(requested: usize, fd_limit: u64) -> usize {
    let room = fd_limit.saturating_sub(FD_RESERVE).max(64);
    requested.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Raises this process's open-file limit to its hard limit (a service's soft limit is often
/// 1,024) and returns it, so the connection cap can be fitted under it: connections past the
/// limit would take the descriptors the database needs, and every request would fail.
pub fn raise_fd_limit() -> Option<u64> {
    // `rlimit` wraps getrlimit/setrlimit safely (this crate forbids `unsafe`).
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// A running server: what `serve` runs and what tests start on port 0.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(
        state: AppState,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Server> {
        let addr = listener.local_addr()?;
        spawn_background(&state);
        let app = router(state.clone());
        let token = state.shutdown.clone();
        let timeout = Duration::from_secs(state.config.limits.client_timeout_secs.max(1));
        let limits = &state.config.limits;
        let cap = limits.max_connections;
        // Behind a proxy every connection comes from the proxy, which limits clients itself.
        let per_client = match state.config.trust_proxy {
            true => 0,
            false => limits.max_connections_per_client,
        };
        // The answers written below the router carry HSTS as the router's do.
        let raw_extra = match state.config.https() {
            true => crate::wire::HSTS_LINE,
            false => "",
        };
        let handle = tokio::spawn(serve(
            listener, app, token, timeout, cap, per_client, raw_extra,
        ));
        Ok(Server {
            addr,
            state,
            handle,
        })
    }

    /// Stops accepting, ends event streams, and waits (up to `grace` in all) for requests in
    /// flight, then for sign-in codes still being sent: their answer told the person a code is
    /// on its way, and its cooldown is already counted.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.state.shutdown.cancel();
        let _ = tokio::time::timeout_at(deadline, self.handle).await;
        self.state.sms_sent_by(deadline).await;
    }

    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.handle).await??;
        Ok(())
    }
}

#[cfg(test)]
mod cap_tests {
    use super::connection_cap;

    #[test]
    fn the_connection_cap_leaves_room_under_the_open_file_limit() {
        assert_eq!(connection_cap(16_384, 1_048_576), 16_384);
        assert_eq!(connection_cap(16_384, 1_024), 768);
        assert_eq!(connection_cap(16_384, 256), 64);
        assert_eq!(connection_cap(10, 1_024), 10);
    }
}
