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
#[serde(deny_unknown_fields)]
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

/// How a name search runs.
enum Plan {
    /// Some 3-character window of the term is in no doctor's name.
    NoMatch,
    /// The two rarest windows (possibly the same one), both selective.
    Grams(String, String),
    /// No selective window: walk the names in order.
    Walk,
}

/// A window shared by more names than this is not worth driving from.
const SELECTIVE: i64 = 2000;
/// Windows of the term counted at most (evenly spread), each count capped at `SELECTIVE + 1`.
const SAMPLED: usize = 6;

/// The distinct 3-character windows of `s`, in order (by characters, as SQL's substr counts).
pub fn grams(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out: Vec<String> = Vec::new();
    for w in chars.windows(3) {
        let g: String = w.iter().collect();
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

async fn rarest_grams(state: &AppState, needle: &str) -> Result<Plan, AppError> {
    let all = grams(needle);
    if all.is_empty() {
        return Ok(Plan::Walk);
    }
    let picked: Vec<&String> = if all.len() <= SAMPLED {
        all.iter().collect()
    } else {
        (0..SAMPLED)
            .map(|k| &all[k * (all.len() - 1) / (SAMPLED - 1)])
            .collect()
    };
    let mut counted: Vec<(i64, String)> = Vec::with_capacity(picked.len());
    for g in picked {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT 1 FROM doctor_name_grams WHERE gram = $1 LIMIT $2) t",
        )
        .bind(g)
        .bind(SELECTIVE + 1)
        .fetch_one(&state.db.pool)
        .await?;
        if n == 0 {
            return Ok(Plan::NoMatch);
        }
        counted.push((n, g.clone()));
    }
    counted.sort();
    let (n, a) = counted[0].clone();
    if n > SELECTIVE {
        return Ok(Plan::Walk);
    }
    let b = counted
        .get(1)
        .map(|(_, g)| g.clone())
        .unwrap_or_else(|| a.clone());
    Ok(Plan::Grams(a, b))
}

/// Rewrites the name windows of `user_id` (a no-op for patients); call it in the transaction
/// that writes a doctor's name.
pub async fn index_name(conn: &mut sqlx::AnyConnection, user_id: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM doctor_name_grams WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO doctor_name_grams (gram, user_id) \
         WITH RECURSIVE pos (user_id, name, i) AS ( \
             SELECT id, name_lower, 1 FROM users \
             WHERE id = $1 AND role = 'doctor' AND length(name_lower) >= 3 \
             UNION ALL \
             SELECT user_id, name, i + 1 FROM pos WHERE i + 3 <= length(name) \
         ) \
         SELECT DISTINCT substr(name, i, 3), user_id FROM pos WHERE true \
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
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
#[utoipa::path(get, path = "/protected/user/searchDoctorByName", tag = "user", security(("session" = [])),
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
    // both databases. Not persistent prepared statements: PostgreSQL would soon switch them to a
    // generic plan, which cannot see the pattern; one-shot statements are planned with it.
    let needle = name.to_lowercase();
    let pattern = like_literal(&needle);
    let rows: Vec<DoctorRow> = match rarest_grams(&state, &needle).await? {
        Plan::NoMatch => Vec::new(),
        // Few names share the term's rarest windows: drive from them (CROSS JOIN keeps SQLite's
        // planner from walking every doctor in name order instead).
        Plan::Grams(a, b) => {
            sqlx::query_as(&format!(
                "SELECT {DOCTOR_COLS} FROM doctor_name_grams g CROSS JOIN users u \
                 WHERE g.gram = $4 AND u.id = g.user_id AND u.role = 'doctor' \
                   AND u.name_lower LIKE '%' || $1 || '%' ESCAPE '\\' \
                   AND EXISTS (SELECT 1 FROM doctor_name_grams h WHERE h.gram = $5 AND h.user_id = u.id) \
                 ORDER BY u.name_lower, u.id LIMIT $2 OFFSET $3"
            ))
            .persistent(false)
            .bind(&pattern)
            .bind(limit + 1)
            .bind((page - 1) * limit)
            .bind(a)
            .bind(b)
            .fetch_all(&state.db.pool)
            .await?
        }
        // Short or common terms: walk the doctors in name order; many match, so the page fills
        // (and the walk stops) early. PostgreSQL's trigram index also serves this LIKE.
        Plan::Walk => {
            sqlx::query_as(&format!(
                "SELECT {DOCTOR_COLS} FROM users u \
                 WHERE u.role = 'doctor' AND u.name_lower LIKE '%' || $1 || '%' ESCAPE '\\' \
                 ORDER BY u.name_lower, u.id LIMIT $2 OFFSET $3"
            ))
            .persistent(false)
            .bind(&pattern)
            .bind(limit + 1)
            .bind((page - 1) * limit)
            .fetch_all(&state.db.pool)
            .await?
        }
    };
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
#[serde(deny_unknown_fields)]
pub struct PhoneQuery {
    /// The doctor's phone, E.164 (`+919876543210`).
    pub phone: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DoctorFound {
    pub doctor: DoctorView,
}

/// Find a doctor by phone number.
#[utoipa::path(get, path = "/protected/user/searchDoctorByNumber", tag = "user", security(("session" = [])),
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
