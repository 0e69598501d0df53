//! Guarded membership changes on the groups' leaders (`crate::membership`), in process: a
//! learner at an address nobody serves (node 20 at 127.0.0.1:1) is added to every group, its
//! promotion is refused by every group's leader (it matched nothing, never answered) and leaves
//! every group as it was; removing a voter of three is refused; adding a voter as learner changes
//! nothing and says so; forced, the unreachable learner becomes a voter (three healthy voters of
//! four still commit), and removing it again is allowed and brings every group back to the three.
//! A group marked removed on a node refuses that node's proposals and read indexes at once.

use super::*;
use crate::membership::{MemberRole, MembershipChange, MembershipOutcome, Refusal};

fn outcomes(changes: &[GroupChange]) -> Vec<&MembershipOutcome> {
    changes.iter().map(|c| &c.outcome).collect()
}

async fn voters_everywhere(cluster: &TestCluster, expected: &[NodeId]) {
    let expected: BTreeSet<NodeId> = expected.iter().copied().collect();
    wait_until(Duration::from_secs(10), "the voters everywhere", || {
        cluster
            .running()
            .all(|n| (0..GROUPS).all(|g| n.metrics(g).unwrap().voters == expected))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_membership_guards_refuse_an_unreachable_learner_and_too_few_voters() {
    let cluster = TestCluster::start(fast).await;
    cluster.wait_for_leaders().await;
    for group_id in 0..GROUPS {
        cluster
            .node(1)
            .propose(group_id, b"before".to_vec(), deadline(10))
            .await
            .unwrap();
    }
    let unreachable = Node {
        peer_addr: "127.0.0.1:1".into(),
        api_addr: "127.0.0.1:1".into(),
    };
    let added = cluster
        .node(2)
        .change_members(
            MembershipChange::AddLearner {
                node_id: 20,
                node: unreachable,
            },
            deadline(10),
        )
        .await
        .unwrap();
    assert_eq!(added.len(), GROUPS as usize);
    for change in &added {
        assert!(
            matches!(
                change.outcome,
                MembershipOutcome::Changed {
                    role: MemberRole::Learner,
                    ..
                }
            ),
            "{change:?}"
        );
    }

    // Promotion without force: every group's leader refuses, naming the lag and the threshold.
    let promote = |force| MembershipChange::Promote { node_id: 20, force };
    let refused = cluster
        .node(3)
        .change_members(promote(false), deadline(10))
        .await
        .unwrap();
    for change in &refused {
        match &change.outcome {
            MembershipOutcome::Refused(Refusal::NotCaughtUp {
                node_id: 20,
                matched: None,
                lag_entries,
                max_lag_entries: 300,
                max_ack_age_ms: 150,
                ..
            }) => assert!(*lag_entries >= 2, "group {}: {change:?}", change.group_id),
            other => panic!("group {}: {other:?}", change.group_id),
        }
    }
    voters_everywhere(&cluster, &[1, 2, 3]).await;

    // Removing a voter of three: refused everywhere, nothing changed.
    let refused = cluster
        .node(1)
        .change_members(
            MembershipChange::Remove {
                node_id: 3,
                force: false,
            },
            deadline(10),
        )
        .await
        .unwrap();
    for outcome in outcomes(&refused) {
        assert!(
            matches!(
                outcome,
                MembershipOutcome::Refused(Refusal::TooFewVoters { node_id: 3, .. })
            ),
            "{outcome:?}"
        );
    }
    voters_everywhere(&cluster, &[1, 2, 3]).await;

    // A voter added as learner stays a voter, and the answer says so.
    let again = cluster
        .node(1)
        .change_members(
            MembershipChange::AddLearner {
                node_id: 2,
                node: cluster.node(1).member_nodes(0).unwrap()[&2].clone(),
            },
            deadline(10),
        )
        .await
        .unwrap();
    for outcome in outcomes(&again) {
        assert_eq!(
            outcome,
            &MembershipOutcome::Unchanged {
                already: MemberRole::Voter
            }
        );
    }

    // Forced: node 20 becomes a voter; three healthy voters of four still commit.
    let forced = cluster
        .node(1)
        .change_members(promote(true), deadline(20))
        .await
        .unwrap();
    for outcome in outcomes(&forced) {
        assert!(
            matches!(
                outcome,
                MembershipOutcome::Changed {
                    role: MemberRole::Voter,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
    voters_everywhere(&cluster, &[1, 2, 3, 20]).await;
    for group_id in 0..GROUPS {
        cluster
            .node(2)
            .propose(group_id, b"with 20".to_vec(), deadline(10))
            .await
            .unwrap();
    }
    // The undo: removing the unreachable voter leaves three healthy voters, so it is allowed.
    let undone = cluster
        .node(3)
        .change_members(
            MembershipChange::Remove {
                node_id: 20,
                force: false,
            },
            deadline(20),
        )
        .await
        .unwrap();
    for outcome in outcomes(&undone) {
        assert!(
            matches!(
                outcome,
                MembershipOutcome::Changed {
                    role: MemberRole::Absent,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
    voters_everywhere(&cluster, &[1, 2, 3]).await;
    for group_id in 0..GROUPS {
        cluster
            .node(3)
            .propose(group_id, b"after".to_vec(), deadline(10))
            .await
            .unwrap();
    }

    // A group marked removed on node 3 refuses its requests there; the others still serve.
    assert!(!cluster.node(3).set_removed(1, true).unwrap());
    assert!(cluster.node(3).metrics(1).unwrap().removed);
    assert!(matches!(
        cluster.node(3).propose(1, b"x".to_vec(), deadline(5)).await,
        Err(ProposeError::Removed {
            group_id: 1,
            node_id: 3
        })
    ));
    assert!(matches!(
        cluster.node(3).read_index(1, deadline(5)).await,
        Err(ProposeError::Removed { .. })
    ));
    cluster
        .node(3)
        .propose(0, b"y".to_vec(), deadline(5))
        .await
        .unwrap();
    cluster
        .node(1)
        .propose(1, b"z".to_vec(), deadline(5))
        .await
        .unwrap();
    assert!(cluster.node(3).set_removed(1, false).unwrap());
    cluster
        .node(3)
        .propose(1, b"w".to_vec(), deadline(5))
        .await
        .unwrap();
    cluster.shutdown().await;
}
