//! The HTTP API (SPEC §2): routes, Kong authentication, problem+json errors, request ids,
//! HTTP metrics, and the OpenAPI document generated from the handlers.

pub mod auth;
pub mod checks;
pub mod internal_checks;
pub mod monitor_history;
pub mod monitors;
pub mod ops;
pub mod problem;
pub mod request_id;
pub mod server;
pub mod ui;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::checks::Checks;
use crate::monitors::Monitors;
pub use crate::readiness::Readiness;
use problem::ApiError;

/// Largest request body accepted (SPEC §2.2).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub checks: Arc<Checks>,
    pub monitors: Arc<Monitors>,
    /// `INTERNAL_API_TOKEN`; `None`: the internal API answers 404.
    pub internal_api_token: Option<Arc<str>>,
    pub robot_consumer_username: Arc<str>,
    pub metrics: PrometheusHandle,
    pub readiness: Arc<Readiness>,
    /// A handler running longer is answered 503 (`HTTP_REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// Whether Swagger UI is served at `/docs` (`DOCS_ENABLED`); `/openapi.json` always is.
    pub docs_enabled: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "status-check",
        description = "Status checks for care robots: did something happen recently, or does it happen soon?"
    ),
    tags(
        (name = "checks", description = "Robots start and read status checks"),
        (name = "monitors", description = "Monitors (internal API, bearer INTERNAL_API_TOKEN): absence alarms in rolling windows"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(checks::create_check))
        .routes(routes!(checks::get_check))
        .routes(routes!(internal_checks::get_internal_check))
        .routes(routes!(monitors::list_monitors))
        .routes(routes!(
            monitors::put_monitor,
            monitors::get_monitor,
            monitors::delete_monitor
        ))
        .routes(routes!(monitors::get_monitor_history))
        .routes(routes!(ops::live))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
}

/// The OpenAPI 3.1 document of the whole API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    complete(api_router().into_openapi())
}

/// The identity headers Kong sets on every `/v1` request (SPEC §2.1).
const KONG_IDENTITY_HEADERS: [&str; 3] = [
    "x-consumer-id",
    "x-consumer-username",
    "x-authenticated-userid",
];

/// The security scheme of the internal API: `Authorization: Bearer <INTERNAL_API_TOKEN>`.
const INTERNAL_TOKEN_SCHEME: &str = "internalToken";

/// What the handlers' annotations cannot say once for all: the errors any route may answer
/// (500, 503 from the request timeout or an unavailable database) as problem+json, and the
/// links from a created check to reading it (followed by stateful API tests).
fn complete(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use serde_json::{Value, json};
    let problem = || json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let mut doc = match serde_json::to_value(&api) {
        Ok(doc) => doc,
        Err(_) => return api,
    };
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, operation) in paths
            .iter_mut()
            .filter_map(|(path, item)| Some((path.clone(), item.as_object_mut()?)))
            .flat_map(|(path, item)| item.values_mut().map(move |op| (path.clone(), op)))
        {
            // The internal API takes the bearer token instead (SPEC §12).
            if path.starts_with("/internal/") {
                operation
                    .as_object_mut()
                    .map(|o| o.insert("security".to_owned(), json!([{INTERNAL_TOKEN_SCHEME: []}])));
            }
            // Kong's identity headers are credentials Kong sets, not values a caller picks:
            // published as one security requirement of three API keys (a missing one is 401).
            if let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            {
                let before = parameters.len();
                parameters.retain(|p| {
                    !(p["in"] == "header"
                        && KONG_IDENTITY_HEADERS.contains(&p["name"].as_str().unwrap_or("")))
                });
                if parameters.len() != before {
                    let requirement: serde_json::Map<String, Value> = KONG_IDENTITY_HEADERS
                        .iter()
                        .map(|name| ((*name).to_owned(), json!([])))
                        .collect();
                    operation
                        .as_object_mut()
                        .map(|o| o.insert("security".to_owned(), json!([requirement])));
                }
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            responses.entry("500").or_insert_with(|| {
                json!({"description": "Internal error; the detail quotes the request id", "content": problem()})
            });
            match responses.get_mut("503") {
                // /health/ready answers its own body; a timed-out request is still a problem.
                Some(ready) => {
                    if let Some(content) = ready.get_mut("content").and_then(Value::as_object_mut) {
                        content.extend(problem().as_object().cloned().unwrap_or_default());
                    }
                }
                None => {
                    responses.insert(
                        "503".to_owned(),
                        json!({"description": "The database is unavailable, or the request took longer than HTTP_REQUEST_TIMEOUT_SECS", "content": problem()}),
                    );
                }
            }
        }
    }
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        let schemes: serde_json::Map<String, Value> = KONG_IDENTITY_HEADERS
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    json!({"type": "apiKey", "in": "header", "name": name, "description": if *name == "x-authenticated-userid" { "Set by Kong: the robot id, 1 to 4294967295 (`robot_id` is an `INT UNSIGNED` in the live schema)" } else { "Set by Kong" }}),
                )
            })
            .collect();
        let mut schemes = schemes;
        schemes.insert(
            INTERNAL_TOKEN_SCHEME.to_owned(),
            json!({"type": "http", "scheme": "bearer", "description": "INTERNAL_API_TOKEN"}),
        );
        components.insert("securitySchemes".to_owned(), Value::Object(schemes));
    }
    if let Some(responses) = doc
        .pointer_mut("/paths/~1v1~1status-check~1check/post/responses")
        .and_then(Value::as_object_mut)
    {
        for status in ["200", "201"] {
            if let Some(response) = responses.get_mut(status).and_then(Value::as_object_mut) {
                response.insert(
                    "links".to_owned(),
                    json!({"GetCheck": {
                        "operationId": "get_check",
                        "parameters": {"statusCheckId": "$response.body#/id"},
                        "description": "Read the check"
                    }}),
                );
            }
        }
    }
    serde_json::from_value(doc).unwrap_or(api)
}

