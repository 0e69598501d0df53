//! Prometheus metrics of a node: the recorder, the API middleware, and the task that turns each
//! group's Raft and mail state into gauges. `GET /metrics` (`api::admin::metrics`) renders the
//! recorder.
//!
//! Everything is recorded through the `metrics` facade (here and in `dovetail-raft`, which
//! records log, fsync, snapshot and leader-change series); `metrics-exporter-prometheus` renders
//! the text format. One recorder per process: [`install`] is idempotent, so several nodes in one
//! test process share it (their series then add up; real nodes are one process each).
//!
//! Labels are bounded: `group` and `follower` are ids, `route` is the route *pattern* axum
//! matched (`/v1/users/{user}/mailboxes`), never the request's path, so no user or mailbox name
//! ever becomes a label.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use dovetail_raft::{GroupId, GroupMetrics, GroupRole, NodeId, RaftNode};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use super::bodies::NodeBodies;
use super::body_metrics::{describe as describe_bodies, sample_bodies};
use super::mail_group::MailGroup;
use crate::state_machine::GroupCounts;

/// Counter, labels `route`, `method`, `status`: API requests answered.
pub const API_REQUESTS_TOTAL: &str = "dovetail_api_requests_total";
/// Histogram, labels `route`, `method`: seconds from receiving a request to its response head.
pub const API_REQUEST_DURATION_SECONDS: &str = "dovetail_api_request_duration_seconds";
/// Counter, label `reason`: API connections the node closed for a reason of its own: `evicted`
/// (a pending connection closed to make room for a newer one), `first_request_deadline` (no
/// request with a valid token in time), `idle_deadline` (no complete request head in time on a
/// connection with a token, or an idle one), `no_place` (a valid token, but every
/// `--max-connections` place taken).
pub const API_CONNECTIONS_CLOSED_TOTAL: &str = "dovetail_api_connections_closed_total";
/// Gauge, label `group`: the current Raft term.
pub const GROUP_TERM: &str = "dovetail_group_term";
/// Gauge, label `group`: 1 while this node leads the group, else 0.
pub const GROUP_IS_LEADER: &str = "dovetail_group_is_leader";
/// Gauge, label `group`: the highest log index this node knows committed (0: none).
pub const GROUP_COMMITTED_INDEX: &str = "dovetail_group_committed_index";
/// Gauge, label `group`: the last log index applied to this node's state machine (0: none).
/// Invariant: at or below the committed index.
pub const GROUP_APPLIED_INDEX: &str = "dovetail_group_applied_index";
/// Gauge, labels `group`, `follower`: on the leader, committed index minus the follower's
/// matched index; set to 0 once this node stops leading or the member leaves.
pub const GROUP_REPLICATION_LAG_ENTRIES: &str = "dovetail_group_replication_lag_entries";
/// Gauge, label `group`: mailboxes in the group's manifest on this node.
pub const GROUP_MAILBOXES: &str = "dovetail_group_mailboxes";
/// Gauge, label `group`: messages in those mailboxes (the sum of their index headers' counts).
pub const GROUP_MESSAGES: &str = "dovetail_group_messages";

/// Gauge: 1 while this node's storage alarm is raised (it refuses writes), else 0.
pub const STORAGE_ALARM: &str = "dovetail_storage_alarm";
/// Gauge: bytes free on the data directory's file system, as the disk monitor last saw.
pub const DISK_FREE_BYTES: &str = "dovetail_disk_free_bytes";
/// Gauge: bytes the Raft log has written ahead of its segments in use (its reserve).
pub const LOG_RESERVE_BYTES: &str = "dovetail_log_reserve_bytes";

/// How often the gauge task samples every group.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// Buckets of every `_seconds` histogram: 50 µs to 10 s in 1-2.5-5 steps.
const LATENCY_BUCKETS_SECONDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets of the fsync batch size: powers of two up to 1024 requests.
const BATCH_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Installs the process's Prometheus recorder on first call and returns a handle to it; later
/// calls return the same handle. If some other recorder was installed first, the handle still
/// renders (only what was recorded into it, i.e. nothing), and a warning is logged.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics will stay empty");
            }
            describe();
            describe_bodies();
            crate::imap::metrics::describe();
            crate::lmtp::metrics::describe();
            dovetail_raft::metrics::describe();
            handle
        })
        .clone()
}

