//! Kong authentication (SPEC §2.1): Kong has authenticated the caller and forwards who it is
//! as headers; this extractor admits robots only.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::problem::{ApiError, canonical_id};

/// The calling robot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Robot {
    pub id: i64,
}

impl FromRequestParts<AppState> for Robot {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = |name: &str| -> Result<String, ApiError> {
            // Kong sets each once: a repeated identity header is not Kong's.
            if parts.headers.get_all(name).iter().count() > 1 {
                return Err(ApiError::Unauthorized(format!("header {name} is repeated")));
            }
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::Unauthorized(format!("missing or empty header {name}")))
        };
        header("x-consumer-id")?;
        let username = header("x-consumer-username")?;
        let user_id = header("x-authenticated-userid")?;
        if *username.trim() != *state.robot_consumer_username {
            return Err(ApiError::Forbidden(
                "only robots may call this API".to_owned(),
            ));
        }
        if let Some(scope) = parts.headers.get("x-authenticated-scope")
            && scope.to_str().map(str::trim).ok() != Some("robot")
        {
            return Err(ApiError::Forbidden(
                "the authenticated scope is not robot".to_owned(),
            ));
        }
        let id = canonical_id(&user_id).ok_or_else(|| {
            ApiError::Unauthorized(
                "x-authenticated-userid is not a robot id (1 to 2^63-1, digits only, no leading \
                 zero)"
                    .to_owned(),
            )
        })?;
        tracing::Span::current().record("robot_id", id);
        Ok(Robot { id })
    }
}
