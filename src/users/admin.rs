//! Operator actions on people, run from the command line (`auravita admin ...`).

use crate::db::Db;

/// Which doctor the operator means: by phone, or, for a doctor who signs in only through the
/// identity provider (and may have no phone), by that provider's subject.
pub enum DoctorRef<'a> {
    Phone(&'a str),
    /// `issuer` as configured (`AURAVITA_OIDC_ISSUER`; a trailing `/` is ignored).
    Identity {
        issuer: &'a str,
        subject: &'a str,
    },
}

/// What the operator does: verify, with the registration number the operator checked, or take
/// the verification back.
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
    /// The phone (normalised), or `subject at issuer` for a doctor named by identity.
    pub named_by: String,
    pub name: String,
    pub registration_number: Option<String>,
}

/// Marks the doctor `who` verified (or not). Fails when no doctor is found that way, or, to
/// verify, when the doctor's registration number is missing or not the one given. Returns how
/// the doctor was named, the name and the number, for the operator to read back.
pub async fn set_doctor_verified(
    db: &Db,
    who: DoctorRef<'_>,
    what: Verification<'_>,
) -> anyhow::Result<Doctor> {
    let (named_by, row): (String, Option<(String, String, Option<String>)>) = match who {
        DoctorRef::Phone(raw) => {
            let phone = crate::auth::phone::normalize(raw, "phone")
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let row = sqlx::query_as(
                "SELECT id, name, registration_number FROM users \
                 WHERE phone = $1 AND role = 'doctor'",
            )
            .bind(&phone)
            .fetch_optional(&db.pool)
            .await?;
            (phone, row)
        }
        DoctorRef::Identity { issuer, subject } => {
            let issuer = issuer.trim().trim_end_matches('/');
            anyhow::ensure!(!issuer.is_empty(), "no identity provider is configured");
            let row = sqlx::query_as(
                "SELECT u.id, u.name, u.registration_number FROM user_identities i \
                 JOIN users u ON u.id = i.user_id \
                 WHERE i.issuer = $1 AND i.subject = $2 AND u.role = 'doctor'",
            )
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&db.pool)
            .await?;
            (format!("{subject} at {issuer}"), row)
        }
    };
    let Some((id, name, number)) = row else {
        anyhow::bail!("no doctor found for {named_by}");
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
                anyhow::bail!("{name} ({named_by}) has no registration number to verify");
            };
            anyhow::ensure!(
                stored.trim().eq_ignore_ascii_case(given),
                "{name} ({named_by}) has the registration number {stored}, not {given}: not verified"
            );
            // The same row as read: a change made meanwhile leaves it unverified.
            sqlx::query(
                "UPDATE users SET doctor_verified = 1 \
                 WHERE id = $1 AND role = 'doctor' AND name = $2 AND registration_number = $3",
            )
            .bind(&id)
            .bind(&name)
            .bind(stored)
            .execute(&db.pool)
            .await?
        }
        Verification::Unverify => {
            sqlx::query("UPDATE users SET doctor_verified = 0 WHERE id = $1 AND role = 'doctor'")
                .bind(&id)
                .execute(&db.pool)
                .await?
        }
    };
    anyhow::ensure!(
        r.rows_affected() == 1,
        "{name} ({named_by}) changed their profile meanwhile: check again"
    );
    Ok(Doctor {
        named_by,
        name,
        registration_number: number,
    })
}
