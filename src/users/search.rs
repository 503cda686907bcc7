//! Finding doctors: by a case-insensitive piece of the name (paged), or by phone number. Both
//! show whether an operator has verified the doctor.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{not_found, ApiOk, ApiQuery, ApiResult};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{AppError, ErrorEnvelope};

/// A doctor as search shows them.
#[derive(Serialize, ToSchema)]
pub struct DoctorView {
    pub id: String,
    pub name: String,
    /// An operator has checked the registration number. Patients may still connect to an
    /// unverified doctor, but should be warned.
    pub verified: bool,
    pub specialization: Option<String>,
    pub qualification: Option<String>,
    pub registration_number: Option<String>,
    pub years_of_experience: Option<i64>,
}

const DOCTOR_COLS: &str = "u.id, u.name, u.doctor_verified, u.specialization, u.qualification, \
                           u.registration_number, u.years_of_experience";

type DoctorRow = (
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn doctor_view(
    (id, name, verified, specialization, qualification, registration_number, years): DoctorRow,
) -> DoctorView {
    DoctorView {
        id,
        name,
        verified: verified != 0,
        specialization,
        qualification,
        registration_number,
        years_of_experience: years,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NameQuery {
    /// A piece of the doctor's name, any case (1 to 100 characters).
    pub name: Option<String>,
    /// Results per page, 1 to 50 (default 10).
    pub limit: Option<i64>,
    /// Page number, from 1 (default 1).
    pub page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct DoctorPage {
    pub doctors: Vec<DoctorView>,
    pub page: i64,
    pub limit: i64,
    /// Whether a next page exists.
    pub has_more: bool,
}

/// Escapes LIKE's wildcards so the input matches literally (`\` is the escape character).
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Search doctors by a piece of their name, case-insensitively, alphabetically, a page at a time.
#[utoipa::path(get, path = "/searchDoctorByName", tag = "user", security(("session" = [])),
    params(NameQuery),
    responses(
        (status = 200, body = crate::api::Envelope<DoctorPage>),
        (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn by_name(
    State(state): State<AppState>,
    _me: AuthUser,
    ApiQuery(q): ApiQuery<NameQuery>,
) -> ApiResult<DoctorPage> {
    let name = q.name.as_deref().unwrap_or("").trim();
    if name.is_empty() {
        return Err(AppError::invalid(
            "name",
            "give a piece of the doctor's name to search for",
        ));
    }
    if name.chars().count() > 100 {
        return Err(AppError::invalid("name", "name is at most 100 characters"));
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(AppError::invalid("limit", "limit must be between 1 and 50"));
    }
    let page = q.page.unwrap_or(1);
    if !(1..=1000).contains(&page) {
        return Err(AppError::invalid("page", "page must be between 1 and 1000"));
    }
    // Lower-cased here exactly as `name_lower` was written, so the match is case-insensitive on
    // both databases; the PostgreSQL trigram index serves this LIKE (see 0002_users.postgres.sql).
    // Not a persistent prepared statement: PostgreSQL would soon switch it to a generic plan,
    // which cannot see the pattern, ignores the trigram index and scans every doctor (~200 ms
    // at 100k); a one-shot statement is planned with the actual pattern every time.
    let rows: Vec<DoctorRow> = sqlx::query_as(&format!(
        "SELECT {DOCTOR_COLS} FROM users u \
         WHERE u.role = 'doctor' AND u.name_lower LIKE '%' || $1 || '%' ESCAPE '\\' \
         ORDER BY u.name_lower, u.id LIMIT $2 OFFSET $3"
    ))
    .persistent(false)
    .bind(like_literal(&name.to_lowercase()))
    .bind(limit + 1)
    .bind((page - 1) * limit)
    .fetch_all(&state.db.pool)
    .await?;
    let has_more = rows.len() as i64 > limit;
    let doctors: Vec<DoctorView> = rows
        .into_iter()
        .take(limit as usize)
        .map(doctor_view)
        .collect();
    let message = format!("{} doctor(s)", doctors.len());
    Ok(ApiOk::new(
        DoctorPage {
            doctors,
            page,
            limit,
            has_more,
        },
        message,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PhoneQuery {
    /// The doctor's phone, E.164 (`+919876543210`).
    pub phone: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DoctorFound {
    pub doctor: DoctorView,
}

/// Find a doctor by phone number.
#[utoipa::path(get, path = "/searchDoctorByNumber", tag = "user", security(("session" = [])),
    params(PhoneQuery),
    responses(
        (status = 200, body = crate::api::Envelope<DoctorFound>),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
pub async fn by_number(
    State(state): State<AppState>,
    _me: AuthUser,
    ApiQuery(q): ApiQuery<PhoneQuery>,
) -> ApiResult<DoctorFound> {
    let phone = crate::auth::phone::normalize(q.phone.as_deref().unwrap_or(""), "phone")?;
    let row: Option<DoctorRow> = sqlx::query_as(&format!(
        "SELECT {DOCTOR_COLS} FROM users u WHERE u.phone = $1 AND u.role = 'doctor'"
    ))
    .bind(&phone)
    .fetch_optional(&state.db.pool)
    .await?;
    let doctor = doctor_view(row.ok_or_else(|| not_found("doctor"))?);
    Ok(ApiOk::new(DoctorFound { doctor }, "doctor found"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_match_literally() {
        assert_eq!(super::like_literal("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(super::like_literal("rao"), "rao");
    }
}
