//! One-time codes: issued under per-phone limits, stored as keyed hashes, claimed by one
//! conditional UPDATE so a code is used at most once even under concurrent verifies.

use std::time::Duration;

use axum::http::StatusCode;
use rand::Rng;
use serde_json::json;

use crate::app::AppState;
use crate::error::AppError;
use crate::sms::SmsError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Signup,
    Signin,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Signup => "signup",
            Purpose::Signin => "signin",
        }
    }
}

pub struct NewChallenge<'a> {
    pub purpose: Purpose,
    pub phone: &'a str,
    /// The limits' lane the code is counted in (`crate::auth::device::lane`): the phone, or
    /// the phone and the asking browser's device.
    pub lane: &'a str,
    /// signin: the account, or `None` when the phone has none (the code then opens nothing and
    /// no SMS is sent, but the caller sees the same answer).
    pub user_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub role: Option<&'a str>,
}

/// Reserves the lane's send quota, replaces the lane's live code with a new one, and sends it.
/// Returns the challenge id the client verifies against.
pub async fn issue(state: &AppState, c: NewChallenge<'_>) -> Result<String, AppError> {
    let now = state.clock.now();
    reserve_send(state, c.lane, now, true).await?;

    let id = crate::db::new_id();
    let code = new_code();
    let deliver = c.purpose == Purpose::Signup || c.user_id.is_some();
    let code_hash = if deliver {
        state.keys.otp_hash(&id, &code)
    } else {
        // Nobody will ever see a code for an unknown phone: store a hash no code can match.
        let mut junk = [0u8; 32];
        rand::rngs::OsRng.fill(&mut junk);
        crate::keys::sha256_hex(&junk)
    };
    let ttl_ms = state.config.limits.otp_ttl_secs * 1000;
    let mut tx = state.db.begin().await?;
    // The new code carries the wrong tries of the one it replaces: otherwise asking for a new
    // code before the fifth wrong guess would never kill one, and the lane would never back off.
    // Only the lane's own code is replaced: a stranger asking for codes for this phone neither
    // ends the code the owner's browser is typing nor hands it the stranger's wrong tries.
    let replaced: Vec<(i64,)> = sqlx::query_as(
        "UPDATE otp_challenges SET state = 'replaced' \
         WHERE phone = $1 AND COALESCE(lane, phone) = $2 AND state = 'live' RETURNING attempts",
    )
    .bind(c.phone)
    .bind(c.lane)
    .fetch_all(&mut *tx)
    .await?;
    let carried = replaced.iter().map(|r| r.0).max().unwrap_or(0);
    sqlx::query(
        "INSERT INTO otp_challenges (id, purpose, phone, user_id, name, role, code_hash, attempts, state, created_at, expires_at, lane) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $10, 'live', $8, $9, $11)",
    )
    .bind(&id)
    .bind(c.purpose.as_str())
    .bind(c.phone)
    .bind(c.user_id)
    .bind(c.name)
    .bind(c.role)
    .bind(&code_hash)
    .bind(now)
    .bind(now + ttl_ms)
    .bind(carried)
    .bind(c.lane)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    if deliver {
        let body = message(state, &code);
        let validity = Duration::from_secs(state.config.limits.otp_ttl_secs as u64);
        if c.purpose == Purpose::Signin {
            // An unknown phone sends nothing. Were a known phone's answer to wait for the SMS
            // provider (or report its failure, give the cooldown back, kill the code), the timing
            // or the answer would reveal that the phone has an account: send in the background.
            let sms = state.sms.clone();
            let to = c.phone.to_string();
            let sending = InFlight::start(&state.sms_in_flight);
            tokio::spawn(async move {
                if let Err(e) = sms.send(&to, &body, validity).await {
                    tracing::warn!(error = %e, "a sign-in code could not be sent");
                }
                drop(sending);
            });
            return Ok(id);
        }
        if let Err(e) = state.sms.send(c.phone, &body, validity).await {
            // The code was never delivered: kill it and give the cooldown back so the person can
            // try again at once (the hourly count stays, so this cannot be used to flood).
            sqlx::query("UPDATE otp_challenges SET state = 'dead' WHERE id = $1")
                .bind(&id)
                .execute(&state.db.pool)
                .await?;
            give_cooldown_back(state, c.lane).await?;
            return Err(sms_error(e));
        }
    }
    Ok(id)
}