/// The exporter's configuration: explicit buckets, so histograms are real Prometheus
/// histograms (`_bucket` lines), not summaries.
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS_SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(dovetail_raft::metrics::LOG_FSYNC_BATCH_REQUESTS.into()),
                &BATCH_BUCKETS,
            )
        })
        .expect("bucket lists are not empty")
}

fn describe() {
    describe_counter!(
        API_REQUESTS_TOTAL,
        "API requests answered, by route pattern, method and status"
    );
    describe_histogram!(
        API_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from receiving an API request to its response head, by route pattern and method"
    );
    describe_counter!(
        API_CONNECTIONS_CLOSED_TOTAL,
        "API connections this node closed: evicted, first_request_deadline, idle_deadline, no_place"
    );
    describe_gauge!(GROUP_TERM, "Current Raft term of the group on this node");
    describe_gauge!(GROUP_IS_LEADER, "1 while this node leads the group, else 0");
    describe_gauge!(
        GROUP_COMMITTED_INDEX,
        "Highest log index this node knows committed"
    );
    describe_gauge!(GROUP_APPLIED_INDEX, "Last log index applied on this node");
    describe_gauge!(
        GROUP_REPLICATION_LAG_ENTRIES,
        "On the leader: committed index minus the follower's matched index"
    );
    describe_gauge!(GROUP_MAILBOXES, "Mailboxes of the group held by this node");
    describe_gauge!(
        STORAGE_ALARM,
        "1 while this node refuses writes for want of disk space"
    );
    describe_gauge!(
        DISK_FREE_BYTES,
        Unit::Bytes,
        "Free bytes on the data directory's file system"
    );
    describe_gauge!(
        LOG_RESERVE_BYTES,
        Unit::Bytes,
        "Bytes the Raft log has written ahead of its segments"
    );
    describe_gauge!(
        GROUP_MESSAGES,
        "Messages in the group's mailboxes held by this node"
    );
}

/// Records what the disk monitor saw (`disk_monitor.rs`).
pub fn record_storage(alarm: bool, free_bytes: u64, log_reserve_bytes: u64) {
    gauge!(STORAGE_ALARM).set(if alarm { 1.0 } else { 0.0 });
    gauge!(DISK_FREE_BYTES).set(free_bytes as f64);
    gauge!(LOG_RESERVE_BYTES).set(log_reserve_bytes as f64);
}

/// Middleware (`axum::middleware::from_fn(track_requests)`, as a `Router::layer`): counts each
/// request by route pattern, method and status, and records its latency. Requests that match no
/// route are labelled `route="unmatched"`. A request whose client goes away before the answer is
/// not counted.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    histogram!(API_REQUEST_DURATION_SECONDS, "route" => route.clone(), "method" => method)
        .record(started.elapsed());
    counter!(API_REQUESTS_TOTAL, "route" => route, "method" => method, "status" => status).increment(1);
    response
}

/// The method as a label; methods outside the standard set share one label, so a client cannot
/// create series at will.
fn method_label(method: &Method) -> &'static str {
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

/// Spawns the gauge task: every [`GAUGE_INTERVAL`] it samples every group of `raft` into the
/// `dovetail_group_*` gauges, the node's bodies into the `dovetail_bod*` series
/// (`node::body_metrics`), and runs the recorder's upkeep. Abort it at shutdown.
pub fn spawn_gauge_task(
    raft: RaftNode<MailGroup>,
    bodies: NodeBodies,
    handle: PrometheusHandle,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(GAUGE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shown = GroupGauges::default();
        let mut backlog_peers = BTreeSet::new();
        loop {
            ticks.tick().await;
            backlog_peers = sample_bodies(&bodies, backlog_peers);
            let raft = raft.clone();
            // Reading the mail counts takes each group's application lock, which an apply or a
            // snapshot install may hold for a while: wait for it off the runtime threads.
            let sampled = tokio::task::spawn_blocking(move || {
                sample_groups(&raft, &mut shown);
                shown
            })
            .await;
            shown = match sampled {
                Ok(shown) => shown,
                Err(error) => {
                    tracing::error!(%error, "metrics gauge sampling failed; gauges stop updating");
                    return;
                }
            };
            handle.run_upkeep();
        }
    })
}

/// What the gauges of each group last showed (by group id), so that a round sets only the
/// gauges of groups whose values changed: an idle group costs a metrics read and an O(1)
/// count read, no label formatting and no registry lookup.
#[derive(Debug, Default)]
pub(crate) struct GroupGauges {
    groups: Vec<Option<GroupSample>>,
}

