//! Error answers: `application/problem+json` with a title and, for bad input, the field.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) struct Problem {
    status: StatusCode,
    detail: String,
    field: Option<&'static str>,
}

impl Problem {
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
            field: None,
        }
    }

    /// 404 naming the field that names something unknown (an event schema, a provider).
    pub(crate) fn unknown_field(field: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
            field: Some(field),
        }
    }

    pub(crate) fn bad_field(field: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
            field: Some(field),
        }
    }

    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: detail.into(),
            field: None,
        }
    }

    pub(crate) fn bad_gateway(detail: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::BAD_GATEWAY,
            detail: detail.into(),
            field: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(body),
        )
            .into_response()
    }
}

/// Turns axum's JSON and path rejections into problems naming what was wrong.
pub(crate) fn rejection(field: &'static str, e: impl std::fmt::Display) -> Problem {
    Problem::bad_field(field, e.to_string())
}
