//! Tests of the metrics module: route labelling by the middleware (on a recorder local to the
//! test's thread, so tests running in parallel do not see each other's counts), the lag rule,
//! and the idempotent process recorder.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use dovetail_raft::LogPosition;
use tower::ServiceExt;

use super::*;

/// The value of the series `name` whose labels include every one of `labels` (`key="value"`).
fn value_of(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && labels.iter().all(|label| rest.contains(label)))
        })
        .and_then(|(_, value)| value.parse().ok())
}

#[tokio::test(flavor = "current_thread")]
async fn middleware_labels_requests_by_matched_route() {
    let recorder = builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let app = Router::new()
        .route("/v1/users/{user}/mailboxes", get(|| async { "ok" }))
        .route(
            "/v1/users/{user}/mailboxes/{mailbox}",
            get(|| async { StatusCode::NOT_FOUND }),
        )
        .layer(axum::middleware::from_fn(track_requests));
    let paths = [
        "/v1/users/alice/mailboxes",
        "/v1/users/bob/mailboxes",
        "/v1/users/alice/mailboxes/INBOX",
        "/no/such/route/carol",
    ];
    for path in paths {
        let request = Request::get(path).body(Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap();
    }

    let text = handle.render();
    let requests = |route: &str, status: &str| {
        let route = format!("route=\"{route}\"");
        let status = format!("status=\"{status}\"");
        value_of(&text, API_REQUESTS_TOTAL, &[&route, "method=\"GET\"", &status])
    };
    assert_eq!(requests("/v1/users/{user}/mailboxes", "200"), Some(2.0), "{text}");
    assert_eq!(
        requests("/v1/users/{user}/mailboxes/{mailbox}", "404"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(requests("unmatched", "404"), Some(1.0), "{text}");
    for name in ["alice", "bob", "carol", "INBOX"] {
        assert!(
            !text.contains(name),
            "a path segment became a label: {name}\n{text}"
        );
    }
    // A true histogram: buckets from 50 µs, and a count per route.
    let route = "route=\"/v1/users/{user}/mailboxes\"";
    let bucket = format!("{API_REQUEST_DURATION_SECONDS}_bucket");
    assert!(
        value_of(&text, &bucket, &[route, "le=\"0.00005\""]).is_some(),
        "{text}"
    );
    assert_eq!(
        value_of(&text, &bucket, &[route, "le=\"+Inf\""]),
        Some(2.0),
        "{text}"
    );
    let count = format!("{API_REQUEST_DURATION_SECONDS}_count");
    assert_eq!(value_of(&text, &count, &[route]), Some(2.0), "{text}");
}

#[test]
fn method_labels_are_bounded() {
    assert_eq!(method_label(&Method::POST), "POST");
    assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
}

fn metrics_of(role: GroupRole, committed: Option<u64>, matched: &[(NodeId, Option<u64>)]) -> GroupMetrics {
    GroupMetrics {
        group_id: 3,
        node_id: 1,
        role,
        current_leader: Some(1),
        current_term: 2,
        last_log_index: committed,
        committed_log_index: committed,
        applied: committed.map(|index| LogPosition::new(2, index)),
        snapshot: None,
        purged_log_index: None,
        voters: BTreeSet::from([1, 2, 3]),
        learners: BTreeSet::new(),
        matched_log_index: (role == GroupRole::Leader)
            .then(|| matched.iter().copied().collect::<BTreeMap<_, _>>()),
        since_acked: None,
        fatal: None,
        membership_log: None,
        membership_committed: true,
        since_leader_contact: std::time::Duration::ZERO,
        removed: false,
    }
}

#[test]
fn lag_is_committed_minus_matched_on_the_leader_only() {
    let matched = [(1, Some(12)), (2, Some(10)), (3, None)];
    let leader = metrics_of(GroupRole::Leader, Some(10), &matched);
    // The leader itself is no follower; a follower ahead of the commit index lags by 0.
    assert_eq!(replication_lag(&leader), vec![(2, 0), (3, 10)]);
    let behind = metrics_of(GroupRole::Leader, Some(15), &matched);
    assert_eq!(replication_lag(&behind), vec![(2, 5), (3, 15)]);
    assert!(replication_lag(&metrics_of(GroupRole::Follower, Some(15), &matched)).is_empty());
}

#[test]
fn install_is_idempotent() {
    let first = install();
    let second = install();
    metrics::counter!("dovetail_test_install_total").increment(3);
    for handle in [first, second] {
        let text = handle.render();
        assert!(text.contains("dovetail_test_install_total 3"), "{text}");
    }
}

/// A group's gauges are set on its first sample and again only when one of its values changes:
/// a repeated sample sets nothing (a gauge changed behind its back keeps that value), a new
/// count or term sets them all, and a lag series the group no longer reports (it stopped
/// leading) goes to 0 while the others stay.
#[test]
fn a_group_gauges_are_set_only_when_its_values_change() {
    let recorder = builder().build_recorder();
    let handle = recorder.handle();
    let leading = metrics_of(
        GroupRole::Leader,
        Some(10),
        &[(1, Some(10)), (2, Some(7)), (3, Some(9))],
    );
    let counts = GroupCounts {
        mailboxes: 2,
        messages: 5,
    };
    let sample = |m: &GroupMetrics, counts: GroupCounts| GroupSample {
        raft: Some(RaftSample::of(m)),
        counts: Some(counts),
    };
    let value = |name: &str, labels: &[&str]| value_of(&handle.render(), name, labels);
    metrics::with_local_recorder(&recorder, || {
        let mut shown = GroupGauges::default();
        assert!(shown.record(3, sample(&leading, counts)));
        assert_eq!(value(GROUP_MESSAGES, &["group=\"3\""]), Some(5.0));
        assert_eq!(value(GROUP_MAILBOXES, &["group=\"3\""]), Some(2.0));
        assert_eq!(value(GROUP_IS_LEADER, &["group=\"3\""]), Some(1.0));
        assert_eq!(value(GROUP_APPLIED_INDEX, &["group=\"3\""]), Some(10.0));
        let lag = |follower: &str| {
            value(
                GROUP_REPLICATION_LAG_ENTRIES,
                &["group=\"3\"", &format!("follower=\"{follower}\"")],
            )
        };
        assert_eq!((lag("2"), lag("3")), (Some(3.0), Some(1.0)));
        // Unchanged: nothing is set.
        gauge!(GROUP_MESSAGES, "group" => "3").set(99.0);
        assert!(!shown.record(3, sample(&leading, counts)));
        assert_eq!(value(GROUP_MESSAGES, &["group=\"3\""]), Some(99.0));
        // One count changed: the group's gauges are set.
        let more = GroupCounts {
            messages: 6,
            ..counts
        };
        assert!(shown.record(3, sample(&leading, more)));
        assert_eq!(value(GROUP_MESSAGES, &["group=\"3\""]), Some(6.0));
        // Another group is apart.
        assert!(shown.record(7, sample(&leading, counts)));
        assert_eq!(value(GROUP_MESSAGES, &["group=\"7\""]), Some(5.0));
        assert!(!shown.record(3, sample(&leading, more)));
        // No longer leading: its lag series go to 0.
        let following = metrics_of(GroupRole::Follower, Some(12), &[]);
        assert!(shown.record(3, sample(&following, more)));
        assert_eq!(value(GROUP_IS_LEADER, &["group=\"3\""]), Some(0.0));
        assert_eq!(value(GROUP_COMMITTED_INDEX, &["group=\"3\""]), Some(12.0));
        assert_eq!((lag("2"), lag("3")), (Some(0.0), Some(0.0)));
        // Metrics unreadable: the Raft gauges keep their values, the counts still move.
        let blind = GroupSample {
            raft: None,
            counts: Some(counts),
        };
        assert!(shown.record(3, blind));
        assert_eq!(value(GROUP_COMMITTED_INDEX, &["group=\"3\""]), Some(12.0));
        assert_eq!(value(GROUP_MESSAGES, &["group=\"3\""]), Some(5.0));
    });
}
