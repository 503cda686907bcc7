//! Operator actions on people, run from the command line (`auravita admin ...`).

use crate::db::Db;

/// Marks the doctor with this phone verified (or not). Fails when no doctor has the phone.
/// Returns the phone, normalised.
pub async fn set_doctor_verified(
    db: &Db,
    raw_phone: &str,
    verified: bool,
) -> anyhow::Result<String> {
    let phone = crate::auth::phone::normalize(raw_phone, "phone")
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let r =
        sqlx::query("UPDATE users SET doctor_verified = $1 WHERE phone = $2 AND role = 'doctor'")
            .bind(i64::from(verified))
            .bind(&phone)
            .execute(&db.pool)
            .await?;
    anyhow::ensure!(r.rows_affected() == 1, "no doctor has the phone {phone}");
    Ok(phone)
}