/// Six random digits.
pub(crate) fn new_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// The SMS that carries a code: the code first, so phones can offer to fill it in.
fn message(state: &AppState, code: &str) -> String {
    format!(
        "{code} is your Auravita code. It expires in {} minutes. Never share it: Auravita staff will not ask for it.",
        ttl_minutes(state)
    )
}

/// A code's lifetime in whole minutes (rounded up), as its SMS says it.
pub(crate) fn ttl_minutes(state: &AppState) -> i64 {
    (state.config.limits.otp_ttl_secs + 59) / 60
}

/// A code was never delivered: its lane's cooldown is given back so the person can try again at
/// once (the hourly count stays, so this cannot be used to flood).
pub(crate) async fn give_cooldown_back(state: &AppState, lane: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE phone_limits SET last_sent_at = 0 WHERE phone = $1")
        .bind(lane)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

pub(crate) fn sms_error(e: SmsError) -> AppError {
    match e {
        SmsError::Undeliverable(why) => AppError::invalid(
            "phone",
            format!("we could not send a code to that number: {why}"),
        )
        .with_details(json!({"field": "phone", "reason": "undeliverable"})),
        SmsError::Rejected(why) => {
            let mut err = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SMS_UNAVAILABLE",
                "we could not send a code right now; try again shortly",
            );
            err.source = Some(anyhow::anyhow!("SMS provider rejected the request: {why}"));
            err
        }
        SmsError::Unavailable(why) => {
            AppError::unavailable("the SMS service", anyhow::anyhow!(why))
        }
    }
}

/// How far the phone's own lane (everyone without a device cookie for it) may bring the phone's
/// hourly count: `AURAVITA_OTP_PHONE_PER_HOUR` less what is kept for the owner's browsers, which
/// is `AURAVITA_OTP_PER_HOUR` or half the phone's count, whichever is less (10 and 5: 5 each).
/// At least 1, so a phone's count set at or below the lane's does not leave the phone one code.
pub fn phone_lane_share(l: &crate::config::Limits) -> i64 {
    let kept = l.otp_per_hour.min(l.otp_phone_per_hour / 2);
    (l.otp_phone_per_hour - kept).max(1)
}

