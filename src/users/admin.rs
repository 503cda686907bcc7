//! Operator actions on people, run from the command line (`auravita admin ...`).

use crate::db::Db;

/// What the operator acts on: a doctor by phone, and for a verification the registration number
/// the operator checked.
pub enum Verification<'a> {
    /// Verified only if the doctor's stored registration number is this one (compared as typed,
    /// ignoring case and surrounding spaces): a doctor who changed it between the operator's
    /// check and the command is not verified with a number nobody checked.
    Verify {
        registration_number: &'a str,
    },
    Unverify,
}

/// The doctor as the command left them.
#[derive(Debug)]
pub struct Doctor {
    pub phone: String,
    pub name: String,
    pub registration_number: Option<String>,
}

/// Marks the doctor with this phone verified (or not). Fails when no doctor has the phone, or,
/// to verify, when the doctor's registration number is missing or not the one given. Returns
/// the doctor's phone (normalised), name and number, for the operator to read back.
pub async fn set_doctor_verified(
    db: &Db,
    raw_phone: &str,
    what: Verification<'_>,
) -> anyhow::Result<Doctor> {
    let phone = crate::auth::phone::normalize(raw_phone, "phone")
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT name, registration_number FROM users WHERE phone = $1 AND role = 'doctor'",
    )
    .bind(&phone)
    .fetch_optional(&db.pool)
    .await?;
    let Some((name, number)) = row else {
        anyhow::bail!("no doctor has the phone {phone}");
    };
    let r = match what {
        Verification::Verify {
            registration_number,
        } => {
            let given = registration_number.trim();
            anyhow::ensure!(
                !given.is_empty(),
                "give the registration number you checked"
            );
            let Some(stored) = number.as_deref() else {
                anyhow::bail!("{name} ({phone}) has no registration number to verify");
            };
            anyhow::ensure!(
                stored.trim().eq_ignore_ascii_case(given),
                "{name} ({phone}) has the registration number {stored}, not {given}: not verified"
            );
            // The same row as read: a change made meanwhile leaves it unverified.
            sqlx::query(
                "UPDATE users SET doctor_verified = 1 \
                 WHERE phone = $1 AND role = 'doctor' AND name = $2 AND registration_number = $3",
            )
            .bind(&phone)
            .bind(&name)
            .bind(stored)
            .execute(&db.pool)
            .await?
        }
        Verification::Unverify => {
            sqlx::query("UPDATE users SET doctor_verified = 0 WHERE phone = $1 AND role = 'doctor'")
                .bind(&phone)
                .execute(&db.pool)
                .await?
        }
    };
    anyhow::ensure!(
        r.rows_affected() == 1,
        "{name} ({phone}) changed their profile meanwhile: check again"
    );
    Ok(Doctor {
        phone,
        name,
        registration_number: number,
    })
}
