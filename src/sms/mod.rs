//! Outgoing SMS behind one trait: `console` (the message in the log, the default), `twilio`
//! (Twilio's Messages REST resource), and an optional outbox file every message is appended to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::config::Config;

pub mod twilio;

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The provider says the destination cannot receive this message (bad or unreachable number).
    #[error("the number cannot receive SMS: {0}")]
    Undeliverable(String),
    /// The provider refused us (credentials, account, sender): an operator problem.
    #[error("the SMS provider refused the request: {0}")]
    Rejected(String),
    /// The provider could not be reached or kept failing.
    #[error("the SMS provider is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends `body` to `to` (E.164). `validity` is how long the message is worth delivering: a
    /// provider that supports it drops the message after that instead of delivering it late.
    async fn send(&self, to: &str, body: &str, validity: Duration) -> Result<(), SmsError>;
}

/// Prints each message in the log: the default, so a fresh install can sign in with no provider.
pub struct ConsoleSms;

#[async_trait]
impl SmsSender for ConsoleSms {
    async fn send(&self, to: &str, body: &str, _validity: Duration) -> Result<(), SmsError> {
        tracing::info!(target: "auravita::sms::console", to, body, "SMS (console provider)");
        Ok(())
    }
}

/// Appends every message as one JSON line `{"to","body","sent_at"}`, then hands it on.
pub struct Outbox {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
    inner: Arc<dyn SmsSender>,
}

#[async_trait]
impl SmsSender for Outbox {
    async fn send(&self, to: &str, body: &str, validity: Duration) -> Result<(), SmsError> {
        let line = serde_json::json!({
            "to": to,
            "body": body,
            "sent_at": crate::clock::rfc3339_now(),
        })
        .to_string()
            + "\n";
        {
            let _guard = self.lock.lock().await;
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| SmsError::Unavailable(format!("outbox: {e}")))?;
            f.write_all(line.as_bytes())
                .await
                .map_err(|e| SmsError::Unavailable(format!("outbox: {e}")))?;
            // tokio hands writes to a blocking thread: the line is on disk only after flush.
            f.flush()
                .await
                .map_err(|e| SmsError::Unavailable(format!("outbox: {e}")))?;
        }
        self.inner.send(to, body, validity).await
    }
}

pub fn from_config(cfg: &Config) -> anyhow::Result<Arc<dyn SmsSender>> {
    let base: Arc<dyn SmsSender> = match cfg.sms.as_str() {
        "console" => Arc::new(ConsoleSms),
        "twilio" => Arc::new(
            twilio::Twilio::from_config(cfg).context("configuring the twilio SMS provider")?,
        ),
        other => anyhow::bail!("unknown SMS provider {other:?} (expected console or twilio)"),
    };
    Ok(match &cfg.sms_outbox {
        Some(path) => {
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            Arc::new(Outbox {
                path: path.clone(),
                lock: tokio::sync::Mutex::new(()),
                inner: base,
            })
        }
        None => base,
    })
}