/// Reserves one send in `lane` (a phone, or a phone and a device: `crate::auth::device`): allowed
/// only if the lane's cooldown has passed (when `cooldown`), the lane is not backing off, its
/// hourly allowance is not used up, and neither is the phone's across all its lanes
/// (`AURAVITA_OTP_PHONE_PER_HOUR`, so device lanes cannot multiply what one number receives).
/// The phone's own lane (strangers, and browsers new to the account) may take the phone's count
/// only to `phone_lane_share`: the rest of each hour is kept for the owner's browsers, however a
/// stranger times the two hourly windows.
/// Each check and its count are one conditional UPDATE, and both counts one transaction:
/// concurrent requests cannot exceed either, and a refusal counts nowhere. The code that confirms
/// turning two-step sign-in on skips the cooldown: it follows a sign-in's code by moments, and
/// the hourly allowances still bound it.
pub(crate) async fn reserve_send(
    state: &AppState,
    lane: &str,
    now: i64,
    cooldown: bool,
) -> Result<(), AppError> {
    let l = &state.config.limits;
    let cooldown_ms = if cooldown {
        l.otp_cooldown_secs * 1000
    } else {
        0
    };
    let hour_ago = now - 3_600_000;
    let phone = lane.split_once('#').map_or(lane, |(phone, _)| phone);
    // The phone's count across its lanes, under a key no lane has.
    let all = format!("{phone}#all");
    sqlx::query(
        "INSERT INTO phone_limits (phone) VALUES ($1), ($2) ON CONFLICT (phone) DO NOTHING",
    )
    .bind(lane)
    .bind(&all)
    .execute(&state.db.pool)
    .await?;
    // The phone's count has no cooldown and no back-off of its own: its row's last send, set by
    // any lane on any instance (whose clock may run a little ahead), must not refuse this one.
    let any_time = i64::MAX;
    let all_max = if lane == phone {
        phone_lane_share(l)
    } else {
        l.otp_phone_per_hour
    };
    let count = |key: &str, max: i64, earliest_last: i64| {
        sqlx::query_as::<_, (String,)>(
            "UPDATE phone_limits SET last_sent_at = $2, \
               hour_count = CASE WHEN hour_start <= $3 THEN 1 ELSE hour_count + 1 END, \
               hour_start = CASE WHEN hour_start <= $3 THEN $2 ELSE hour_start END \
             WHERE phone = $1 AND last_sent_at <= $4 AND locked_until <= $2 \
               AND (hour_start <= $3 OR hour_count < $5) \
             RETURNING phone",
        )
        .bind(key.to_string())
        .bind(now)
        .bind(hour_ago)
        .bind(earliest_last)
        .bind(max)
    };
    let mut tx = state.db.begin().await?;
    let in_lane = count(lane, l.otp_per_hour, now - cooldown_ms)
        .fetch_optional(&mut *tx)
        .await?;
    let refused = if in_lane.is_none() {
        lane
    } else {
        let in_all = count(&all, all_max, any_time)
            .fetch_optional(&mut *tx)
            .await?;
        if in_all.is_some() {
            tx.commit().await?;
            return Ok(());
        }
        all.as_str()
    };
    drop(tx);
    // Both rows: the lane's and the phone's count across its lanes. Every wait that holds either
    // back is counted, the refusing row's first named: `Retry-After` is the longest, so a client
    // that waits that long is not refused again for another of them (a lane's cooldown ending
    // while the phone's hour is used up, say).
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT phone, last_sent_at, hour_start, hour_count, locked_until FROM phone_limits \
         WHERE phone = $1 OR phone = $2",
    )
    .bind(lane)
    .bind(&all)
    .fetch_all(&state.db.pool)
    .await?;
    let mut waits = Vec::new();
    for (key, last_sent, hour_start, hour_count, locked_until) in rows {
        let in_lane = key == lane;
        let max = if in_lane { l.otp_per_hour } else { all_max };
        let first = key == refused;
        if in_lane && locked_until > now {
            waits.push((
                first,
                "OTP_BACKOFF",
                "too many wrong codes for this phone; wait before asking for a new one",
                locked_until,
            ));
        }
        if in_lane && last_sent + cooldown_ms > now {
            waits.push((
                first,
                "OTP_COOLDOWN",
                "a code was sent to this phone moments ago; wait before asking for another",
                last_sent + cooldown_ms,
            ));
        }
        if hour_start > hour_ago && hour_count >= max {
            waits.push((
                first,
                "OTP_HOURLY_LIMIT",
                "too many codes for this phone this hour",
                hour_start + 3_600_000,
            ));
        }
    }
    let named = waits
        .iter()
        .find(|w| w.0)
        .or_else(|| waits.first())
        .map(|w| (w.1, w.2));
    // None holds any longer (it ran out between the two statements): a second's wait.
    let (code, message) = named.unwrap_or((
        "OTP_HOURLY_LIMIT",
        "too many codes for this phone this hour",
    ));
    let until = waits.iter().map(|w| w.3).max().unwrap_or(now + 1000);
    Err(AppError::rate_limited(
        code,
        message,
        ((until - now).max(0) as u64).div_ceil(1000),
    ))
}

