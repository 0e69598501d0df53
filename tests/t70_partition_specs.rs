//! Each partition spec of `scripts/partition.sh` installs exactly the grudge of Jepsen's nemesis
//! of the same name (`jepsen.nemesis`: complete-grudge, bisect, bridge, majorities-ring-perfect).
//! The script runs in its dry-run mode (`DOVETAIL_NEMESIS_DRY_RUN=1`, node count from
//! `DOVETAIL_NETNS_NODES`), which prints the iptables commands instead of running them, so no
//! cluster and no root are needed; the DROP rules printed, as (receiving node, snubbed node)
//! pairs, are compared with the grudge computed here from Jepsen's definitions, mostly on 5
//! nodes. Beyond 5 nodes, where Jepsen builds its ring at random, the ring is checked against the
//! definition itself; malformed specs must be usage errors that install nothing.
//! `t70_netns_scripts` runs the partitions for real.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Runs `partition.sh <spec>` in dry-run mode for `nodes` nodes; returns the exit code, the
/// (receiver, sender) pairs of the printed DROP rules, and stderr.
fn dry_run(nodes: u64, spec: &str) -> (i32, BTreeSet<(u64, u64)>, String) {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/partition.sh"))
        .arg(spec)
        .env("DOVETAIL_NETNS_DIR", state.path())
        .env("DOVETAIL_NEMESIS_DRY_RUN", "1")
        .env("DOVETAIL_NETNS_NODES", nodes.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut drops = BTreeSet::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[..4], ["ip", "netns", "exec", words[3]], "{line}");
        let receiver: u64 = words[3].strip_prefix("dvt").unwrap().parse().unwrap();
        if words.contains(&"-A") || words.contains(&"-I") {
            assert!(
                line.contains("--comment dovetail-nemesis"),
                "untagged rule: {line}"
            );
        }
        if !line.ends_with("-j DROP") {
            continue;
        }
        let source = words[words.iter().position(|w| *w == "-s").unwrap() + 1];
        let sender: u64 = source.strip_prefix("10.77.0.").unwrap().parse::<u64>().unwrap() - 10;
        assert!(sender >= 1, "a rule drops a non-node address: {line}");
        assert!(drops.insert((receiver, sender)), "duplicate rule: {line}");
    }
    (
        out.status.code().unwrap_or(-1),
        drops,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Jepsen's `complete-grudge`: no node hears from outside its component.
fn complete_grudge(components: &[&[u64]]) -> BTreeSet<(u64, u64)> {
    let mut grudge = BTreeSet::new();
    for (a, receivers) in components.iter().enumerate() {
        for (b, senders) in components.iter().enumerate() {
            if a != b {
                for &r in receivers.iter() {
                    for &s in senders.iter() {
                        grudge.insert((r, s));
                    }
                }
            }
        }
    }
    grudge
}

/// Jepsen's `bridge` over nodes 1..=n: bisect (smaller half first), the first node of the
/// second half is the bridge, which snubs nobody and whom nobody snubs.
fn jepsen_bridge(n: u64) -> BTreeSet<(u64, u64)> {
    let nodes: Vec<u64> = (1..=n).collect();
    let (first, second) = nodes.split_at((n / 2) as usize);
    let bridge = second[0];
    complete_grudge(&[first, second])
        .into_iter()
        .filter(|&(r, s)| r != bridge && s != bridge)
        .collect()
}

/// Jepsen's `majorities-ring-perfect` with the ring in `order` (Jepsen shuffles it): the ring
/// cut into n runs of m = majority(n) consecutive nodes, each run seen by its middle node.
fn jepsen_majorities_ring(order: &[u64]) -> BTreeSet<(u64, u64)> {
    let n = order.len();
    let m = n / 2 + 1;
    let mut grudge = BTreeSet::new();
    for start in 0..n {
        let run: Vec<u64> = (0..m).map(|k| order[(start + k) % n]).collect();
        let node = run[m / 2];
        for &other in order {
            if !run.contains(&other) {
                grudge.insert((node, other));
            }
        }
    }
    grudge
}

/// The majorities-ring property itself: every node hears from a majority that includes itself,
/// and no two nodes hear from the same set.
fn assert_majorities_ring(n: u64, grudge: &BTreeSet<(u64, u64)>) {
    let mut seen_sets = BTreeSet::new();
    for node in 1..=n {
        let sees: BTreeSet<u64> = (1..=n).filter(|&s| !grudge.contains(&(node, s))).collect();
        assert!(sees.contains(&node), "node {node} snubs itself");
        assert!(sees.len() as u64 > n / 2, "node {node} sees only {sees:?} of {n}");
        assert!(
            seen_sets.insert(sees.clone()),
            "two nodes see the same majority {sees:?}"
        );
    }
}

#[test]
fn partition_specs_install_jepsen_grudges() {
    let expect = |nodes: u64, spec: &str, grudge: BTreeSet<(u64, u64)>| {
        let (code, drops, stderr) = dry_run(nodes, spec);
        assert_eq!(code, 0, "{spec} on {nodes} nodes: {stderr}");
        assert_eq!(drops, grudge, "{spec} on {nodes} nodes");
        drops
    };

    // Isolation and halves (Jepsen's split-one with a chosen node, and bisect).
    for spec in ["1", "isolate:1"] {
        expect(5, spec, complete_grudge(&[&[1], &[2, 3, 4, 5]]));
    }
    expect(5, "isolate:4", complete_grudge(&[&[4], &[1, 2, 3, 5]]));
    for spec in ["halves", "halves:1,2|3,4,5"] {
        expect(5, spec, complete_grudge(&[&[1, 2], &[3, 4, 5]]));
    }
    expect(5, "halves:1,4|2|3,5", complete_grudge(&[&[1, 4], &[2], &[3, 5]]));

    // Bridge: node 3 talks to both sides, which do not talk to each other.
    for spec in ["bridge", "bridge:1,2|3|4,5"] {
        expect(5, spec, jepsen_bridge(5));
    }
    expect(5, "bridge:1,5|2|3,4", complete_grudge(&[&[1, 5], &[3, 4]]));

    // Majorities ring: Jepsen's perfect ring, on the natural order and on a given one; on 5
    // nodes each node hears exactly from its two ring neighbours.
    let ring = expect(5, "ring", jepsen_majorities_ring(&[1, 2, 3, 4, 5]));
    assert_majorities_ring(5, &ring);
    for node in 1..=5u64 {
        let sees: Vec<u64> = (1..=5).filter(|&s| !ring.contains(&(node, s))).collect();
        let mut neighbours = vec![node, node % 5 + 1, (node + 3) % 5 + 1];
        neighbours.sort();
        assert_eq!(sees, neighbours, "node {node}");
    }
    let shuffled = expect(5, "ring:3,1,5,2,4", jepsen_majorities_ring(&[3, 1, 5, 2, 4]));
    assert_majorities_ring(5, &shuffled);
    for n in [3, 4] {
        let order: Vec<u64> = (1..=n).collect();
        let grudge = expect(n, "ring", jepsen_majorities_ring(&order));
        assert_majorities_ring(n, &grudge);
    }
    // Beyond 5 nodes Jepsen builds the ring at random; the scripts' deterministic one must meet
    // the same definition, and be symmetric.
    for n in [6, 7, 8, 9] {
        let (code, grudge, stderr) = dry_run(n, "ring");
        assert_eq!(code, 0, "{stderr}");
        assert_majorities_ring(n, &grudge);
        assert!(
            grudge.iter().all(|&(r, s)| grudge.contains(&(s, r))),
            "ring on {n} is not symmetric"
        );
    }

    // Bad specs are usage errors (exit 2) that install nothing.
    for spec in [
        "",
        "bogus",
        "isolate:0",
        "isolate:6",
        "halves:1,2|3",
        "halves:1,2|2,3,4,5",
        "halves:1,2,3,4,5",
        "halves:1,2|",
        "ring:1,2,3",
        "bridge:1,2|3,4,5",
        "bridge:1|2|3",
    ] {
        let (code, drops, stderr) = dry_run(5, spec);
        assert_eq!(code, 2, "{spec:?} was accepted: {drops:?}");
        assert!(drops.is_empty(), "{spec:?}");
        assert!(stderr.contains("usage:"), "{spec:?}: {stderr}");
    }
}
