//! RFC 9457 problem details: every error the API returns, with the request id, and never a
//! stack trace, SQL text or an upstream's raw body.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

use super::request_id;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, e.g. `stepId`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// `field` is not an id as [`canonical_id`] accepts one.
    pub fn not_an_id(field: &str) -> Self {
        FieldError {
            field: field.to_owned(),
            message: "must be a positive integer (digits only, no leading zero)".to_owned(),
        }
    }
}

/// The `application/problem+json` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    pub request_id: String,
}

/// A problem+json response as the OpenAPI document shows one: the `Problem` schema.
fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
        .into()
}

/// Declares sets of problem responses that several operations answer alike, each a
/// [`utoipa::IntoResponses`] that `#[utoipa::path]` lists in `responses(...)` beside the
/// operation's own tuples. A tuple listed after a set replaces the set's response of its
/// status, where the operation has more to say.
macro_rules! problem_responses {
    ($($(#[doc = $doc:literal])* $set:ident { $($status:literal: $description:literal),+ })+) => {$(
        $(#[doc = $doc])*
        pub struct $set;

        impl utoipa::IntoResponses for $set {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([$(($status.to_string(), problem_response($description))),+])
            }
        }
    )+};
}

problem_responses! {
    /// A robot's Kong identity headers refused (`auth::Robot`).
    RobotAuthProblems {
        401: "Kong headers missing or repeated, or a robot id that is not 1 to 4294967295 in canonical form",
        403: "Not a robot"
    }
    /// A JSON body refused before it is read (`checks::JsonObject`).
    JsonBodyProblems { 413: "Body too large", 415: "Not JSON" }
    /// The internal API's bearer token refused, or the API disabled (`monitors::Internal`).
    InternalAuthProblems {
        401: "No or another bearer token",
        404: "The internal API is disabled (INTERNAL_API_TOKEN unset)"
    }
    /// A monitor's path refused (`monitors::MonitorKey`), or naming no monitor; listed after
    /// `InternalAuthProblems`, whose 404 it widens.
    MonitorPathProblems {
        400: "Invalid robotId or ruleId",
        404: "No such monitor, or the internal API is disabled"
    }
}

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed(String),
    PayloadTooLarge(String),
    TooManyRequests(String),
    UnsupportedMediaType(String),
    Unprocessable(String),
    /// 422 for fields that are well-formed but contradict the upstream, each listed.
    UnprocessableFields {
        detail: String,
        errors: Vec<FieldError>,
    },
    BadGateway(String),
    Unavailable(String),
    /// The cause is logged here, with the request id; the client sees a generic detail.
    Internal(anyhow::Error),
}

/// An id as the API accepts it, in a header or a path (SPEC §13): canonical decimal, no sign,
/// no leading zero, no space, 1 to 2^63 − 1 — `+42`, `042` and `4 2` are not 42.
pub fn canonical_id(text: &str) -> Option<i64> {
    let digits = text.len() <= 19
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.as_bytes().first().is_some_and(|b| *b != b'0');
    digits.then(|| text.parse().ok()).flatten()
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::TooManyRequests(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
            ),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Unprocessable(_) | ApiError::UnprocessableFields { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Unprocessable request",
            ),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad-gateway", "Upstream failure"),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.parts();
        let request_id = request_id::current();
        let (detail, errors) = match self {
            ApiError::BadRequest { detail, errors }
            | ApiError::UnprocessableFields { detail, errors } => {
                (detail, (!errors.is_empty()).then_some(errors))
            }
            ApiError::Internal(cause) => {
                tracing::error!(request_id = %request_id, error = ?cause, "internal error");
                (
                    format!("An internal error occurred; quote request id {request_id}."),
                    None,
                )
            }
            ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::MethodNotAllowed(d)
            | ApiError::TooManyRequests(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::UnsupportedMediaType(d)
            | ApiError::Unprocessable(d)
            | ApiError::BadGateway(d)
            | ApiError::Unavailable(d) => (d, None),
        };
        let problem = Problem {
            kind: format!("https://status-check.tinybots/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
            request_id,
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// An extractor's refusal: the problem, with the `WWW-Authenticate` challenge (RFC 9110
/// §11.6.1) when it is a 401 — how the caller may authenticate.
pub struct Challenged {
    pub error: ApiError,
    pub challenge: &'static str,
}

impl IntoResponse for Challenged {
    fn into_response(self) -> Response {
        let challenge = matches!(self.error, ApiError::Unauthorized(_));
        let mut response = self.error.into_response();
        if challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(self.challenge),
            );
        }
        response
    }
}
