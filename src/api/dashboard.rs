//! `GET /`: the dashboard, one static HTML page compiled into the binary (`dashboard.html`: no
//! build step, no external assets). It is public because it holds no data: the page itself
//! fetches `GET /admin/cluster` with the admin token the user gives it.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The page. Its comment at the top lists the element ids and data attributes tests rely on.
pub const PAGE: &str = include_str!("dashboard.html");

/// Everything the page may do: its own inline script and style, and requests to this node.
/// Nothing else loads, so a token typed into the page cannot be sent elsewhere by injected
/// content, and no other site can frame it.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// `GET /`. Not behind any token: merge it outside the authenticated routers.
pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .method_not_allowed_fallback(super::ApiError::method_not_allowed)
}

async fn page() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
            (REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_page_is_served_whole_and_self_contained() {
        let response = router()
            .oneshot(axum::http::Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(response.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert_eq!(body, PAGE.as_bytes());
        // No external assets: nothing is loaded from another origin.
        for external in ["http://", "https://", "//cdn", "src=\"", "<link"] {
            assert!(!PAGE.contains(external), "the page refers to {external}");
        }
        for hook in ["id=\"grid\"", "/admin/cluster", "data-role", "sessionStorage"] {
            assert!(PAGE.contains(hook), "the page lacks {hook}");
        }
    }
}
