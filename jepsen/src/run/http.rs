//! The runner's HTTP client: one request, one answer, a deadline, and an honest account of what
//! is known when there is no answer.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// What became of a request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The server answered: status and JSON body (`Null` if not JSON).
    Http(u16, Value),
    /// The connection could not be made: the request was certainly not sent.
    NotSent(String),
    /// Sent, or maybe sent, and no answer before the deadline or the connection broke: the
    /// request may or may not take effect.
    Unknown(String),
}

impl Answer {
    /// `Ok(body)` if the server answered with a status `accept` takes, else why not.
    pub fn accepted(
        self,
        accept: impl Fn(u16) -> bool,
        method: &str,
        addr: &str,
        path: &str,
    ) -> Result<Value, RequestError> {
        match self {
            Answer::Http(status, body) if accept(status) => Ok(body),
            Answer::Http(status, body) => Err(RequestError::Refused {
                request: format!("{method} {path} on {addr}"),
                status,
                body,
            }),
            Answer::NotSent(e) => Err(RequestError::NotSent(e)),
            Answer::Unknown(e) => Err(RequestError::NoAnswer(e)),
        }
    }
}

/// What became of a request whose answer is bytes (a message body), as [`Answer`].
#[derive(Debug, Clone)]
pub enum BytesAnswer {
    /// The server answered: status, the `x-dovetail-body` header, and the body's bytes.
    Http {
        status: u16,
        body_id: Option<String>,
        bytes: Bytes,
    },
    NotSent(String),
    Unknown(String),
}

/// Why a request did not get the answer it needed; the kinds tell a retry that is safe (nothing
/// sent, or an answer that refused) from one that may apply the request twice.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The server answered, with a status the caller does not accept.
    #[error("{request}: HTTP {status}: {body}")]
    Refused {
        request: String,
        status: u16,
        body: Value,
    },
    /// The connection could not be made: the request was certainly not sent.
    #[error("{0}")]
    NotSent(String),
    /// Sent, or maybe sent, without an answer: it may or may not take effect.
    #[error("{0}")]
    NoAnswer(String),
}

/// Which token a request carries.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Client,
    Admin,
}

#[derive(Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    client_auth: String,
    admin_auth: String,
}

impl Api {
    pub fn new(client_token: &str, admin_token: &str) -> Api {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        Api {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(5))
                .build(http),
            client_auth: format!("Bearer {client_token}"),
            admin_auth: format!("Bearer {admin_token}"),
        }
    }

    /// `method http://{addr}{path}` with an optional JSON body.
    pub async fn call(
        &self,
        role: Role,
        addr: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Answer {
        let bytes = Bytes::from(body.map(|b| b.to_string()).unwrap_or_default());
        match self
            .call_bytes(role, addr, method, path, "application/json", bytes, timeout)
            .await
        {
            BytesAnswer::Http { status, bytes, .. } => {
                Answer::Http(status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
            BytesAnswer::NotSent(e) => Answer::NotSent(e),
            BytesAnswer::Unknown(e) => Answer::Unknown(e),
        }
    }

    /// `method http://{addr}{path}` with `body` of type `content_type`; the answer's bytes as they
    /// came (message bodies).
    #[allow(clippy::too_many_arguments)]
    pub async fn call_bytes(
        &self,
        role: Role,
        addr: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: Bytes,
        timeout: Duration,
    ) -> BytesAnswer {
        let url = format!("http://{addr}{path}");
        let request = match hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(
                "authorization",
                match role {
                    Role::Client => &self.client_auth,
                    Role::Admin => &self.admin_auth,
                },
            )
            .header("content-type", content_type)
            .body(Full::new(body))
        {
            Ok(request) => request,
            Err(e) => return BytesAnswer::NotSent(e.to_string()),
        };
        let exchange = async {
            let response = match self.client.request(request).await {
                Ok(response) => response,
                Err(e) if e.is_connect() => return BytesAnswer::NotSent(format!("connect {addr}: {e}")),
                Err(e) => return BytesAnswer::Unknown(format!("{url}: {e}")),
            };
            let status = response.status().as_u16();
            let body_id = response
                .headers()
                .get("x-dovetail-body")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            match response.into_body().collect().await {
                Ok(body) => BytesAnswer::Http {
                    status,
                    body_id,
                    bytes: body.to_bytes(),
                },
                Err(e) => BytesAnswer::Unknown(format!("{url}: reading the answer: {e}")),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => BytesAnswer::Unknown(format!("{url}: no answer within {timeout:?}")),
        }
    }

    /// An admin GET expected to answer 200 with JSON.
    pub async fn admin_get(&self, addr: &str, path: &str, timeout: Duration) -> Result<Value, RequestError> {
        self.call(Role::Admin, addr, "GET", path, None, timeout)
            .await
            .accepted(|status| status == 200, "GET", addr, path)
    }
}
