//! Membership: add a learner to every group, promote it to voter everywhere, remove a member
//! from every group. Each runs on every group's leader under the guards of
//! `dovetail_raft::membership` (a promotion needs a caught-up learner, a removal must leave
//! three voters that survive a failure; `"force": true` skips either) and is idempotent, so a 503
//! (some groups changed, others did not before the deadline) is answered by retrying.
//!
//! Every answer says what each group's leader did: `groups` lists per group `outcome`
//! (`changed` with the node's `role` and the membership entry's `log_index`, `unchanged` with the
//! role it `already` had, `allowed` — a check that passed where another group refused — or
//! `refused` with the rule's `code`, `reason` and figures). A promotion or removal that any
//! leader refuses changes nothing anywhere (every group is checked first) and answers 409 with
//! the refusals in the message and the whole report in `error.details`.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::{delete, post};
use axum::{Json, Router};
use dovetail_raft::{GroupChange, MemberRole, MembershipChange, MembershipOutcome, Node, Refusal};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::state::AdminState;
use crate::api::extract::{AdminJson, OptionalJson, PathParams, QueryParams};
use crate::api::{ApiError, ErrorCode};

/// How many groups' refusals the error message spells out (the rest are in `error.details`).
const REFUSALS_IN_MESSAGE: usize = 4;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/members/learners", post(add_learner))
        .route("/admin/members/voters", post(add_voter))
        .route("/admin/members/{node_id}", delete(remove_member))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLearner {
    node_id: u64,
    peer_addr: String,
    api_addr: String,
}