/// state, attempts, phone, user_id, name, role, lane
type TriedRow = (
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

pub struct Claimed {
    pub phone: String,
    /// The lane the code was sent in: a second step's wrong tries and the sign-in's forgiveness
    /// belong to it.
    pub lane: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
}

/// Claims a challenge with its code, in its own statement (not inside the caller's transaction:
/// SQLite would hold the write lock the refusal path needs). A claimed code is spent even if the
/// sign-in that follows fails. A wrong code counts against the code (and, when it dies, against
/// the phone); every other refusal says precisely why.
///
/// Comparing the code and counting a wrong one are one statement: guesses sent at the same
/// moment each find the count the one before left (the row is locked while it is updated), so a
/// code is compared with at most `otp_max_attempts` wrong guesses however they are timed.
pub async fn claim(
    state: &AppState,
    purpose: Purpose,
    challenge_id: &str,
    code: &str,
) -> Result<Claimed, AppError> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::invalid("otp", "the code is 6 digits"));
    }
    let now = state.clock.now();
    let max = state.config.limits.otp_max_attempts;
    let tried: Option<TriedRow> = sqlx::query_as(
        "UPDATE otp_challenges SET \
           attempts = attempts + CASE WHEN code_hash = $4 THEN 0 ELSE 1 END, \
           state = CASE WHEN code_hash = $4 THEN 'used' \
                        WHEN attempts + 1 >= $5 THEN 'dead' ELSE state END \
         WHERE id = $1 AND purpose = $2 AND state = 'live' AND expires_at > $3 AND attempts < $5 \
         RETURNING state, attempts, phone, user_id, name, role, COALESCE(lane, phone)",
    )
    .bind(challenge_id)
    .bind(purpose.as_str())
    .bind(now)
    .bind(state.keys.otp_hash(challenge_id, code))
    .bind(max)
    .fetch_optional(&state.db.pool)
    .await?;
    match tried {
        Some((st, _, phone, user_id, name, role, lane)) if st == "used" => Ok(Claimed {
            phone,
            lane,
            user_id,
            name,
            role,
        }),
        Some((st, _, _, _, _, _, lane)) if st == "dead" => {
            back_off(state, &lane, now).await?;
            Err(AppError::gone(
                "OTP_DEAD",
                "too many wrong codes: this code no longer works; ask for a new one",
            ))
        }
        Some((_, attempts, ..)) => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "OTP_INVALID",
            "that code is not right",
        )
        .with_details(json!({ "field": "otp", "attempts_left": max - attempts }))),
        None => Err(refusal(state, purpose, challenge_id).await),
    }
}

/// Why a challenge could not be tried at all.
async fn refusal(state: &AppState, purpose: Purpose, challenge_id: &str) -> AppError {
    match refusal_inner(state, purpose, challenge_id).await {
        Ok(e) | Err(e) => e,
    }
}

async fn refusal_inner(
    state: &AppState,
    purpose: Purpose,
    challenge_id: &str,
) -> Result<AppError, AppError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT state, expires_at FROM otp_challenges WHERE id = $1 AND purpose = $2",
    )
    .bind(challenge_id)
    .bind(purpose.as_str())
    .fetch_optional(&state.db.pool)
    .await?;
    Ok(match row {
        None => AppError::not_found("verification"),
        Some((st, _)) if st == "used" => AppError::gone("OTP_USED", "that code was already used"),
        Some((st, _)) if st == "dead" => AppError::gone(
            "OTP_DEAD",
            "too many wrong codes: this code no longer works; ask for a new one",
        ),
        Some((st, _)) if st == "replaced" => {
            AppError::gone("OTP_REPLACED", "a newer code was sent; use the latest one")
        }
        Some(_) => AppError::gone("OTP_EXPIRED", "that code has expired; ask for a new one"),
    })
}

/// A code died of wrong tries: its lane waits 30 s, then 60 s, ... up to an hour before the next
/// code. A resend does not reset this; only a successful sign-in does.
pub(crate) async fn back_off(state: &AppState, lane: &str, now: i64) -> Result<(), AppError> {
    let l = &state.config.limits;
    let (dead,): (i64,) = sqlx::query_as(
        "UPDATE phone_limits SET dead_codes = dead_codes + 1 WHERE phone = $1 RETURNING dead_codes",
    )
    .bind(lane)
    .fetch_one(&state.db.pool)
    .await?;
    let exp = (dead - 1).clamp(0, 20) as u32;
    let wait = (l.otp_backoff_secs.saturating_mul(1i64 << exp)).min(l.otp_backoff_max_secs);
    sqlx::query("UPDATE phone_limits SET locked_until = $2 WHERE phone = $1")
        .bind(lane)
        .bind(now + wait * 1000)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

/// After a successful sign-in the failure history of the lane its code came through is forgiven
/// (a stranger's wrong tries on the phone's own lane are not the owner's to forgive).
pub async fn forgive(tx: &mut sqlx::AnyConnection, lane: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE phone_limits SET dead_codes = 0, locked_until = 0 WHERE phone = $1")
        .bind(lane)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// One send counted in `AppState::sms_in_flight` (which shutdown waits for) until dropped, as
/// its task is when the send ends, fails or panics.
struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn start(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod in_flight_tests {
    use super::InFlight;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_send_whose_task_panics_is_no_longer_counted() {
        let count = Arc::new(AtomicUsize::new(0));
        let sending = InFlight::start(&count);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let task = tokio::spawn(async move {
            let _sending = sending;
            panic!("a provider's bug");
        });
        assert!(task.await.is_err());
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
