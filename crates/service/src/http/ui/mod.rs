//! The support pages (SPEC §15): `/internal/ui/`, `/internal/ui/checks/{id}` and
//! `/internal/ui/monitors/{robotId}/{ruleId}`. HTML for people, so not in the OpenAPI
//! document; behind `INTERNAL_API_TOKEN` like the internal API (unset: 404), presented as a
//! bearer token or as the password of HTTP Basic (any user name), so a browser can log in;
//! otherwise 401 with `WWW-Authenticate: Basic`. Errors are problem+json like the API's.
//!
//! Every page is sent with a Content-Security-Policy that allows no script and nothing from
//! another origin: even a name that slipped past the escaping could not run or fetch.

mod pages;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Utc};
use maud::Markup;
use serde::Deserialize;

use super::AppState;
use super::auth::TokenLogin;
use super::checks::check_id;
use super::monitors::MonitorKey;
use super::problem::{ApiError, Challenged, FieldError, canonical_id};
use crate::checks::CheckFilter;
use crate::monitors::StoredMonitor;
use crate::timeline::Zone;

/// Checks a page lists at most (and by default).
pub const PAGE_SIZE: usize = 50;

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/internal/ui",
            get(|| async { axum::response::Redirect::permanent("/internal/ui/") }),
        )
        .route("/internal/ui/", get(list))
        .route("/internal/ui/checks/{id}", get(check))
        .route("/internal/ui/monitors/{robot_id}/{rule_id}", get(monitor))
}

/// A person who presented the internal token (bearer, or Basic password).
pub struct Staff;

const LOG_IN: &str = "log in with the internal API token: as the password of HTTP Basic (any \
                      user name), or as Authorization: Bearer <INTERNAL_API_TOKEN>";

/// Bearer or Basic; a 401 carries a Basic challenge, so a browser asks for the password.
const STAFF_LOGIN: TokenLogin = TokenLogin {
    basic: true,
    challenge: "Basic realm=\"status-check support\", charset=\"UTF-8\"",
    no_header: LOG_IN,
    other: LOG_IN,
};

impl FromRequestParts<AppState> for Staff {
    type Rejection = Challenged;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Challenged> {
        STAFF_LOGIN.admit(parts, state).map(|()| Staff)
    }
}

/// A page with the headers every page carries.
fn page(markup: Markup) -> Response {
    let mut response = markup.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        detail: format!("the query parameter {field} is invalid"),
        errors: vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }],
    }
}

/// `?tz=`: an IANA name; UTC when absent or empty.
fn zone_of(tz: Option<&str>) -> Result<Zone, ApiError> {
    match tz.map(str::trim).filter(|tz| !tz.is_empty()) {
        None => Ok(Zone::utc()),
        Some(name) if name.len() > 64 => {
            Err(invalid("tz", "an IANA name is at most 64 characters"))
        }
        Some(name) => Zone::named(name).map_err(|message| invalid("tz", message)),
    }
}

/// A date of the filters: chrono reads any number of digits for the year, so it is bounded to
/// the years a time of the service can fall in.
fn date_of(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(field, "must be a date YYYY-MM-DD"))?;
    if !(1970..=9998).contains(&date.year()) {
        return Err(invalid(field, "must be a date of the years 1970 to 9998"));
    }
    Ok(date)
}

