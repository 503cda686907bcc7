//! Twilio's Messages resource: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, Basic auth,
//! form fields `To`, `From`, `Body`, `ValidityPeriod`. Owns the mapping from Twilio's error codes
//! to `SmsError` and the retry policy (429 and 5xx back off; everything else answers at once).

use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{SmsError, SmsSender};
use crate::config::Config;

/// Twilio drops a queued message after `ValidityPeriod` seconds; it accepts 1 to 36 000.
const MAX_VALIDITY_SECS: u64 = 36_000;

/// Destination problems: the person typed a number Twilio cannot deliver to. Everything else in
/// 4xx is about our account, credentials or sender, which the person cannot fix.
fn undeliverable_reason(code: i64) -> Option<&'static str> {
    Some(match code {
        21211 => "it is not a valid phone number",
        21614 => "it is not a mobile number",
        21610 => "it has opted out of SMS from us (reply START to opt back in)",
        21408 => "we cannot send SMS to that region",
        21612 => "our sender cannot reach it",
        _ => return None,
    })
}

/// How hard to try before giving up: the person is waiting on the sign-up request, so the whole
/// exchange stays well under a browser's patience.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (the first plus retries).
    pub attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub base_delay: Duration,
    /// The longest `Retry-After` we honour; a longer one ends the attempts at once.
    pub max_retry_after: Duration,
    /// No retry starts after this much time has passed since the first attempt.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(5),
            budget: Duration::from_secs(20),
        }
    }
}

pub struct Twilio {
    client: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
    retry: RetryPolicy,
}

/// Twilio's error body (`more_info` links to the code's documentation).
#[derive(Deserialize, Default)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
    more_info: Option<String>,
}

/// The parts of the created message resource we keep for the log.
#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
    status: Option<String>,
}

/// What one attempt came to.
enum Attempt {
    Sent,
    /// Worth another try, after at least this long (the server's `Retry-After`, if any).
    Retry(String, Option<Duration>),
    Fail(SmsError),
}

impl Twilio {
    /// Refuses to start without an account SID, auth token and sender: a half-configured provider
    /// would only fail later, on a person's sign-up.
    pub fn from_config(cfg: &Config) -> anyhow::Result<Twilio> {
        let missing = |name: &str| {
            anyhow::anyhow!(
                "AURAVITA_SMS=twilio needs {name} (see the configuration table in the README)"
            )
        };
        let account_sid = cfg
            .twilio_account_sid
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("AURAVITA_TWILIO_ACCOUNT_SID"))?
            .to_string();
        anyhow::ensure!(
            account_sid.starts_with("AC") && account_sid.chars().all(|c| c.is_ascii_alphanumeric()),
            "AURAVITA_TWILIO_ACCOUNT_SID must be an account SID (AC followed by letters and digits)"
        );
        let auth_token = cfg
            .twilio_auth_token
            .clone()
            .filter(|t| !t.expose_secret().trim().is_empty())
            .ok_or_else(|| missing("AURAVITA_TWILIO_AUTH_TOKEN"))?;
        let from = cfg
            .twilio_from
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("AURAVITA_TWILIO_FROM"))?
            .to_string();
        let base = url::Url::parse(cfg.twilio_api_base.trim())
            .context("AURAVITA_TWILIO_API_BASE is not a URL")?;
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https"),
            "AURAVITA_TWILIO_API_BASE must be an http(s) URL"
        );
        let messages_url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            base.as_str().trim_end_matches('/'),
            account_sid
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("auravita/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for Twilio")?;
        Ok(Twilio {
            client,
            messages_url,
            account_sid,
            auth_token,
            from,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy (tests shorten the waits).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Twilio {
        self.retry = retry;
        self
    }

    async fn attempt(&self, to: &str, body: &str, validity_secs: u64) -> Attempt {
        let validity = validity_secs.to_string();
        let res = self
            .client
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&[
                ("To", to),
                ("From", self.from.as_str()),
                ("Body", body),
                ("ValidityPeriod", validity.as_str()),
            ])
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            // reqwest's message names the URL (account SID, never the token) and the cause.
            Err(e) => return Attempt::Retry(format!("could not reach Twilio: {e}"), None),
        };
        let status = res.status();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = res.text().await.unwrap_or_default();
        if status.is_success() {
            let msg: Option<MessageResource> = serde_json::from_str(&text).ok();
            tracing::info!(
                target: "auravita::sms::twilio",
                sid = msg.as_ref().and_then(|m| m.sid.as_deref()).unwrap_or("-"),
                status = msg.as_ref().and_then(|m| m.status.as_deref()).unwrap_or("-"),
                "SMS accepted by Twilio"
            );
            return Attempt::Sent;
        }
        let err: TwilioError = serde_json::from_str(&text).unwrap_or_default();
        let code = err.code.unwrap_or(0);
        let what = format!(
            "HTTP {} code {} ({}){}",
            status.as_u16(),
            code,
            err.message.as_deref().unwrap_or("no message"),
            err.more_info
                .as_deref()
                .map(|m| format!(" see {m}"))
                .unwrap_or_default()
        );
        if status == StatusCode::TOO_MANY_REQUESTS || code == 20429 || status.is_server_error() {
            return Attempt::Retry(what, retry_after);
        }
        if let Some(reason) = undeliverable_reason(code) {
            tracing::info!(target: "auravita::sms::twilio", code, "Twilio cannot deliver to this number");
            return Attempt::Fail(SmsError::Undeliverable(reason.to_string()));
        }
        tracing::error!(target: "auravita::sms::twilio", error = %what, "Twilio refused the request: check the account, token and sender");
        Attempt::Fail(SmsError::Rejected(what))
    }
}

#[async_trait]
impl SmsSender for Twilio {
    async fn send(&self, to: &str, body: &str, validity: Duration) -> Result<(), SmsError> {
        let validity_secs = validity.as_secs().clamp(1, MAX_VALIDITY_SECS);
        let started = Instant::now();
        let mut delay = self.retry.base_delay;
        let mut tries = 0;
        loop {
            tries += 1;
            let (why, retry_after) = match self.attempt(to, body, validity_secs).await {
                Attempt::Sent => return Ok(()),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(why, retry_after) => (why, retry_after),
            };
            let wait = match retry_after {
                Some(ra) if ra > self.retry.max_retry_after => {
                    tracing::warn!(target: "auravita::sms::twilio", error = %why, "Twilio asks us to wait too long; giving up");
                    return Err(SmsError::Unavailable(why));
                }
                Some(ra) => ra.max(delay),
                None => delay,
            };
            if tries >= self.retry.attempts || started.elapsed() + wait > self.retry.budget {
                tracing::warn!(target: "auravita::sms::twilio", error = %why, tries, "Twilio kept failing; giving up");
                return Err(SmsError::Unavailable(why));
            }
            tracing::warn!(target: "auravita::sms::twilio", error = %why, tries, wait_ms = wait.as_millis() as u64, "Twilio failed; retrying");
            tokio::time::sleep(wait).await;
            delay = delay.saturating_mul(2);
        }
    }
}
