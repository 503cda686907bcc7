//! Device cookies: the owner's browser keeps its own lane of a phone's code limits.
//!
//! The contract's code limits are per phone (one code a minute, five an hour, a back-off after
//! each code that dies of wrong tries). Counted for the phone alone, anyone who knows the number
//! could keep its owner waiting by asking for codes and guessing wrong. So a browser that has
//! signed in to an account with a code gets a device cookie for it (OWASP's "device cookie"),
//! and the sign-in codes it asks for are counted in a lane of their own: the same limits, but
//! spent only by that browser's own requests and wrong tries. Everyone else (no cookie, or a
//! cookie for another phone or account, changed, or too old) shares the phone's lane, limits and
//! back-off as before. However many lanes a phone has, it receives at most
//! `AURAVITA_OTP_PHONE_PER_HOUR` codes an hour in all (`otp::reserve_send`), so lanes cannot
//! multiply the SMS sent to one number.
//!
//! The cookie is not a credential: it opens nothing, and a code is still needed. It carries a
//! random nonce and the second it was set, signed with a key derived from the server secret
//! together with the phone and the account's id, so it cannot be made up, moved to another
//! phone, outlive the account (whoever holds the number next has a new account, and the old
//! cookies count for nothing), or be kept past `AURAVITA_DEVICE_COOKIE_DAYS`. It is set again at
//! every sign-in with a code. Its name carries a keyed tag of the phone, so one browser keeps
//! one for each phone signed in on it (a family's shared computer).

use axum::http::{HeaderMap, HeaderValue};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::app::AppState;

/// A cookie signed by an instance whose clock runs this far ahead still names its device.
const SKEW_SECS: i64 = 300;

/// The device cookie's name for `phone`: the configured name and a keyed tag of the phone.
fn name(state: &AppState, phone: &str) -> String {
    let tag = state.keys.device_mac(&[b"name", phone.as_bytes()]);
    format!("{}_{}", state.config.device_cookie_name(), &tag[..12])
}

/// The signature over a cookie's parts.
fn mac(state: &AppState, phone: &str, user_id: &str, nonce: &str, set_at: &str) -> String {
    state.keys.device_mac(&[
        phone.as_bytes(),
        user_id.as_bytes(),
        nonce.as_bytes(),
        set_at.as_bytes(),
    ])
}

/// The key of `phone`'s lane for the browser that sent `headers`: the phone itself, or, with a
/// valid device cookie for this phone and its account `user_id`, the phone and that device.
/// A phone without an account (`None`) has only its own lane.
pub fn lane(
    state: &AppState,
    headers: &HeaderMap,
    phone: &str,
    user_id: Option<&str>,
    now_ms: i64,
) -> String {
    let device = user_id.and_then(|user_id| {
        crate::auth::session::cookie_values(headers, &name(state, phone))
            .find_map(|value| device_of(state, &value, phone, user_id, now_ms))
    });
    match device {
        Some(device) => format!("{phone}#{device}"),
        None => phone.to_string(),
    }
}

/// The device (its nonce) a cookie value names, when its signature holds for `phone` and
/// `user_id` and it is not older than the configured lifetime.
fn device_of(
    state: &AppState,
    value: &str,
    phone: &str,
    user_id: &str,
    now_ms: i64,
) -> Option<String> {
    let mut parts = value.split('.');
    let (nonce, set_at, given) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let set_secs: i64 = set_at.parse().ok()?;
    let age = (now_ms / 1000).saturating_sub(set_secs);
    if !(-SKEW_SECS..max_age_secs(state)).contains(&age) {
        return None;
    }
    let expected = mac(state, phone, user_id, nonce, set_at);
    bool::from(expected.as_bytes().ct_eq(given.as_bytes())).then(|| nonce.to_string())
}

/// The device cookie for `phone` and its account, set when a sign-in with a code succeeds. A
/// browser whose code came through its own lane keeps its device (the lane's history with it);
/// any other gets a new one. Either way the cookie's time starts again.
pub fn cookie(
    state: &AppState,
    phone: &str,
    user_id: &str,
    lane: &str,
    now_ms: i64,
) -> HeaderValue {
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
    let signature = mac(state, phone, user_id, &nonce, &set_at);
    let v = format!(
        "{}={nonce}.{set_at}.{signature}{}; Max-Age={}",
        name(state, phone),
        crate::auth::session::cookie_attrs(state),
        max_age_secs(state)
    );
    HeaderValue::from_str(&v).expect("cookie is ASCII")
}

/// How long a device cookie lasts, seconds (`AURAVITA_DEVICE_COOKIE_DAYS`).
fn max_age_secs(state: &AppState) -> i64 {
    state
        .config
        .limits
        .device_cookie_days
        .saturating_mul(86_400)
}