/// The instant a local date starts in `zone`.
fn start_of(date: NaiveDate, zone: &Zone) -> DateTime<Utc> {
    crate::timeline::day_bounds(date, zone).0
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    robot: Option<String>,
    template: Option<String>,
    result: Option<String>,
    from: Option<String>,
    to: Option<String>,
    tz: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

fn filled(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

async fn list(
    _: Staff,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let zone = zone_of(query.tz.as_deref())?;
    let mut filter = CheckFilter::default();
    if let Some(robot) = filled(&query.robot) {
        filter.robot_id = Some(
            canonical_id(robot).ok_or_else(|| invalid("robot", "must be a positive integer"))?,
        );
    }
    if let Some(template) = filled(&query.template) {
        if template.chars().count() > 128 {
            return Err(invalid("template", "at most 128 characters"));
        }
        filter.template = Some(template.to_owned());
    }
    if let Some(result) = filled(&query.result) {
        if !["PENDING", "PASS", "FAIL", "UNKNOWN"].contains(&result) {
            return Err(invalid("result", "one of PENDING, PASS, FAIL, UNKNOWN"));
        }
        filter.result = Some(result.to_owned());
    }
    if let Some(from) = filled(&query.from) {
        filter.created_from = Some(start_of(date_of("from", from)?, &zone));
    }
    if let Some(to) = filled(&query.to) {
        let to = date_of("to", to)?;
        filter.created_before = Some(start_of(to.succ_opt().unwrap_or(to), &zone));
    }
    if let Some(before) = filled(&query.before) {
        filter.before_id = Some(
            canonical_id(before).ok_or_else(|| invalid("before", "must be a positive integer"))?,
        );
    }
    let page_size = match filled(&query.limit) {
        None => PAGE_SIZE,
        Some(limit) => match limit.parse::<usize>() {
            Ok(limit @ 1..=PAGE_SIZE) => limit,
            _ => return Err(invalid("limit", format!("1 to {PAGE_SIZE}"))),
        },
    };
    // One more than a page: whether there is an older page.
    let mut checks = state.checks.list(&filter, page_size + 1).await?;
    let next_before = (checks.len() > page_size)
        .then(|| {
            checks.truncate(page_size);
            checks.last().map(|c| c.id)
        })
        .flatten();
    let now = state.checks.clock().now();
    let monitors = state
        .monitors
        .list()
        .await?
        .into_iter()
        .map(|stored| {
            let today = crate::timeline::axis::local(now, &monitor_zone(&stored).tz)
                .date()
                .to_string();
            (stored, today)
        })
        .collect::<Vec<_>>();
    let form = pages::ListForm {
        robot: query.robot.unwrap_or_default(),
        template: query.template.unwrap_or_default(),
        result: query.result.unwrap_or_default(),
        from: query.from.unwrap_or_default(),
        to: query.to.unwrap_or_default(),
        tz: query.tz.unwrap_or_default(),
        limit: query.limit.unwrap_or_default(),
    };
    Ok(page(pages::list_page(
        &form,
        &zone,
        &checks,
        next_before,
        page_size,
        &monitors,
    )))
}

#[derive(Debug, Default, Deserialize)]
struct ZoneQuery {
    tz: Option<String>,
}

async fn check(
    _: Staff,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ZoneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = check_id(path, "id")?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let zone = zone_of(query.tz.as_deref())?;
    let view = state
        .checks
        .view(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("status check {id} not found")))?;
    let now = state.checks.clock().now();
    Ok(page(pages::check_page(&view, &zone, now)))
}

#[derive(Debug, Default, Deserialize)]
struct DateQuery {
    date: Option<String>,
}

async fn monitor(
    _: Staff,
    State(state): State<AppState>,
    MonitorKey {
        robot_id,
        rule_id: rule,
    }: MonitorKey,
    query: Result<Query<DateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let stored = state
        .monitors
        .get(robot_id, &rule)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("robot {robot_id} has no monitor {rule}")))?;
    let zone = monitor_zone(&stored);
    let now = state.checks.clock().now();
    let date = match filled(&query.date) {
        Some(date) => date_of("date", date)?,
        None => {
            let today = crate::timeline::axis::local(now, &zone.tz).date();
            NaiveDate::parse_from_str(&today.to_string(), "%Y-%m-%d").unwrap_or_default()
        }
    };
    if (date - now.date_naive()).abs() > TimeDelta::days(3660) {
        return Err(invalid("date", "within ten years of today"));
    }
    let day = state.monitors.day(&stored, date, now).await?;
    Ok(page(pages::monitor_page(&stored, &day, &zone)))
}

/// The monitor's timezone (a name the engine validated, so it is found again).
fn monitor_zone(stored: &StoredMonitor) -> Zone {
    Zone::named(stored.monitor.timezone().name()).unwrap_or_else(|_| Zone::utc())
}
