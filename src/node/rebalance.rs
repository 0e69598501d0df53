//! Leader balancing: which voter should lead which group, as pure functions of one node's view
//! ([`plan`], [`automatic_move`]), and the background task that applies the automatic rule
//! ([`run_rebalancer`]).
//!
//! Every node hosts every group, so every node knows (from its own metrics) who leads each group.
//! A balanced cluster has every voter leading ⌊led/voters⌋ or ⌈led/voters⌉ of the groups that
//! have a leader, that is: the most and the least loaded voters differ by at most one.
//!
//! # The automatic rule
//! Every `--rebalance-interval-ms`, each node looks at its view and acts only if
//! 1. every group has a leader and every group has the same voter set (no election or membership
//!    change under way),
//! 2. this node is *the* most loaded voter (most groups led; ties go to the lowest node id), and
//! 3. some voter leads at least two groups fewer than this node and, in one of the groups this
//!    node leads, is alive (acknowledged within the election timeout) and fully caught up.
//!
//! It then hands that group (lowest group id) to that voter (the least loaded; ties to the
//! lowest id), and applies the rule again to the view as it will be after the move, up to
//! [`moves_per_round`] moves (one per 32 groups: a cluster bootstrapped with 1,024 groups, all led
//! by one node, is balanced in about twenty rounds, not seven hundred); it makes them at once and
//! waits for the new leaders before its next round. A move from a voter leading `L` to one
//! leading `M <= L - 2` strictly lowers the sum of squared loads, so a sequence of moves ends,
//! and no move is ever undone: no ping-pong. Only the single most loaded voter acts (in the view
//! each move leaves), so nodes that share a view never race each other into an overshoot. A
//! voter that is down is never a target (a transfer to it would leave the group without a leader
//! for an election timeout); when it returns it is one, and leaders flow back to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dovetail_raft::{GroupRole, ProposeError, RaftNode};

use super::mail_group::MailGroup;

type NodeId = u64;

/// Who leads what and who votes where, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    /// Indexed by group id.
    pub leaders: Vec<Option<NodeId>>,
    /// Indexed by group id.
    pub voters: Vec<BTreeSet<NodeId>>,
}

/// One leadership transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub group: u32,
    pub from: NodeId,
    pub to: NodeId,
}

impl LeaderView {
    /// This node's view, from its own metrics.
    pub fn observe(raft: &RaftNode<MailGroup>) -> LeaderView {
        let mut view = LeaderView {
            leaders: Vec::new(),
            voters: Vec::new(),
        };
        for group in 0..raft.group_count() {
            let metrics = raft.metrics(group).ok();
            view.leaders.push(metrics.as_ref().and_then(|m| m.current_leader));
            view.voters.push(metrics.map(|m| m.voters).unwrap_or_default());
        }
        view
    }

    /// The voter set, if every group has the same one.
    pub fn common_voters(&self) -> Option<&BTreeSet<NodeId>> {
        let first = self.voters.first()?;
        self.voters.iter().all(|v| v == first).then_some(first)
    }
}

/// Groups led by each voter (ascending group ids). Groups without a leader, or led by a node
/// that is not a voter, are left out.
fn loads(voters: &BTreeSet<NodeId>, leaders: &[Option<NodeId>]) -> BTreeMap<NodeId, Vec<u32>> {
    let mut loads: BTreeMap<NodeId, Vec<u32>> = voters.iter().map(|&v| (v, Vec::new())).collect();
    for (group, leader) in leaders.iter().enumerate() {
        if let Some(led) = leader.and_then(|l| loads.get_mut(&l)) {
            led.push(group as u32);
        }
    }
    loads
}

/// The most loaded voter (ties: lowest id) and the least loaded (ties: lowest id).
fn extremes(loads: &BTreeMap<NodeId, Vec<u32>>) -> Option<(NodeId, NodeId)> {
    // BTreeMap iterates by ascending id, and `max_by_key` keeps the last maximum: reverse it.
    let most = loads.iter().rev().max_by_key(|(_, g)| g.len())?.0;
    let least = loads.iter().min_by_key(|(_, g)| g.len())?.0;
    Some((*most, *least))
}

/// A deterministic plan that balances `leaders` over `voters`: repeatedly move the lowest group
/// of the most loaded voter to the least loaded, until they differ by at most one.
pub fn plan(voters: &BTreeSet<NodeId>, leaders: &[Option<NodeId>]) -> Vec<Move> {
    let mut loads = loads(voters, leaders);
    let mut moves = Vec::new();
    while let Some((most, least)) = extremes(&loads) {
        if loads[&most].len() <= loads[&least].len() + 1 {
            break;
        }
        let group = loads.get_mut(&most).expect("a voter").remove(0);
        let led = loads.get_mut(&least).expect("a voter");
        led.push(group);
        led.sort_unstable();
        moves.push(Move {
            group,
            from: most,
            to: least,
        });
    }
    moves
}

