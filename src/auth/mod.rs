//! Signing up and in by phone with a one-time code, and the server-side sessions that follow.

pub mod oidc;
pub mod otp;
pub mod phone;
pub mod routes;
pub mod session;
pub mod totp;

pub use session::{AuthUser, ClientInfo, Role};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    routes::router()
        .merge(oidc::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_by_ip,
        ))
}

/// Per-client-IP limit on everything under `/auth`.
async fn limit_by_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let client = session::client_info(&parts, state.config.trust_proxy);
    let key = format!("auth-ip:{}", client.ip);
    let now = state.clock.now();
    if let Err(e) = crate::ratelimit::hit(
        &state.db,
        &key,
        state.config.limits.auth_ip_per_minute,
        60,
        now,
    )
    .await
    {
        return e.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
