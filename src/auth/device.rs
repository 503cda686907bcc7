//! Device cookies: the owner's browser keeps its own lane of a phone's code limits.
//!
//! The contract's code limits are per phone (one code a minute, five an hour, a back-off after
//! each code that dies of wrong tries). Counted for the phone alone, anyone who knows the number
//! could keep its owner waiting by asking for codes and guessing wrong. So a browser that has
//! signed in to a phone once gets a device cookie for it (OWASP's "device cookie"), and the codes
//! it asks for are counted in a lane of their own: the same limits, but spent only by that
//! browser's own requests and wrong tries. Everyone else (no cookie, or a cookie for another phone,
//! changed, or too old) shares the phone's lane, limits and back-off as before.
//!
//! The cookie is not a credential: it opens nothing, and a code is still needed. It carries a
//! random nonce and the second it was set, signed with a key derived from the server secret
//! together with the phone, so it cannot be made up, moved to another phone, or kept alive past
//! `AURAVITA_DEVICE_COOKIE_DAYS`. It is set again at every sign-in with a code.

use axum::http::{HeaderMap, HeaderValue};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::app::AppState;

/// The key of `phone`'s lane for the browser that sent `headers`: the phone itself, or, with a
/// valid device cookie for this phone, the phone and that device.
pub fn lane(state: &AppState, headers: &HeaderMap, phone: &str, now_ms: i64) -> String {
    let name = state.config.device_cookie_name();
    crate::auth::session::cookie_values(headers, name)
        .find_map(|value| device_of(state, &value, phone, now_ms))
        .map_or_else(|| phone.to_string(), |device| format!("{phone}#{device}"))
}

/// The device (its nonce) a cookie value names, when its signature holds for `phone` and it is
/// not older than the configured lifetime.
fn device_of(state: &AppState, value: &str, phone: &str, now_ms: i64) -> Option<String> {
    let mut parts = value.split('.');
    let (nonce, set_at, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let set_secs: i64 = set_at.parse().ok()?;
    let max_age = state
        .config
        .limits
        .device_cookie_days
        .saturating_mul(86_400);
    // Set by another instance whose clock runs a little ahead: still this device.
    const SKEW_SECS: i64 = 300;
    let age = now_ms / 1000 - set_secs;
    if !(-SKEW_SECS..max_age).contains(&age) {
        return None;
    }
    let expected = state
        .keys
        .device_mac(&[phone.as_bytes(), nonce.as_bytes(), set_at.as_bytes()]);
    bool::from(expected.as_bytes().ct_eq(mac.as_bytes())).then(|| nonce.to_string())
}

/// The device cookie for `phone`, set when a sign-in with its code succeeds. A browser whose code
/// came through its own lane keeps its device (the lane's history with it); any other gets a new
/// one. Either way the cookie's time starts again.
pub fn cookie(state: &AppState, phone: &str, lane: &str, now_ms: i64) -> HeaderValue {
    let nonce = lane
        .strip_prefix(phone)
        .and_then(|rest| rest.strip_prefix('#'))
        .map_or_else(
            || {
                let mut raw = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut raw);
                hex::encode(raw)
            },
            str::to_string,
        );
    let set_at = (now_ms / 1000).to_string();
    let mac = state
        .keys
        .device_mac(&[phone.as_bytes(), nonce.as_bytes(), set_at.as_bytes()]);
    let secure = if state.config.https() { "; Secure" } else { "" };
    let v = format!(
        "{}={nonce}.{set_at}.{mac}; Path=/; HttpOnly; SameSite=Lax{secure}; Max-Age={}",
        state.config.device_cookie_name(),
        state
            .config
            .limits
            .device_cookie_days
            .saturating_mul(86_400)
    );
    HeaderValue::from_str(&v).expect("cookie is ASCII")
}
