//! `Cluster`: the nodes under test, driven only through the fault-injection scripts in
//! `scripts/` (so the runner exercises them too) and the nodes' HTTP API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::RunError;
use super::http::{Api, RequestError};

/// One node's API address (the layout of `scripts/netns-lib.sh`).
pub fn api_addr(node: u32) -> String {
    format!("10.77.0.{}:7001", 10 + node)
}

/// The peer address the nodes know `node` by (as `scripts/netns-lib.sh` `dvt_peer_addr`): its
/// route through the local proxy when the cluster runs the peer proxies, else its listener.
pub fn peer_addr(node: u32, proxy: bool) -> String {
    if proxy {
        format!("127.0.0.1:{}", crate::proxy::PORT_BASE as u32 + node)
    } else {
        format!("10.77.0.{}:7101", 10 + node)
    }
}

/// A node's name in histories and reports.
pub fn node_name(node: u32) -> String {
    format!("n{node}")
}

/// A cluster brought up by `scripts/netns-cluster.sh`.
pub struct Cluster {
    pub nodes: u32,
    pub groups: u32,
    /// Peer traffic passes through a TCP proxy per namespace (`up --proxy`, `proxy.sh`).
    pub proxy: bool,
    scripts: PathBuf,
    /// `$DOVETAIL_NETNS_DIR`: node data, logs, the env file.
    pub state_dir: PathBuf,
    pub client_token: String,
    pub admin_token: String,
}

impl Cluster {
    /// Starts a fresh cluster (tearing down any earlier one first); with `proxy_bin`, with a
    /// peer proxy (that `dovetail-jepsen` binary) in every namespace.
    pub fn up(
        scripts: &Path,
        state_dir: &Path,
        bin: &Path,
        proxy_bin: Option<&Path>,
        nodes: u32,
        groups: u32,
        serve_flags: &[String],
    ) -> Result<Cluster, RunError> {
        let cluster = Cluster {
            nodes,
            groups,
            proxy: proxy_bin.is_some(),
            scripts: scripts.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            client_token: String::new(),
            admin_token: String::new(),
        };
        cluster.script("netns-cluster.sh", &["down"])?;
        let mut args: Vec<String> = vec![
            "up".into(),
            nodes.to_string(),
            "--groups".into(),
            groups.to_string(),
            "--bin".into(),
            bin.display().to_string(),
        ];
        if let Some(proxy_bin) = proxy_bin {
            args.extend([
                "--proxy".into(),
                "--proxy-bin".into(),
                proxy_bin.display().to_string(),
            ]);
        }
        args.push("--".into());
        args.extend(serve_flags.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.script("netns-cluster.sh", &args)?;
        let env_path = state_dir.join("env");
        let env = std::fs::read_to_string(&env_path).map_err(|source| RunError::File {
            path: env_path.clone(),
            source,
        })?;
        let token = |name: &'static str| {
            env.lines()
                .filter_map(|l| l.trim().strip_prefix("export "))
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
                .ok_or_else(|| RunError::MissingToken {
                    name,
                    path: env_path.clone(),
                })
        };
        Ok(Cluster {
            client_token: token("DOVETAIL_CLIENT_TOKEN")?,
            admin_token: token("DOVETAIL_ADMIN_TOKEN")?,
            ..cluster
        })
    }

    /// Runs `scripts/<name> args...` with this cluster's state directory.
    pub fn script(&self, name: &str, args: &[&str]) -> Result<(), RunError> {
        run_script(&self.scripts, &self.state_dir, name, args)
    }

