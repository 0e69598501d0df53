//! Bearer-token authentication for the HTTP routers.
//!
//! Each router is wrapped in [`require_bearer`] with the one token it accepts: the client API
//! with the client token, the admin API and `/metrics` with the admin token. A request without
//! `Authorization: Bearer <token>`, or with another token, is refused with 401 and a JSON error
//! before any handler runs, so it can change nothing. Tokens are compared through their SHA-256
//! digests in constant time: neither the content nor the length of the expected token leaks
//! through timing, and no token is ever logged or echoed.
//!
//! A valid token also tells the connection it came on ([`ConnectionAuth`], put in each request's
//! extensions by the API listener, `node::api_server`): connections that have not yet sent a
//! request with a valid token have a small budget of their own, so that they cannot use up the
//! places of clients that have.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, ErrorCode};

/// The token one router accepts, kept only as its digest.
#[derive(Clone)]
pub struct BearerToken {
    digest: Arc<[u8; 32]>,
    /// Which token this is, for error messages ("client" or "admin").
    role: &'static str,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BearerToken({}, redacted)", self.role)
    }
}

impl BearerToken {
    pub fn new(role: &'static str, token: &str) -> BearerToken {
        BearerToken {
            digest: Arc::new(Sha256::digest(token.as_bytes()).into()),
            role,
        }
    }

    /// True if `presented` is this token, in time independent of both values.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(digest.ct_eq(&*self.digest))
    }

    /// Checks a request's `Authorization` header.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), ApiError> {
        let presented = authorization.and_then(|v| {
            let v = v.as_bytes();
            (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
        });
        match presented {
            Some(token) if self.matches(token) => Ok(()),
            Some(_) => Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!("the bearer token is not this node's {} token", self.role),
            )),
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "an `Authorization: Bearer <{} token>` header is required",
                    self.role
                ),
            )),
        }
    }
}

/// The connection a request arrived on, as far as tokens go: told when one of its requests
/// carries a valid token.
pub trait AuthenticatedConnection: Send + Sync {
    /// A request with a valid token arrived. `false` if the connection may not go on as an
    /// authenticated one (the node has no place for another): the request is refused.
    fn authenticated(&self) -> bool;
}

/// A request extension: the connection it came on (absent when a router is called directly,
/// as in tests).
#[derive(Clone)]
pub struct ConnectionAuth(pub Arc<dyn AuthenticatedConnection>);

/// The answer to a request with a valid token on a connection that may not go on: 429 `busy`,
/// and the connection closes after it.
fn no_room_for_connection() -> axum::response::Response {
    let mut response = ApiError::new(
        ErrorCode::Busy,
        "this node has no place for another connection with a valid token \
         (--max-connections): retry, or reuse an open connection",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Wraps every route of `router` so that it requires `token`. Unknown paths still get the
/// plain 404 (they reveal nothing and change nothing).
pub fn require_bearer(router: Router, token: BearerToken) -> Router {
    router.route_layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let token = token.clone();
        async move {
            match token.check(request.headers().get(header::AUTHORIZATION)) {
                Ok(()) => {
                    let connection = request.extensions().get::<ConnectionAuth>();
                    if connection.is_some_and(|c| !c.0.authenticated()) {
                        return no_room_for_connection();
                    }
                    next.run(request).await
                }
                Err(e) => {
                    let mut response = e.into_response();
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    response
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        require_bearer(
            Router::new().route("/x", get(|| async { "ok" })),
            BearerToken::new("client", "client-token-0123456789"),
        )
    }

    async fn status_of(authorization: Option<&str>) -> (StatusCode, String) {
        let mut request = axum::http::Request::get("/x");
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        let response = app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn only_the_right_token_passes() {
        assert_eq!(
            status_of(Some("Bearer client-token-0123456789")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            status_of(Some("bearer client-token-0123456789")).await.0,
            StatusCode::OK
        );
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic Y2xpZW50OnRva2Vu"),
            Some("Bearer client-token-012345678"),
            Some("Bearer client-token-0123456789x"),
            Some("client-token-0123456789"),
        ] {
            let (status, body) = status_of(bad).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
            assert!(body.contains("\"unauthorized\""), "{body}");
            assert!(!body.contains("client-token-0123"), "a token leaked: {body}");
        }
    }
}
