//! Kong authentication (SPEC §2.1): Kong has authenticated the caller and forwards who it is
//! as headers; this extractor admits robots only.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::problem::{ApiError, Challenged, canonical_id};

/// The largest robot id: `robot_id` is `INT UNSIGNED` in the live schema.
const MAX_ROBOT_ID: i64 = u32::MAX as i64;

/// The calling robot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Robot {
    pub id: i64,
}

/// The challenge of a robot's 401 (RFC 9110 §15.5.2 asks one of every 401): the robots reach
/// this API through Kong, whose key authentication challenges so.
const ROBOT_CHALLENGE: &str = "Key realm=\"status-check\"";

impl FromRequestParts<AppState> for Robot {
    type Rejection = Challenged;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Challenged> {
        Robot::identify(parts, state).map_err(|error| Challenged {
            error,
            challenge: ROBOT_CHALLENGE,
        })
    }
}

impl Robot {
    /// The robot Kong's headers name, or why they name none.
    fn identify(parts: &Parts, state: &AppState) -> Result<Robot, ApiError> {
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
        let scopes = parts.headers.get_all("x-authenticated-scope");
        if scopes.iter().count() > 1 {
            return Err(ApiError::Unauthorized(
                "header x-authenticated-scope is repeated".to_owned(),
            ));
        }
        if let Some(scope) = scopes.iter().next()
            && scope.to_str().map(str::trim).ok() != Some("robot")
        {
            return Err(ApiError::Forbidden(
                "the authenticated scope is not robot".to_owned(),
            ));
        }
        // A robot's id is an `INT UNSIGNED` in the live schema: a larger one names no robot.
        let id = canonical_id(&user_id)
            .filter(|id| *id <= MAX_ROBOT_ID)
            .ok_or_else(|| {
                ApiError::Unauthorized(format!(
                    "x-authenticated-userid is not a robot id (1 to {MAX_ROBOT_ID}, digits only, \
                     no leading zero)"
                ))
            })?;
        tracing::Span::current().record("robot_id", id);
        Ok(Robot { id })
    }
}

/// How an extractor admits holders of the internal API token (`INTERNAL_API_TOKEN`): how the
/// token may come, and how a caller without it is answered.
pub(super) struct TokenLogin {
    /// Whether the token may also come as the password of HTTP Basic.
    pub basic: bool,
    /// The `WWW-Authenticate` challenge sent with a 401.
    pub challenge: &'static str,
    /// The 401's detail without exactly one `Authorization` header.
    pub no_header: &'static str,
    /// The 401's detail for another token or scheme.
    pub other: &'static str,
}

impl TokenLogin {
    /// `Ok` when `parts` present the token; 404 when it is unset (the routes do not exist),
    /// else 401 with the challenge.
    pub(super) fn admit(&self, parts: &Parts, state: &AppState) -> Result<(), Challenged> {
        let refuse = |error| Challenged {
            error,
            challenge: self.challenge,
        };
        let Some(token) = &state.internal_api_token else {
            return Err(refuse(ApiError::NotFound("no such route".to_owned())));
        };
        let detail = match internal_token(parts, token, self.basic) {
            Presented::Token => return Ok(()),
            Presented::NoHeader => self.no_header,
            Presented::Other => self.other,
        };
        Err(refuse(ApiError::Unauthorized(detail.to_owned())))
    }
}

/// How a request presented the internal API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    /// The token, in exactly one `Authorization` header.
    Token,
    /// No `Authorization` header, or more than one.
    NoHeader,
    /// Another token or scheme.
    Other,
}

/// Whether `parts` present `token` — as `Bearer <token>`, or with `basic` also as the
/// password of HTTP Basic (any user name) — compared in constant time.
fn internal_token(parts: &Parts, token: &str, basic: bool) -> Presented {
    let mut values = parts
        .headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Presented::NoHeader;
    };
    let presented = value.to_str().ok().and_then(|value| {
        let (scheme, credentials) = value.trim().split_once(' ')?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(credentials.as_bytes().to_vec());
        }
        if basic && scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()?;
            let colon = decoded.iter().position(|b| *b == b':')?;
            return Some(decoded[colon + 1..].to_vec());
        }
        None
    });
    // Digests of equal length compared in constant time: comparing the texts themselves
    // would answer at once when the lengths differ, telling the token's length.
    match presented {
        Some(presented) if bool::from(Sha256::digest(&presented).ct_eq(&Sha256::digest(token))) => {
            Presented::Token
        }
        _ => Presented::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presents(headers: &[&str], token: &str, basic: bool) -> Presented {
        let mut request = axum::http::Request::builder();
        for value in headers {
            request = request.header(axum::http::header::AUTHORIZATION, *value);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        internal_token(&parts, token, basic)
    }

    #[test]
    fn the_token_comes_as_bearer_or_as_the_basic_password() {
        let token = |value: &str, expected: &str| presents(&[value], expected, true);
        assert_eq!(token("Bearer s3cret", "s3cret"), Presented::Token);
        assert_eq!(token("bearer  s3cret ", "s3cret"), Presented::Token);
        // "anyone:s3cret", and a password with a colon in it.
        assert_eq!(
            token("Basic YW55b25lOnMzY3JldA==", "s3cret"),
            Presented::Token
        );
        assert_eq!(token("Basic OmE6Yg==", "a:b"), Presented::Token);
        assert_eq!(token("Basic !!!", "s3cret"), Presented::Other);
        assert_eq!(
            token("Basic czNjcmV0", "s3cret"),
            Presented::Other,
            "no colon"
        );
        assert_eq!(token("Digest s3cret", "s3cret"), Presented::Other);
        assert_eq!(token("s3cret", "s3cret"), Presented::Other);
        assert_eq!(token("Bearer s3cre", "s3cret"), Presented::Other);
    }

    #[test]
    fn basic_only_where_allowed_and_one_header_only() {
        let basic = "Basic YW55b25lOnMzY3JldA==";
        assert_eq!(presents(&[basic], "s3cret", false), Presented::Other);
        assert_eq!(presents(&[], "s3cret", true), Presented::NoHeader);
        let twice = ["Bearer s3cret", "Bearer s3cret"];
        assert_eq!(presents(&twice, "s3cret", true), Presented::NoHeader);
    }
}
