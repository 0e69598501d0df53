//! `GET /metrics`: the Prometheus text format of this process's recorder (`node::metrics`
//! installs it and defines the series).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::state::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(admin): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        admin.metrics.render(),
    )
        .into_response()
}
