//! "A new sign-in to your account": raised inside every sign-in's transaction, naming the device
//! (summarised from the user agent) and the IP, so that a stolen code is noticed.

use serde_json::json;

use super::{raise_about, Kind};
use crate::app::AppState;
use crate::auth::ClientInfo;
use crate::error::AppError;

/// Raises `new_sign_in` for `user_id` about the new session `session_id` (called only for a
/// sign-in to an account already in use: not for the session an account is created or claimed
/// with). The alert is for the devices signed in before it (see `routes::may_mark_read`).
pub async fn on_sign_in(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    session_id: &str,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let device = crate::auth::session::device_summary(&client.user_agent);
    raise_about(
        tx,
        state,
        user_id,
        Kind::NewSignIn,
        &format!(
            "New sign-in to your account from {device} (IP {}). If this was not you, end that session and keep your codes private.",
            client.ip
        ),
        json!({"device": device, "ip": client.ip, "user_agent": client.user_agent}),
        Some(session_id),
    )
    .await
}

/// Raises `sign_in_stopped` for `user_id`: someone gave the sign-in code sent to the account's
/// phone, then the authenticator code wrong until the sign-in ended. The phone's codes may be
/// read by someone else; the owner hears of it as of a sign-in (any device may mark it read).
pub async fn on_second_step_dead(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let device = crate::auth::session::device_summary(&client.user_agent);
    super::raise(
        tx,
        state,
        user_id,
        Kind::SignInStopped,
        &format!(
            "Someone signing in from {device} (IP {}) gave the code sent to your phone but not your authenticator code, and the sign-in was stopped. If this was not you, someone else can read your text messages.",
            client.ip
        ),
        json!({"device": device, "ip": client.ip, "user_agent": client.user_agent}),
    )
    .await
}

/// Raises `two_step_changed` for `user_id`: two-step sign-in was turned on (`on`) or off from the
/// device `client`. Turning it off weakens the account and turning it on signs every other device
/// out, so either is told to the owner wherever they are signed in (any device may mark it read).
pub async fn on_two_step_changed(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    on: bool,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let device = crate::auth::session::device_summary(&client.user_agent);
    let message = if on {
        format!(
            "Two-step sign-in was turned on from {device} (IP {}); any other device signed in to your account was signed out. If this was not you, someone else holds a session of yours and the codes sent to your phone.",
            client.ip
        )
    } else {
        format!(
            "Two-step sign-in was turned off from {device} (IP {}): signing in now needs only the code sent to your phone. If this was not you, turn it on again and end the sessions you do not know.",
            client.ip
        )
    };
    super::raise(
        tx,
        state,
        user_id,
        Kind::TwoStepChanged,
        &message,
        json!({"enabled": on, "device": device, "ip": client.ip, "user_agent": client.user_agent}),
    )
    .await
}
