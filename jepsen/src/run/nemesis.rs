//! Nemeses: what fault to inject next, how to inject it and how to heal it. Every fault goes
//! through the scripts in `scripts/` (partitions by iptables in the receiving namespace, kill -9
//! and restart, SIGSTOP and SIGCONT, latency and dropped connections through the peer proxies
//! of `proxy.sh`) or the admin API (membership). The schedule comes from the
//! run's seed, so `--seed` replays it (the timing of the cluster's answers still varies).

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::control::{api_addr, Cluster};
use super::error::RunError;
use super::http::{Api, RequestError, Role};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisKind {
    /// No faults: the baseline.
    None,
    /// Network partitions: one node isolated, random halves, majorities ring, bridge, the
    /// leader of a group isolated.
    Partition,
    /// kill -9 of one node, a minority, a group's leader, or all nodes; restarted on heal.
    Kill,
    /// SIGSTOP of one node, a minority or a group's leader (longer than an election timeout).
    Pause,
    /// A node removed from every group, then added back as learner and promoted. The removal
    /// is forced (`?force=true`): with three nodes it leaves two voters, which the membership
    /// guards refuse otherwise, and that is the case worth testing (a group that then loses one
    /// more node stops until the heal). The promotion is not forced: it is retried until the
    /// learner has caught up, as an operator would.
    Membership,
    /// Latency on peer connections through the proxies: 20-150 ms plus up to a third of it in
    /// jitter (at most 200 ms each way), on every node, a minority or a group's leader.
    Latency,
    /// Peer connections reset, and new ones refused or blackholed for the fault's duration,
    /// through the proxies of one node, a minority, a group's leader or every node.
    Drop,
    /// Any of partition, kill, pause, latency and drop, chosen per fault.
    Combined,
}

impl NemesisKind {
    /// Whether the cluster must run with the peer proxies (`netns-cluster.sh up --proxy`).
    pub fn needs_proxy(self) -> bool {
        matches!(
            self,
            NemesisKind::Latency | NemesisKind::Drop | NemesisKind::Combined
        )
    }
}

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    Partition {
        spec: String,
        why: String,
    },
    Kill {
        nodes: Vec<u32>,
        why: String,
    },
    Pause {
        nodes: Vec<u32>,
        why: String,
    },
    Remove {
        node: u32,
    },
    /// `proxy.sh <node> latency MS:JITTER both` on each node.
    Latency {
        nodes: Vec<u32>,
        ms: u64,
        jitter_ms: u64,
        why: String,
    },
    /// `proxy.sh <node> refuse|blackhole` then `drop` on each node (`admit` is the mode).
    Drop {
        nodes: Vec<u32>,
        admit: String,
        why: String,
    },
}

impl Fault {
    pub fn label(&self) -> String {
        match self {
            Fault::Partition { spec, why } => format!("partition {spec} ({why})"),
            Fault::Kill { nodes, why } => format!("kill {nodes:?} ({why})"),
            Fault::Pause { nodes, why } => format!("pause {nodes:?} ({why})"),
            Fault::Remove { node } => format!("remove node {node}"),
            Fault::Latency {
                nodes,
                ms,
                jitter_ms,
                why,
            } => format!("latency {ms}+0..{jitter_ms} ms {nodes:?} ({why})"),
            Fault::Drop { nodes, admit, why } => format!("drop and {admit} {nodes:?} ({why})"),
        }
    }
}

pub struct Nemesis {
    pub kind: NemesisKind,
    rng: Rng,
    nodes: u32,
}

