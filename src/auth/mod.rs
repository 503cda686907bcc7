//! Signing up and in by phone with a one-time code, and the server-side sessions that follow.

pub mod device;
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
        .merge(routes::unlimited_router())
}

/// Per-client limit on everything under `/auth` but sign-out (`routes::unlimited_router`).
async fn limit_by_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let client = session::client_info(&parts, state.config.trust_proxy);
    let key = format!("auth-ip:{}", client_key(&client.ip));
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

/// What a per-client limit counts by: an IPv4 address, or an IPv6 address's /64 (one host
/// normally has a whole /64, so counting each address would cost it nothing to get around).
pub fn client_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        _ => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        use super::client_key;
        assert_eq!(client_key("2001:db8:1:2::5"), "2001:db8:1:2::/64");
        assert_eq!(client_key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
        assert_ne!(client_key("2001:db8:1:3::5"), client_key("2001:db8:1:2::5"));
        assert_eq!(client_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(client_key("unknown"), "unknown");
    }
}