/// One group's gauge values. `raft` is `None` while its metrics cannot be read (then its
/// Raft gauges keep their last values, and its lag series are set to 0), `counts` while its
/// application cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupSample {
    raft: Option<RaftSample>,
    counts: Option<GroupCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RaftSample {
    term: u64,
    is_leader: bool,
    committed: u64,
    applied: u64,
    /// `replication_lag`: empty unless this node leads the group.
    lag: Vec<(NodeId, u64)>,
}

impl RaftSample {
    fn of(m: &GroupMetrics) -> RaftSample {
        RaftSample {
            term: m.current_term,
            is_leader: m.role == GroupRole::Leader,
            committed: m.committed_log_index.unwrap_or(0),
            applied: m.applied.map_or(0, |a| a.index),
            lag: replication_lag(m),
        }
    }
}

/// Sets the gauges of every group whose values changed since `shown` (all of them on the
/// first round) and records what they show now. A (group, follower) lag series that a group
/// no longer reports (this node stopped leading, or the member left) is set to 0.
fn sample_groups(raft: &RaftNode<MailGroup>, shown: &mut GroupGauges) {
    for group_id in 0..raft.group_count() {
        let sample = GroupSample {
            raft: raft.metrics(group_id).ok().as_ref().map(RaftSample::of),
            counts: raft.with_app(group_id, |app| app.machine().state().counts()).ok(),
        };
        shown.record(group_id, sample);
    }
}

impl GroupGauges {
    /// Sets the gauges of `group_id` to `sample` unless they already show it; returns
    /// whether it set them.
    fn record(&mut self, group_id: GroupId, sample: GroupSample) -> bool {
        let index = group_id as usize;
        if self.groups.len() <= index {
            self.groups.resize(index + 1, None);
        }
        let last = &mut self.groups[index];
        if last.as_ref() == Some(&sample) {
            return false;
        }
        show_group(group_id, last.as_ref(), &sample);
        *last = Some(sample);
        true
    }
}

/// Sets one group's gauges to `sample`, and to 0 the lag series `previous` had that it has not.
fn show_group(group_id: GroupId, previous: Option<&GroupSample>, sample: &GroupSample) {
    let group = group_id.to_string();
    fn lag_of(s: Option<&GroupSample>) -> &[(NodeId, u64)] {
        s.and_then(|s| s.raft.as_ref()).map_or(&[], |r| &r.lag)
    }
    let lag = lag_of(Some(sample));
    if let Some(r) = &sample.raft {
        gauge!(GROUP_TERM, "group" => group.clone()).set(r.term as f64);
        gauge!(GROUP_IS_LEADER, "group" => group.clone()).set(if r.is_leader { 1.0 } else { 0.0 });
        gauge!(GROUP_COMMITTED_INDEX, "group" => group.clone()).set(r.committed as f64);
        gauge!(GROUP_APPLIED_INDEX, "group" => group.clone()).set(r.applied as f64);
        for (follower, lag) in lag {
            let labels = [("group", group.clone()), ("follower", follower.to_string())];
            gauge!(GROUP_REPLICATION_LAG_ENTRIES, &labels).set(*lag as f64);
        }
    }
    for (follower, _) in lag_of(previous) {
        if !lag.iter().any(|(f, _)| f == follower) {
            let labels = [("group", group.clone()), ("follower", follower.to_string())];
            gauge!(GROUP_REPLICATION_LAG_ENTRIES, &labels).set(0.0);
        }
    }
    if let Some(counts) = sample.counts {
        gauge!(GROUP_MAILBOXES, "group" => group.clone()).set(counts.mailboxes as f64);
        gauge!(GROUP_MESSAGES, "group" => group).set(counts.messages as f64);
    }
}

/// On the leader, each other member's lag: committed index minus its matched index (all of the
/// committed log if nothing is known to match). Empty on any other node.
pub fn replication_lag(m: &GroupMetrics) -> Vec<(NodeId, u64)> {
    let (Some(matched), GroupRole::Leader) = (&m.matched_log_index, m.role) else {
        return Vec::new();
    };
    let committed = m.committed_log_index.unwrap_or(0);
    matched
        .iter()
        .filter(|(member, _)| **member != m.node_id)
        .map(|(member, index)| (*member, committed.saturating_sub(index.unwrap_or(0))))
        .collect()
}

#[cfg(test)]
mod tests;