async fn add_learner(
    State(admin): State<AdminState>,
    AdminJson(body): AdminJson<AddLearner>,
) -> Result<Json<Value>, ApiError> {
    if body.node_id == 0 {
        return Err(ApiError::invalid("node_id: node ids start at 1"));
    }
    for (field, addr) in [("peer_addr", &body.peer_addr), ("api_addr", &body.api_addr)] {
        addr.parse::<SocketAddr>()
            .map_err(|e| ApiError::invalid(format!("{field}: {addr:?} is not host:port ({e})")))?;
    }
    let change = MembershipChange::AddLearner {
        node_id: body.node_id,
        node: Node {
            peer_addr: body.peer_addr,
            api_addr: body.api_addr,
        },
    };
    let changes = admin
        .raft
        .change_members(change.clone(), admin.deadline())
        .await?;
    answer(&change, &changes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddVoter {
    node_id: u64,
    #[serde(default)]
    force: bool,
}

async fn add_voter(
    State(admin): State<AdminState>,
    AdminJson(body): AdminJson<AddVoter>,
) -> Result<Json<Value>, ApiError> {
    // Every group must already know the node (as learner or voter); the local view may lag the
    // leaders', which then decide.
    for group in 0..admin.raft.group_count() {
        let m = admin.raft.metrics(group)?;
        if !m.voters.contains(&body.node_id) && !m.learners.contains(&body.node_id) {
            return Err(ApiError::new(
                ErrorCode::NoSuchNode,
                format!(
                    "node {} is not a learner of group {group}: add it first (POST /admin/members/learners)",
                    body.node_id
                ),
            ));
        }
    }
    let change = MembershipChange::Promote {
        node_id: body.node_id,
        force: body.force,
    };
    let changes = admin
        .raft
        .change_members(change.clone(), admin.deadline())
        .await?;
    answer(&change, &changes)
}

/// `force` of a removal, as a query parameter (`?force=true`) or a JSON body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Force {
    #[serde(default)]
    force: bool,
}

async fn remove_member(
    State(admin): State<AdminState>,
    PathParams(node_id): PathParams<u64>,
    QueryParams(query): QueryParams<Force>,
    OptionalJson(body): OptionalJson<Force>,
) -> Result<Json<Value>, ApiError> {
    let mut known = false;
    for group in 0..admin.raft.group_count() {
        let m = admin.raft.metrics(group)?;
        known |= m.voters.contains(&node_id) || m.learners.contains(&node_id);
    }
    if !known {
        return Err(ApiError::new(
            ErrorCode::NoSuchNode,
            format!("node {node_id} is not a member"),
        ));
    }
    let change = MembershipChange::Remove {
        node_id,
        force: query.force || body.force,
    };
    let changes = admin
        .raft
        .change_members(change.clone(), admin.deadline())
        .await?;
    answer(&change, &changes)
}

/// The answer to a membership call: 200 with the report, or 409 naming the refusals.
fn answer(change: &MembershipChange, changes: &[GroupChange]) -> Result<Json<Value>, ApiError> {
    let report = report(change, changes);
    match refusal(change, changes) {
        None => Ok(Json(report)),
        Some(error) => Err(error.with_details(report)),
    }
}

/// What the call did, per group and in sum (pure; see the module docs for the fields).
fn report(change: &MembershipChange, changes: &[GroupChange]) -> Value {
    let (action, force) = match change {
        MembershipChange::AddLearner { .. } => ("add_learner", None),
        MembershipChange::Promote { force, .. } => ("promote", Some(*force)),
        MembershipChange::Remove { force, .. } => ("remove", Some(*force)),
    };
    let count = |pick: fn(&MembershipOutcome) -> bool| changes.iter().filter(|c| pick(&c.outcome)).count();
    let changed = count(|o| matches!(o, MembershipOutcome::Changed { .. }));
    let refused = count(|o| matches!(o, MembershipOutcome::Refused(_)));
    let unchanged = count(|o| matches!(o, MembershipOutcome::Unchanged { .. }));
    let roles: std::collections::BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| match &c.outcome {
            MembershipOutcome::Changed { role, .. } | MembershipOutcome::Unchanged { already: role } => {
                Some(role_name(*role))
            }
            _ => None,
        })
        .collect();
    let mut out = Map::new();
    out.insert("node_id".into(), json!(change.node_id()));
    out.insert("action".into(), json!(action));
    if let Some(force) = force {
        out.insert("force".into(), json!(force));
    }
    if refused == 0 {
        let role = match (roles.len(), roles.first()) {
            (1, Some(role)) => *role,
            _ => "mixed",
        };
        out.insert("role".into(), json!(role));
        if matches!(change, MembershipChange::Remove { .. }) {
            out.insert("removed".into(), json!(role == "absent"));
        }
        if changed == 0 && unchanged == changes.len() && role != "mixed" {
            out.insert("already".into(), json!(role));
        }
    }
    out.insert("changed".into(), json!(changed));
    out.insert("unchanged".into(), json!(unchanged));
    out.insert("refused".into(), json!(refused));
    out.insert(
        "groups".into(),
        Value::Array(changes.iter().map(group_report).collect()),
    );
    Value::Object(out)
}

fn role_name(role: MemberRole) -> &'static str {
    role.name()
}

fn group_report(change: &GroupChange) -> Value {
    let mut out = Map::new();
    out.insert("group".into(), json!(change.group_id));
    match &change.outcome {
        MembershipOutcome::Changed { position, role } => {
            out.insert("outcome".into(), json!("changed"));
            out.insert("role".into(), json!(role_name(*role)));
            out.insert("log_index".into(), json!(position.index));
        }
        MembershipOutcome::Allowed => {
            out.insert("outcome".into(), json!("allowed"));
        }
        MembershipOutcome::Unchanged { already } => {
            out.insert("outcome".into(), json!("unchanged"));
            out.insert("already".into(), json!(role_name(*already)));
        }
        MembershipOutcome::Refused(refusal) => {
            out.insert("outcome".into(), json!("refused"));
            out.insert("code".into(), json!(refusal.code()));
            out.insert("reason".into(), json!(refusal.to_string()));
            // The rule's figures (lag, threshold, voters left, ...), flat beside the reason.
            if let Ok(Value::Object(tagged)) = serde_json::to_value(refusal) {
                if let Some((_, Value::Object(fields))) = tagged.into_iter().next() {
                    for (key, value) in fields {
                        out.entry(key).or_insert(value);
                    }
                }
            }
        }
    }
    Value::Object(out)
}

