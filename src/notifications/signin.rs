//! "A new sign-in to your account": raised inside every sign-in's transaction, naming the device
//! (summarised from the user agent) and the IP, so that a stolen code is noticed.

use serde_json::json;

use super::{raise, Kind};
use crate::app::AppState;
use crate::auth::ClientInfo;
use crate::error::AppError;

/// Raises `new_sign_in` for `user_id`, unless this session is the one the account was created
/// with (a sign-up is not news to its owner): that session and the account share one timestamp.
pub async fn on_sign_in(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
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
    let device = device_summary(&client.user_agent);
    raise(
        tx,
        state,
        user_id,
        Kind::NewSignIn,
        &format!(
            "New sign-in to your account from {device} (IP {}). If this was not you, end that session and keep your codes private.",
            client.ip
        ),
        json!({"device": device, "ip": client.ip, "user_agent": client.user_agent}),
    )
    .await
}

/// "Firefox on Linux", "Safari on iPhone", "curl", or "an unknown device": enough for a person to
/// recognise their own device, without pretending to parse every user agent.
pub fn device_summary(ua: &str) -> String {
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") || has("Edge/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("SamsungBrowser/") {
        Some("Samsung Internet")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        Some("Chrome")
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else {
        None
    };
    let os = if has("iPhone") {
        Some("iPhone")
    } else if has("iPad") {
        Some("iPad")
    } else if has("Android") {
        Some("Android")
    } else if has("Windows") {
        Some("Windows")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("a browser on {o}"),
        (None, None) => {
            // Tools: their product token ("curl/8.5.0" → "curl").
            let token = ua.split(['/', ' ']).next().unwrap_or("").trim();
            let clean = !token.is_empty()
                && token.len() <= 32
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if clean {
                token.to_string()
            } else {
                "an unknown device".to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::device_summary;

    #[test]
    fn summaries() {
        assert_eq!(
            device_summary(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
            ),
            "Firefox on Linux"
        );
        assert_eq!(
            device_summary("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
            "Safari on iPhone"
        );
        assert_eq!(
            device_summary("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"),
            "Edge on Windows"
        );
        assert_eq!(
            device_summary("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"),
            "Chrome on Android"
        );
        assert_eq!(device_summary("curl/8.5.0"), "curl");
        assert_eq!(device_summary(""), "an unknown device");
        assert_eq!(device_summary("<script>"), "an unknown device");
    }
}
