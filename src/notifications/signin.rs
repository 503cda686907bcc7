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
