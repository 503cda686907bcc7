//! "A new sign-in to your account": raised inside every sign-in's transaction, naming the device
//! (summarised from the user agent) and the IP, so that a stolen code is noticed.

use serde_json::json;

use super::{raise_about, Kind};
use crate::app::AppState;
use crate::auth::ClientInfo;
use crate::error::AppError;

/// Raises `new_sign_in` for `user_id` about the new session `session_id`, unless this session is
/// the one the account was created with (a sign-up is not news to its owner): that session and
/// the account share one timestamp. The alert is for the account's other devices: the session it
/// reports cannot mark it read (see `routes`).
pub async fn on_sign_in(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    session_id: &str,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let newest: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT u.created_at, (SELECT MAX(s.created_at) FROM sessions s WHERE s.user_id = u.id) \
         FROM users u WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((created_at, Some(session_at))) = newest {
        if session_at <= created_at {
            return Ok(());
        }
    }
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