/// The 409 for a call that some group's leader refused (`None` if none did), naming each
/// refusal up to [`REFUSALS_IN_MESSAGE`], what changed anyway, and how to override.
fn refusal(change: &MembershipChange, changes: &[GroupChange]) -> Option<ApiError> {
    let refused: Vec<(u32, &Refusal)> = changes
        .iter()
        .filter_map(|c| match &c.outcome {
            MembershipOutcome::Refused(r) => Some((c.group_id, r)),
            _ => None,
        })
        .collect();
    let (_, first) = refused.first()?;
    let code = match first {
        Refusal::NotCaughtUp { .. } => ErrorCode::NotCaughtUp,
        Refusal::NotALearner { .. } => ErrorCode::NotALearner,
        Refusal::TooFewVoters { .. } => ErrorCode::TooFewVoters,
    };
    let changed: Vec<String> = changes
        .iter()
        .filter(|c| matches!(c.outcome, MembershipOutcome::Changed { .. }))
        .map(|c| c.group_id.to_string())
        .collect();
    let (verb, force_hint) = match change {
        MembershipChange::Promote { .. } => ("promote", "; pass \"force\": true to promote it anyway"),
        MembershipChange::Remove { .. } => ("remove", "; pass \"force\": true to remove it anyway"),
        MembershipChange::AddLearner { .. } => ("add", ""),
    };
    let mut message = format!(
        "{verb} node {}: refused by the leader of {} of {} groups",
        change.node_id(),
        refused.len(),
        changes.len()
    );
    if changed.is_empty() {
        message.push_str(", nothing changed");
    } else {
        let _ = write!(
            message,
            " (changed meanwhile in groups {}: retrying is safe)",
            changed.join(",")
        );
    }
    for (group, reason) in refused.iter().take(REFUSALS_IN_MESSAGE) {
        let _ = write!(message, "; group {group}: {reason}");
    }
    if refused.len() > REFUSALS_IN_MESSAGE {
        let _ = write!(
            message,
            "; and {} more groups (error.details)",
            refused.len() - REFUSALS_IN_MESSAGE
        );
    }
    if !matches!(first, Refusal::NotALearner { .. }) {
        message.push_str(force_hint);
    }
    Some(ApiError::new(code, message))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use dovetail_raft::LogPosition;

    use super::*;

    fn changes(outcomes: Vec<MembershipOutcome>) -> Vec<GroupChange> {
        outcomes
            .into_iter()
            .enumerate()
            .map(|(g, outcome)| GroupChange {
                group_id: g as u32,
                outcome,
            })
            .collect()
    }

    #[test]
    fn a_voter_added_as_learner_is_said_to_be_a_voter_already() {
        let change = MembershipChange::AddLearner {
            node_id: 2,
            node: Node::default(),
        };
        let all = changes(vec![
            MembershipOutcome::Unchanged {
                already: MemberRole::Voter
            };
            2
        ]);
        let v = answer(&change, &all).unwrap().0;
        assert_eq!(v["role"], "voter", "{v}");
        assert_eq!(v["already"], "voter", "{v}");
        assert_eq!(
            (v["changed"].as_u64(), v["unchanged"].as_u64()),
            (Some(0), Some(2))
        );
        assert_eq!(
            v["groups"][1],
            json!({"group": 1, "outcome": "unchanged", "already": "voter"})
        );
    }

    #[test]
    fn a_learner_added_in_some_groups_is_reported_per_group() {
        let change = MembershipChange::AddLearner {
            node_id: 4,
            node: Node::default(),
        };
        let some = changes(vec![
            MembershipOutcome::Changed {
                position: LogPosition::new(3, 57),
                role: MemberRole::Learner,
            },
            MembershipOutcome::Unchanged {
                already: MemberRole::Learner,
            },
        ]);
        let v = answer(&change, &some).unwrap().0;
        assert_eq!(v["role"], "learner", "{v}");
        assert!(v.get("already").is_none(), "{v}");
        assert_eq!(
            v["groups"][0],
            json!({"group": 0, "outcome": "changed", "role": "learner", "log_index": 57})
        );
    }

    #[test]
    fn a_refused_promotion_is_a_409_naming_group_lag_and_threshold() {
        let change = MembershipChange::Promote {
            node_id: 20,
            force: false,
        };
        let refusal = Refusal::NotCaughtUp {
            node_id: 20,
            matched: None,
            last_log_index: Some(56),
            lag_entries: 57,
            max_lag_entries: 300,
            since_acked_ms: None,
            max_ack_age_ms: 450,
        };
        let all = changes(vec![
            MembershipOutcome::Allowed,
            MembershipOutcome::Refused(refusal.clone()),
        ]);
        let e = answer(&change, &all).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotCaughtUp);
        assert_eq!(e.status().as_u16(), 409);
        assert!(
            e.message.starts_with(
                "promote node 20: refused by the leader of 1 of 2 groups, nothing changed; group 1: node 20 is not caught up"
            ),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("57 entries behind (at most 300 allowed)"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with("pass \"force\": true to promote it anyway"),
            "{}",
            e.message
        );
        let details = e.details.unwrap();
        assert_eq!(details["refused"], 1);
        assert!(details.get("role").is_none(), "{details}");
        assert_eq!(details["groups"][0]["outcome"], "allowed");
        let g1 = &details["groups"][1];
        assert_eq!(
            (g1["outcome"].as_str(), g1["code"].as_str()),
            (Some("refused"), Some("not_caught_up"))
        );
        assert_eq!(
            (
                g1["lag_entries"].as_u64(),
                g1["max_lag_entries"].as_u64(),
                g1["max_ack_age_ms"].as_u64()
            ),
            (Some(57), Some(300), Some(450))
        );
        assert_eq!(g1["reason"], refusal.to_string());
    }

    #[test]
    fn a_refused_removal_is_a_409_and_many_refusals_are_summed_up() {
        let change = MembershipChange::Remove {
            node_id: 2,
            force: false,
        };
        let refusal = Refusal::TooFewVoters {
            node_id: 2,
            voters_after: BTreeSet::from([1, 3]),
            unreachable_after: BTreeSet::new(),
            min_voters: 3,
        };
        let all = changes(vec![MembershipOutcome::Refused(refusal); 6]);
        let e = answer(&change, &all).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooFewVoters);
        assert!(
            e.message
                .contains("group 3: removing node 2 would leave voters {1,3} (fewer than 3)"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("group 4:"), "{}", e.message);
        assert!(
            e.message.contains("and 2 more groups (error.details)"),
            "{}",
            e.message
        );
        assert_eq!(e.details.unwrap()["groups"][5]["voters_after"], json!([1, 3]));
    }

    #[test]
    fn a_removal_reports_what_it_did() {
        let change = MembershipChange::Remove {
            node_id: 4,
            force: true,
        };
        let all = changes(vec![
            MembershipOutcome::Changed {
                position: LogPosition::new(2, 9),
                role: MemberRole::Absent,
            },
            MembershipOutcome::Unchanged {
                already: MemberRole::Absent,
            },
        ]);
        let v = answer(&change, &all).unwrap().0;
        assert_eq!(
            (
                v["removed"].as_bool(),
                v["force"].as_bool(),
                v["changed"].as_u64()
            ),
            (Some(true), Some(true), Some(1))
        );
    }
}
