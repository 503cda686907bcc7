//! Twilio's Messages resource: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`.

use std::time::Duration;

use async_trait::async_trait;

use super::{SmsError, SmsSender};
use crate::config::Config;

pub struct Twilio {}

impl Twilio {
    pub fn from_config(_cfg: &Config) -> anyhow::Result<Twilio> {
        anyhow::bail!("twilio provider not built yet")
    }
}

#[async_trait]
impl SmsSender for Twilio {
    async fn send(&self, _to: &str, _body: &str, _validity: Duration) -> Result<(), SmsError> {
        Err(SmsError::Unavailable("not built yet".into()))
    }
}
