//! The request id (SPEC §2.1): from `Call-Ref` or `x-request-id`, else a new UUID. It is on
//! every log line of the request (the request span), returned as the `Call-Ref` header and in
//! problem bodies, and passed to every upstream call the request causes.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled; `-` outside a request.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// The request id, as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(current())))
    }
}

fn from_headers(headers: &HeaderMap) -> Option<String> {
    ["call-ref", "x-request-id"].iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        let usable =
            !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
        usable.then(|| value.to_owned())
    })
}

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = from_headers(request.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        robot_id = tracing::field::Empty,
        check_id = tracing::field::Empty,
    );
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request))
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("call-ref", value);
    }
    response
}