/// The full router with its middleware.
pub fn router(state: AppState) -> Router {
    let (router, api) = api_router().split_for_parts();
    // The support pages are HTML for people: routed, not in the OpenAPI document.
    let router = router.merge(ui::routes());
    let api = complete(api);
    let router = if state.docs_enabled {
        let docs: Router<AppState> = SwaggerUi::new("/docs").url("/openapi.json", api).into();
        router.merge(docs.layer(middleware::map_response(docs_not_found_as_problem)))
    } else {
        router.route(
            "/openapi.json",
            axum::routing::get(move || std::future::ready(axum::Json(api.clone()))),
        )
    };
    with_middleware(router, state)
}

/// The router of a replica without the `api` role: only `/health/*` and `/metrics`, so every
/// replica can be probed and scraped whatever it runs (SPEC §13).
pub fn ops_router(state: AppState) -> Router {
    let (router, _) = OpenApiRouter::<AppState>::new()
        .routes(routes!(ops::live))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .split_for_parts();
    with_middleware(router, state)
}

fn with_middleware(router: Router<AppState>, state: AppState) -> Router {
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Only without the token: with it, nothing is added to any request's path.
    let router = if state.internal_api_token.is_none() {
        router.layer(middleware::from_fn(internal_switched_off))
    } else {
        router
    };
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(middleware::from_fn(http_metrics))
        .layer(middleware::from_fn(request_id::middleware))
        .with_state(state)
}

/// The documentation's router answers an unknown page under `/docs/` with a bare 404: make it
/// problem+json like every other error (SPEC §13).
async fn docs_not_found_as_problem(response: Response) -> Response {
    let bare = !response
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE);
    if response.status() == axum::http::StatusCode::NOT_FOUND && bare {
        return ApiError::NotFound("no such page of the API documentation".to_owned())
            .into_response();
    }
    response
}

/// Without INTERNAL_API_TOKEN every `/internal` route is 404, whatever the method — before
/// routing answers a redirect or "method not allowed" that would tell it is there.
async fn internal_switched_off(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/internal" || path.starts_with("/internal/") {
        return not_found().await.into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this route does not answer that method".to_owned())
}

/// Answers 503 problem+json when the handler (reading the body included) runs longer than the
/// request timeout; the handler is dropped. Inside the request id and the metrics, so the
/// answer carries the id and is counted.
async fn request_timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_secs = limit.as_secs(),
                "request timed out; answered 503"
            );
            ApiError::Unavailable(format!(
                "The request took longer than {} s; try again.",
                limit.as_secs()
            ))
            .into_response()
        }
    }
}

/// A method as a metric label: one of a fixed set, so a client inventing methods cannot grow
/// the metrics (SPEC §13).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts requests by route and status and times them.
async fn http_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