/// The one move `me` should make now under the automatic rule (module docs), if any.
/// `eligible(group, target)` says whether `target` is alive and caught up in `group`.
pub fn automatic_move(me: NodeId, view: &LeaderView, eligible: impl Fn(u32, NodeId) -> bool) -> Option<Move> {
    if view.leaders.iter().any(Option::is_none) {
        return None;
    }
    let voters = view.common_voters()?;
    let loads = loads(voters, &view.leaders);
    let (most, _) = extremes(&loads)?;
    if most != me {
        return None;
    }
    let mine = &loads[&me];
    let mut targets: Vec<(usize, NodeId)> = loads
        .iter()
        .filter(|(&v, led)| v != me && led.len() + 2 <= mine.len())
        .map(|(&v, led)| (led.len(), v))
        .collect();
    targets.sort_unstable();
    targets.into_iter().find_map(|(_, to)| {
        mine.iter()
            .find(|&&group| eligible(group, to))
            .map(|&group| Move { group, from: me, to })
    })
}

/// The most moves one round of the automatic rule makes: one per 32 groups, at least one.
pub fn moves_per_round(groups: usize) -> usize {
    (groups / 32).max(1)
}

/// Up to `max` moves `me` should make now: [`automatic_move`] applied again to the view each
/// move leaves, so every move is one the rule allows on its own (module docs).
pub fn automatic_moves(
    me: NodeId,
    view: &LeaderView,
    eligible: impl Fn(u32, NodeId) -> bool,
    max: usize,
) -> Vec<Move> {
    let mut view = view.clone();
    let mut moves = Vec::new();
    while moves.len() < max {
        let Some(step) = automatic_move(me, &view, &eligible) else {
            break;
        };
        view.leaders[step.group as usize] = Some(step.to);
        moves.push(step);
    }
    moves
}

/// Whether `target` is alive and fully caught up in `group`, which this node leads.
pub fn caught_up(raft: &RaftNode<MailGroup>, group: u32, target: NodeId, alive_within: Duration) -> bool {
    let Ok(m) = raft.metrics(group) else {
        return false;
    };
    if m.role != GroupRole::Leader {
        return false;
    }
    let matched = m
        .matched_log_index
        .as_ref()
        .and_then(|matched| matched.get(&target).copied().flatten());
    let acked = m
        .since_acked
        .as_ref()
        .and_then(|acked| acked.get(&target).copied().flatten());
    matched.is_some() && matched == m.last_log_index && acked.is_some_and(|ago| ago < alive_within)
}

