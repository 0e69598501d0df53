//! Prometheus series of a node's message bodies (issue "Message bodies", operations): the gauge
//! task (`node::metrics`) copies [`NodeBodies::status`] into them every second, so `/metrics`
//! and `/admin/status` (`node.bodies`) show the same numbers. The fetch-on-miss latency
//! histogram is recorded where the fetch happens (`NodeBodies::open`,
//! [`BODY_FETCH_SECONDS`]).
//!
//! Labels are ids only: `peer` is a node id, `tier` and `result` are fixed words.

use std::collections::BTreeSet;

use dovetail_raft::NodeId;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

use super::bodies::{NodeBodies, BODY_FETCH_SECONDS};

/// Gauge: bodies in this node's store, as of the last body sweep.
pub const BODIES_STORED: &str = "dovetail_bodies_stored";
/// Gauge: bytes of those bodies.
pub const BODIES_STORED_BYTES: &str = "dovetail_bodies_stored_bytes";
/// Gauge: bodies this node's applied indexes reference, as of the last sweep.
pub const BODIES_REFERENCED: &str = "dovetail_bodies_referenced";
/// Gauge: referenced bodies missing here after the last sweep's fetches.
pub const BODIES_MISSING: &str = "dovetail_bodies_missing";
/// Counter: stored copies that failed their check (moved aside) since the node started.
pub const BODIES_DAMAGED_TOTAL: &str = "dovetail_bodies_damaged_total";
/// Counter: bodies (and bytes) the sweeps collected since the node started.
pub const BODIES_COLLECTED_TOTAL: &str = "dovetail_bodies_collected_total";
pub const BODIES_COLLECTED_BYTES_TOTAL: &str = "dovetail_bodies_collected_bytes_total";
/// Counter, label `result` (`ok`, `failed`): fetches on a miss.
pub const BODY_FETCHES_TOTAL: &str = "dovetail_body_fetches_total";
/// Counter, label `kind` (`pushed`: a backlog's push, `fetched`: a sweep's fetch): background
/// transfers that succeeded.
pub const BODY_BACKGROUND_TOTAL: &str = "dovetail_body_background_total";
/// Gauge, labels `peer`, `tier` (`memory`, `disk`): ids of bodies this node still owes a peer.
/// Set to 0 for a peer no longer listed.
pub const BODY_BACKLOG_IDS: &str = "dovetail_body_backlog_ids";
/// Gauge, label `peer`: 1 while the peer is marked for a full body resync, else 0.
pub const BODY_BACKLOG_RESYNC: &str = "dovetail_body_backlog_resync";

pub fn describe() {
    describe_gauge!(
        BODIES_STORED,
        "Bodies in this node's store (as of the last sweep)"
    );
    describe_gauge!(
        BODIES_STORED_BYTES,
        Unit::Bytes,
        "Bytes of the bodies in this node's store"
    );
    describe_gauge!(BODIES_REFERENCED, "Bodies this node's applied indexes reference");
    describe_gauge!(BODIES_MISSING, "Referenced bodies missing from this node's store");
    describe_counter!(
        BODIES_DAMAGED_TOTAL,
        "Stored bodies that failed their check, moved aside"
    );
    describe_counter!(BODIES_COLLECTED_TOTAL, "Unreferenced bodies the sweeps collected");
    describe_counter!(
        BODIES_COLLECTED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of the bodies the sweeps collected"
    );
    describe_counter!(BODY_FETCHES_TOTAL, "Fetches on a miss, by result (ok, failed)");
    describe_histogram!(
        BODY_FETCH_SECONDS,
        Unit::Seconds,
        "Time of a successful fetch on a miss"
    );
    describe_counter!(
        BODY_BACKGROUND_TOTAL,
        "Background body transfers: pushed (backlog), fetched (sweep)"
    );
    describe_gauge!(
        BODY_BACKLOG_IDS,
        "Ids of bodies owed to a peer, by tier (memory, disk)"
    );
    describe_gauge!(
        BODY_BACKLOG_RESYNC,
        "1 while a peer is marked for a full body resync"
    );
}

/// Copies `bodies`' status into the series. `previous_peers` are the peers whose backlog series
/// the previous round set; those no longer listed are set to 0. Returns the peers set now.
pub fn sample_bodies(bodies: &NodeBodies, previous_peers: BTreeSet<NodeId>) -> BTreeSet<NodeId> {
    let s = bodies.status();
    gauge!(BODIES_STORED).set(s.stored as f64);
    gauge!(BODIES_STORED_BYTES).set(s.stored_bytes as f64);
    gauge!(BODIES_REFERENCED).set(s.referenced as f64);
    gauge!(BODIES_MISSING).set(s.missing as f64);
    counter!(BODIES_DAMAGED_TOTAL).absolute(s.damaged);
    counter!(BODIES_COLLECTED_TOTAL).absolute(s.collected);
    counter!(BODIES_COLLECTED_BYTES_TOTAL).absolute(s.collected_bytes);
    counter!(BODY_FETCHES_TOTAL, "result" => "ok").absolute(s.fetches.saturating_sub(s.fetch_failures));
    counter!(BODY_FETCHES_TOTAL, "result" => "failed").absolute(s.fetch_failures);
    counter!(BODY_BACKGROUND_TOTAL, "kind" => "pushed").absolute(s.background_pushed);
    counter!(BODY_BACKGROUND_TOTAL, "kind" => "fetched").absolute(s.background_fetched);
    let mut peers = BTreeSet::new();
    for b in &s.backlogs {
        set_backlog(b.node_id, b.queued as u64, b.spilled, b.resync);
        peers.insert(b.node_id);
    }
    for peer in previous_peers.difference(&peers) {
        set_backlog(*peer, 0, 0, false);
    }
    peers
}

fn set_backlog(peer: NodeId, memory: u64, disk: u64, resync: bool) {
    let peer = peer.to_string();
    gauge!(BODY_BACKLOG_IDS, "peer" => peer.clone(), "tier" => "memory").set(memory as f64);
    gauge!(BODY_BACKLOG_IDS, "peer" => peer.clone(), "tier" => "disk").set(disk as f64);
    gauge!(BODY_BACKLOG_RESYNC, "peer" => peer).set(if resync { 1.0 } else { 0.0 });
}