    /// [`Cluster::script`] off the runtime's threads.
    pub async fn run_script(&self, name: &'static str, args: Vec<String>) -> Result<(), RunError> {
        let (scripts, state_dir) = (self.scripts.clone(), self.state_dir.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_script(&scripts, &state_dir, name, &args)
        })
        .await
        .map_err(|source| RunError::Task { task: name, source })?
    }

    pub fn down(&self) -> Result<(), RunError> {
        self.script("netns-cluster.sh", &["down"])
    }

    /// The peer address the nodes know `node` by.
    pub fn peer_addr(&self, node: u32) -> String {
        peer_addr(node, self.proxy)
    }

    pub fn log_path(&self, node: u32) -> PathBuf {
        self.state_dir.join(format!("node{node}")).join("node.log")
    }

    /// Every group's leader as `node`'s `/admin/status` reports it.
    pub async fn leaders(&self, api: &Api, node: u32) -> Result<BTreeMap<u32, Option<u32>>, RunError> {
        let addr = api_addr(node);
        let status = api
            .admin_get(&addr, "/admin/status", Duration::from_secs(2))
            .await?;
        Ok(status["groups"]
            .as_array()
            .ok_or(RunError::NoGroups { addr })?
            .iter()
            .map(|g| {
                (
                    g["group"].as_u64().unwrap_or(0) as u32,
                    g["leader"].as_u64().map(|l| l as u32),
                )
            })
            .collect())
    }

    /// Waits until every node answers, every group has one leader all agree on, and every node
    /// has applied what its group's leader has committed. Returns the last view on failure.
    pub async fn wait_converged(&self, api: &Api, limit: Duration) -> Result<(), RunError> {
        let deadline = Instant::now() + limit;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match self.converged(api).await {
                Ok(()) => return Ok(()),
                Err(unsettled) => last = unsettled.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(RunError::NotConverged { limit, last })
    }

    /// `Err`: the first thing found that is not settled yet.
    async fn converged(&self, api: &Api) -> Result<(), Unsettled> {
        let mut views: Vec<Value> = Vec::new();
        for node in 1..=self.nodes {
            views.push(
                api.admin_get(&api_addr(node), "/admin/status", Duration::from_secs(2))
                    .await?,
            );
        }
        for group in 0..self.groups as usize {
            let leaders: Vec<&Value> = views.iter().map(|v| &v["groups"][group]["leader"]).collect();
            if leaders[0].is_null() || leaders.iter().any(|l| *l != leaders[0]) {
                return Err(Unsettled::Leaders {
                    group,
                    leaders: leaders.into_iter().cloned().collect(),
                });
            }
            let leader = leaders[0].as_u64().unwrap_or(0) as usize;
            let committed = &views[leader - 1]["groups"][group]["committed"];
            for (i, v) in views.iter().enumerate() {
                let g = &v["groups"][group];
                let is_member = g["voters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(g["learners"].as_array().into_iter().flatten())
                    .any(|m| m.as_u64() == Some(i as u64 + 1));
                if is_member && g["applied"] != *committed {
                    return Err(Unsettled::Behind {
                        group,
                        node: i + 1,
                        applied: g["applied"].clone(),
                        committed: committed.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// What keeps a cluster from having converged.
#[derive(Debug, thiserror::Error)]
enum Unsettled {
    /// A node does not answer `/admin/status`.
    #[error(transparent)]
    Unreachable(#[from] RequestError),
    /// A group without a leader, or whose nodes name different ones.
    #[error("group {group}: leaders {leaders:?}")]
    Leaders { group: usize, leaders: Vec<Value> },
    /// A member has not applied its leader's commit index yet.
    #[error("group {group}: node {node} applied {applied} of {committed}")]
    Behind {
        group: usize,
        node: usize,
        applied: Value,
        committed: Value,
    },
}

/// Runs `<scripts>/<name> args...` with `DOVETAIL_NETNS_DIR=<state_dir>`; the error carries the
/// script's output.
fn run_script(scripts: &Path, state_dir: &Path, name: &str, args: &[&str]) -> Result<(), RunError> {
    let out = std::process::Command::new("bash")
        .arg(scripts.join(name))
        .args(args)
        .env("DOVETAIL_NETNS_DIR", state_dir)
        .output()
        .map_err(|source| RunError::ScriptStart {
            script: name.to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunError::ScriptFailed {
            script: name.to_string(),
            args: args.join(" "),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}