/// Waits until this node sees `group` led by `to`, or `deadline` passes; returns whether it did.
pub async fn wait_for_leader(raft: &RaftNode<MailGroup>, group: u32, to: NodeId, deadline: Instant) -> bool {
    loop {
        if raft.metrics(group).is_ok_and(|m| m.current_leader == Some(to)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Applies the automatic rule every `interval` until the node shuts down. `alive_within` is how
/// recent a target's last acknowledgement must be (the election timeout is a good bound).
pub async fn run_rebalancer(raft: RaftNode<MailGroup>, interval: Duration, alive_within: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let view = LeaderView::observe(&raft);
        let steps = automatic_moves(
            raft.node_id(),
            &view,
            |group, target| caught_up(&raft, group, target, alive_within),
            moves_per_round(view.leaders.len()),
        );
        if steps.is_empty() {
            continue;
        }
        tracing::info!(
            moves = steps.len(),
            first_group = steps[0].group,
            "rebalancing: transferring leadership"
        );
        let deadline = Instant::now() + interval.max(Duration::from_secs(2));
        let mut transfers = tokio::task::JoinSet::new();
        for step in steps {
            let raft = raft.clone();
            transfers.spawn(async move {
                let result = match raft.transfer_leader(step.group, step.to, deadline).await {
                    Ok(()) => Ok(wait_for_leader(&raft, step.group, step.to, deadline).await),
                    Err(e) => Err(e),
                };
                (step, result)
            });
        }
        while let Some(joined) = transfers.join_next().await {
            let Ok((step, result)) = joined else {
                continue;
            };
            match result {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    group = step.group,
                    to = step.to,
                    "rebalancing: leadership did not move"
                ),
                Err(ProposeError::Shutdown) => return,
                Err(e) => tracing::warn!(group = step.group, to = step.to, error = %e, "rebalancing failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn apply(leaders: &mut [Option<NodeId>], moves: &[Move]) {
        for m in moves {
            assert_eq!(leaders[m.group as usize], Some(m.from));
            leaders[m.group as usize] = Some(m.to);
        }
    }

    #[test]
    fn plan_balances_to_floor_or_ceiling_and_is_deterministic() {
        let v = voters(&[1, 2, 3]);
        let mut leaders = vec![Some(1); 7];
        let moves = plan(&v, &leaders);
        assert_eq!(moves, plan(&v, &leaders));
        apply(&mut leaders, &moves);
        let counts: Vec<usize> = (1..=3)
            .map(|n| leaders.iter().filter(|l| **l == Some(n)).count())
            .collect();
        assert_eq!(counts, vec![3, 2, 2]);
        assert!(plan(&v, &leaders).is_empty(), "a balanced view needs no moves");
        assert_eq!(moves.len(), 4, "no move is wasted: {moves:?}");
    }

    #[test]
    fn plan_ignores_leaderless_groups_and_non_voters() {
        let v = voters(&[1, 2]);
        let leaders = vec![Some(1), Some(1), None, Some(9), Some(1)];
        let moves = plan(&v, &leaders);
        assert_eq!(
            moves,
            vec![Move {
                group: 0,
                from: 1,
                to: 2
            }]
        );
    }

    #[test]
    fn only_the_most_loaded_voter_acts_and_never_moves_back() {
        let view = |leaders: Vec<NodeId>| LeaderView {
            voters: vec![voters(&[1, 2, 3]); leaders.len()],
            leaders: leaders.into_iter().map(Some).collect(),
        };
        let all = |_, _| true;
        // Node 3 returned: nodes 1 and 2 lead three groups each; only node 1 (lowest id) acts.
        let v = view(vec![1, 2, 1, 2, 1, 2]);
        assert_eq!(automatic_move(2, &v, all), None);
        assert_eq!(
            automatic_move(1, &v, all),
            Some(Move {
                group: 0,
                from: 1,
                to: 3
            })
        );
        let v = view(vec![3, 2, 1, 2, 1, 2]);
        assert_eq!(automatic_move(1, &v, all), None);
        assert_eq!(
            automatic_move(2, &v, all),
            Some(Move {
                group: 1,
                from: 2,
                to: 3
            })
        );
        let v = view(vec![3, 3, 1, 2, 1, 2]);
        for me in 1..=3 {
            assert_eq!(automatic_move(me, &v, all), None, "balanced: node {me} stays put");
        }
        // A target that is down or behind is skipped; with no other target, nothing moves.
        let v = view(vec![1, 2, 1, 2, 1, 2]);
        assert_eq!(automatic_move(1, &v, |_, to| to != 3), None);
        assert_eq!(
            automatic_move(1, &v, |group, _| group == 4),
            Some(Move {
                group: 4,
                from: 1,
                to: 3
            })
        );
    }

    #[test]
    fn a_round_makes_several_moves_each_one_the_rule_allows() {
        // 1,024 groups all led by node 1 (a fresh bootstrap): 32 moves a round, alternating
        // targets, and rounds until balanced never undo a move.
        let groups = 1024;
        let mut view = LeaderView {
            leaders: vec![Some(1); groups],
            voters: vec![voters(&[1, 2, 3]); groups],
        };
        let max = moves_per_round(groups);
        assert_eq!(max, 32);
        let first = automatic_moves(1, &view, |_, _| true, max);
        assert_eq!(first.len(), 32);
        assert!(first.iter().all(|m| m.from == 1), "{first:?}");
        let to_2 = first.iter().filter(|m| m.to == 2).count();
        assert_eq!((to_2, first.len() - to_2), (16, 16), "both targets fill alike");
        let mut rounds = 0;
        let mut moved = BTreeSet::new();
        loop {
            let moves: Vec<Move> = (1..=3)
                .flat_map(|me| automatic_moves(me, &view, |_, _| true, max))
                .collect();
            if moves.is_empty() {
                break;
            }
            for m in &moves {
                assert!(moved.insert(m.group), "group {} moved twice", m.group);
            }
            apply(&mut view.leaders, &moves);
            rounds += 1;
        }
        let counts: Vec<usize> = (1..=3)
            .map(|n| view.leaders.iter().filter(|l| **l == Some(n)).count())
            .collect();
        assert_eq!(counts, vec![342, 341, 341]);
        assert_eq!(rounds, 22, "682 moves at 32 a round");
        // Few groups: one move a round, as before.
        assert_eq!(moves_per_round(6), 1);
        let six = LeaderView {
            leaders: vec![Some(1); 6],
            voters: vec![voters(&[1, 2, 3]); 6],
        };
        assert_eq!(automatic_moves(1, &six, |_, _| true, 1).len(), 1);
        // A round stops where the rule stops: once this node is no longer the most loaded.
        assert_eq!(automatic_moves(1, &six, |_, _| true, 10).len(), 4);
    }

    #[test]
    fn no_move_during_elections_or_membership_changes() {
        let mut v = LeaderView {
            leaders: vec![Some(1), Some(1), None],
            voters: vec![voters(&[1, 2]); 3],
        };
        assert_eq!(automatic_move(1, &v, |_, _| true), None);
        v.leaders[2] = Some(1);
        assert!(automatic_move(1, &v, |_, _| true).is_some());
        v.voters[1] = voters(&[1, 2, 3]);
        assert_eq!(automatic_move(1, &v, |_, _| true), None);
    }
}
