//! [`InFlightLimit`]: the bound on the client API's requests served at once by one node.
//!
//! Every request a node serves holds memory (its connection's buffers, the task, the body, the
//! parsed transaction, the leader's queue slot or the forward in flight) until it is answered,
//! and an admitted write waits behind every write admitted before it. The API listener already
//! caps open connections (`--max-connections` with a valid token, `--max-pending-connections`
//! without; HTTP/1.1 serves one request per connection at a time); this bounds the requests
//! among them that are being served, well below: a request
//! beyond `--max-in-flight` is answered 429 `busy` with `Retry-After` at once, before its body is
//! read or anything is parsed, forwarded or queued — the cheapest refusal the node can make,
//! so that refusing ten times the load it admits still leaves it the time to serve what it
//! admitted. Authenticated client routes only: the admin API and `/metrics` stay reachable
//! under overload.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Semaphore;

use super::{ApiError, ErrorCode};

/// Default of `--max-in-flight`.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// The slots of one node's client requests in flight.
#[derive(Clone)]
pub struct InFlightLimit {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl InFlightLimit {
    /// Room for `limit` requests at once (at least 1).
    pub fn new(limit: usize) -> InFlightLimit {
        let limit = limit.max(1);
        InFlightLimit {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }
}

/// Wraps every route of `router` in the limit (unknown paths are answered without a slot).
pub fn limit_in_flight(router: Router, limit: InFlightLimit) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(limit, admit))
}

async fn admit(State(limit): State<InFlightLimit>, request: Request, next: Next) -> Response {
    // Held until the handler has produced the whole response (bodies are built in memory).
    let Ok(_slot) = limit.slots.try_acquire() else {
        return ApiError::new(
            ErrorCode::Busy,
            format!(
                "{} requests in flight on this node (limit {}); retry later",
                limit.in_flight(),
                limit.limit
            ),
        )
        .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::post;
    use hyper::body::{Bytes, Frame};
    use tower::ServiceExt;

    use super::*;

    /// A request body that never arrives.
    struct Endless;

    impl hyper::body::Body for Endless {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Pending
        }
    }

    /// With room for two, a third request is refused at once with 429 and `Retry-After`, before
    /// its body is read (it never arrives); once one finishes, the next one is served again.
    #[tokio::test]
    async fn a_request_beyond_the_limit_is_refused_before_its_body_is_read() {
        // Handlers wait for a permit of `gate` each; the test hands them out.
        let gate = Arc::new(Semaphore::new(0));
        let handler_gate = gate.clone();
        let app = Router::new().route(
            "/slow",
            post(move |body: String| {
                let gate = handler_gate.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    body
                }
            }),
        );
        let limit = InFlightLimit::new(2);
        let app = limit_in_flight(app, limit.clone());
        let call = |body: Body| {
            let app = app.clone();
            tokio::spawn(async move {
                app.oneshot(Request::post("/slow").body(body).unwrap())
                    .await
                    .unwrap()
            })
        };
        let first = call(Body::from("1"));
        let second = call(Body::from("2"));
        while limit.in_flight() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = tokio::time::timeout(Duration::from_secs(5), call(Body::new(Endless)))
            .await
            .expect("the refusal waited for the body")
            .unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(refused.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "busy");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2 requests in flight on this node (limit 2)"),
            "{body}"
        );

        gate.add_permits(1);
        let third = {
            let done = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    if limit.in_flight() < 2 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            done.await.expect("a request finished");
            call(Body::from("3"))
        };
        gate.add_permits(2);
        for (request, expected) in [(first, "1"), (second, "2"), (third, "3")] {
            let response = request.await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(body, expected);
        }
        assert_eq!(limit.in_flight(), 0);
    }
}
