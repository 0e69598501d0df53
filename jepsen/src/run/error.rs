//! [`RunError`]: why a run, or one of its steps (the cluster's scripts, the setup, a fault), failed.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::http::RequestError;
use crate::report::ReportError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A script of `scripts/` could not be started.
    #[error("{script}: {source}")]
    ScriptStart { script: String, source: std::io::Error },
    /// A script ran and failed; `output` is what it printed (why).
    #[error("{script} {args}: {output}")]
    ScriptFailed {
        script: String,
        args: String,
        output: String,
    },
    /// A file of the run (its directory, `config.json`, the cluster's env file).
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },
    /// The cluster's env file lacks a token.
    #[error("{name} missing from the env file {}", path.display())]
    MissingToken { name: &'static str, path: PathBuf },
    /// A node's answer to a request the runner needed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// `/admin/status` without a `groups` list.
    #[error("no groups in /admin/status of {addr}")]
    NoGroups { addr: String },
    /// After the faults were healed, the cluster did not settle; `last` is the last thing that
    /// was still wrong.
    #[error("the cluster did not converge within {limit:?}: {last}")]
    NotConverged { limit: Duration, last: String },
    /// A membership change of the nemesis was not accepted by any node before its deadline.
    #[error("{method} {path} (retried through the nodes for {limit:?}): {last}")]
    Membership {
        method: String,
        path: String,
        limit: Duration,
        last: Box<RequestError>,
    },
    /// A request of the workload's setup (mailboxes, the flags registers) never succeeded.
    #[error("setup {method} {path} (retried through the nodes {attempts} times): {last}")]
    Setup {
        method: String,
        path: String,
        attempts: u32,
        last: Box<RequestError>,
    },
    /// The cluster did not become ready for the workload (deliveries need log encoding 3).
    #[error("the cluster is not ready: {reason}")]
    NotReady { reason: String },
    /// The setup's append answered without the UIDs it assigned.
    #[error("setup append answered {answer}")]
    SetupAnswer { answer: Value },
    /// A task of the runner panicked or was cancelled.
    #[error("{task}: {source}")]
    Task {
        task: &'static str,
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}
