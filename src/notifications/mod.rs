//! Notifications: stored first, then pushed to the user's live event streams on every instance.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::AppError;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ConnectionRequested,
    ConnectionAccepted,
    ConnectionRejected,
    ConnectionEnded,
    FileAccessGranted,
    FileAccessRevoked,
    FileShared,
    PatientAccountCreated,
    NewSignIn,
}

/// Raises a notification for `user_id` inside the caller's transaction: it exists (and is pushed)
/// only if that transaction commits, so an action that fails raises nothing.
pub async fn raise(
    _tx: &mut sqlx::AnyConnection,
    _state: &AppState,
    _user_id: &str,
    _kind: Kind,
    _message: &str,
    _data: serde_json::Value,
) -> Result<(), AppError> {
    Ok(())
}

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
}