fn list(nodes: &[u32]) -> String {
    nodes.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

impl Nemesis {
    pub fn new(kind: NemesisKind, rng: Rng, nodes: u32) -> Nemesis {
        Nemesis { kind, rng, nodes }
    }

    fn shuffled(&mut self) -> Vec<u32> {
        let mut nodes: Vec<u32> = (1..=self.nodes).collect();
        for i in (1..nodes.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            nodes.swap(i, j);
        }
        nodes
    }

    /// The leader of a random group as some node sees it, or a random node.
    async fn some_leader(&mut self, cluster: &Cluster, api: &Api) -> (u32, String) {
        let group = self.rng.below(u64::from(cluster.groups)) as u32;
        for node in self.shuffled() {
            if let Ok(leaders) = cluster.leaders(api, node).await {
                if let Some(Some(leader)) = leaders.get(&group) {
                    return (*leader, format!("leader of group {group}"));
                }
            }
        }
        let node = 1 + self.rng.below(u64::from(self.nodes)) as u32;
        (node, format!("no leader known for group {group}; random node"))
    }

    /// Whose proxies a latency or drop fault uses: every node, a minority, or a group's
    /// leader (whose outgoing heartbeats and replication then suffer); one random node too when
    /// `one` (cutting one node's outgoing connections is the drop nemesis's mildest case).
    async fn proxy_targets(&mut self, cluster: &Cluster, api: &Api, one: bool) -> (Vec<u32>, String) {
        let order = self.shuffled();
        let minority = ((self.nodes - 1) / 2).max(1) as usize;
        match self.rng.below(if one { 4 } else { 3 }) {
            0 => ((1..=self.nodes).collect(), "all nodes".into()),
            1 => (order[..minority].to_vec(), "a minority".into()),
            2 => {
                let (leader, why) = self.some_leader(cluster, api).await;
                (vec![leader], why)
            }
            _ => (vec![order[0]], "one node".into()),
        }
    }

    /// Chooses the next fault.
    pub async fn choose(&mut self, cluster: &Cluster, api: &Api) -> Option<Fault> {
        let kind = match self.kind {
            NemesisKind::None => return None,
            NemesisKind::Combined => *self.rng.pick(&[
                NemesisKind::Partition,
                NemesisKind::Kill,
                NemesisKind::Pause,
                NemesisKind::Latency,
                NemesisKind::Drop,
            ]),
            kind => kind,
        };
        let n = self.nodes;
        let minority = ((n - 1) / 2).max(1) as usize;
        Some(match kind {
            NemesisKind::Partition => {
                let order = self.shuffled();
                match self.rng.below(5) {
                    0 => Fault::Partition {
                        spec: format!("isolate:{}", order[0]),
                        why: "one node".into(),
                    },
                    1 => {
                        let (small, large) = order.split_at(minority);
                        Fault::Partition {
                            spec: format!("halves:{}|{}", list(small), list(large)),
                            why: "random halves".into(),
                        }
                    }
                    2 => Fault::Partition {
                        spec: format!("ring:{}", list(&order)),
                        why: "majorities ring".into(),
                    },
                    3 => {
                        let half = (n as usize - 1) / 2;
                        let (a, rest) = order.split_at(half.max(1));
                        let (bridge, b) = rest.split_at(1);
                        Fault::Partition {
                            spec: format!("bridge:{}|{}|{}", list(a), list(bridge), list(b)),
                            why: "bridge".into(),
                        }
                    }
                    _ => {
                        let (leader, why) = self.some_leader(cluster, api).await;
                        Fault::Partition {
                            spec: format!("isolate:{leader}"),
                            why: format!("isolate the {why}"),
                        }
                    }
                }
            }
            NemesisKind::Kill => {
                let order = self.shuffled();
                match self.rng.below(4) {
                    0 => Fault::Kill {
                        nodes: vec![order[0]],
                        why: "one node".into(),
                    },
                    1 => Fault::Kill {
                        nodes: order[..minority].to_vec(),
                        why: "a minority".into(),
                    },
                    2 => {
                        let (leader, why) = self.some_leader(cluster, api).await;
                        Fault::Kill {
                            nodes: vec![leader],
                            why,
                        }
                    }
                    _ => Fault::Kill {
                        nodes: (1..=n).collect(),
                        why: "all nodes".into(),
                    },
                }
            }
            NemesisKind::Pause => {
                let order = self.shuffled();
                match self.rng.below(3) {
                    0 => Fault::Pause {
                        nodes: vec![order[0]],
                        why: "one node".into(),
                    },
                    1 => Fault::Pause {
                        nodes: order[..minority].to_vec(),
                        why: "a minority".into(),
                    },
                    _ => {
                        let (leader, why) = self.some_leader(cluster, api).await;
                        Fault::Pause {
                            nodes: vec![leader],
                            why,
                        }
                    }
                }
            }
            NemesisKind::Membership => Fault::Remove {
                node: 1 + self.rng.below(u64::from(n)) as u32,
            },
            NemesisKind::Latency => {
                let ms = 20 + self.rng.below(131);
                let jitter_ms = self.rng.below(ms / 3 + 1);
                let (nodes, why) = self.proxy_targets(cluster, api, false).await;
                Fault::Latency {
                    nodes,
                    ms,
                    jitter_ms,
                    why,
                }
            }
            NemesisKind::Drop => {
                let admit = if self.rng.chance(0.5) {
                    "refuse"
                } else {
                    "blackhole"
                };
                let (nodes, why) = self.proxy_targets(cluster, api, true).await;
                Fault::Drop {
                    nodes,
                    admit: admit.into(),
                    why,
                }
            }
            NemesisKind::None | NemesisKind::Combined => unreachable!("resolved above"),
        })
    }
}

fn node_args(nodes: &[u32]) -> Vec<String> {
    nodes.iter().map(u32::to_string).collect()
}

/// Injects `fault`.
pub async fn inject(fault: &Fault, cluster: &Cluster, api: &Api) -> Result<(), RunError> {
    match fault {
        Fault::Partition { spec, .. } => cluster.run_script("partition.sh", vec![spec.clone()]).await,
        Fault::Kill { nodes, .. } => {
            for node in node_args(nodes) {
                cluster.run_script("kill.sh", vec![node]).await?;
            }
            Ok(())
        }
        Fault::Pause { nodes, .. } => {
            for node in node_args(nodes) {
                cluster.run_script("pause.sh", vec![node]).await?;
            }
            Ok(())
        }
        Fault::Remove { node } => {
            // Forced: a voter of three (see `NemesisKind::Membership`).
            let path = format!("/admin/members/{node}?force=true");
            admin_until_ok(cluster, api, "DELETE", &path, None, Some(*node)).await
        }
        Fault::Latency {
            nodes, ms, jitter_ms, ..
        } => {
            for node in node_args(nodes) {
                let latency = format!("{ms}:{jitter_ms}");
                cluster
                    .run_script("proxy.sh", vec![node, "latency".into(), latency, "both".into()])
                    .await?;
            }
            Ok(())
        }
        Fault::Drop { nodes, admit, .. } => {
            // New connections refused first, so the reconnects after the drop meet the refusal.
            for node in node_args(nodes) {
                cluster
                    .run_script("proxy.sh", vec![node.clone(), admit.clone()])
                    .await?;
                cluster.run_script("proxy.sh", vec![node, "drop".into()]).await?;
            }
            Ok(())
        }
    }
}

/// Undoes `fault`.
pub async fn heal(fault: &Fault, cluster: &Cluster, api: &Api) -> Result<(), RunError> {
    match fault {
        Fault::Partition { .. } => cluster.run_script("heal.sh", vec![]).await,
        Fault::Kill { nodes, .. } => {
            for node in node_args(nodes) {
                cluster.run_script("restart.sh", vec![node]).await?;
            }
            Ok(())
        }
        Fault::Pause { nodes, .. } => {
            for node in node_args(nodes) {
                cluster.run_script("resume.sh", vec![node]).await?;
            }
            Ok(())
        }
        Fault::Latency { nodes, .. } | Fault::Drop { nodes, .. } => {
            for node in node_args(nodes) {
                cluster.run_script("proxy.sh", vec![node, "clean".into()]).await?;
            }
            Ok(())
        }
        Fault::Remove { node } => {
            let learner = json!({
                "node_id": node,
                "peer_addr": cluster.peer_addr(*node),
                "api_addr": api_addr(*node),
            });
            admin_until_ok(
                cluster,
                api,
                "POST",
                "/admin/members/learners",
                Some(&learner),
                Some(*node),
            )
            .await?;
            let voter = json!({ "node_id": node });
            admin_until_ok(
                cluster,
                api,
                "POST",
                "/admin/members/voters",
                Some(&voter),
                Some(*node),
            )
            .await
        }
    }
}

/// How long a membership change is retried.
const MEMBERSHIP_LIMIT: Duration = Duration::from_secs(60);

/// Sends an idempotent admin request through any node but `avoid` until one answers 2xx
/// (membership changes are idempotent; 503 means retry, and so does a 409 `not_caught_up` of a
/// promotion: the learner is still catching up).
async fn admin_until_ok(
    cluster: &Cluster,
    api: &Api,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    avoid: Option<u32>,
) -> Result<(), RunError> {
    let deadline = std::time::Instant::now() + MEMBERSHIP_LIMIT;
    let mut last = RequestError::NotSent("no node tried".into());
    let mut attempt = 0u32;
    while std::time::Instant::now() < deadline {
        attempt += 1;
        let via = 1 + (attempt % cluster.nodes);
        if Some(via) == avoid && cluster.nodes > 1 {
            continue;
        }
        let addr = api_addr(via);
        match api
            .call(Role::Admin, &addr, method, path, body, Duration::from_secs(20))
            .await
            .accepted(|status| (200..300).contains(&status), method, &addr, path)
        {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(RunError::Membership {
        method: method.to_string(),
        path: path.to_string(),
        limit: MEMBERSHIP_LIMIT,
        last: Box::new(last),
    })
}
