//! The one place that knows how to start a node of a local cluster: [`ClusterLayout`] holds every
//! node's addresses and data directory, the group count and the extra `serve` flags, and gives
//! node i's `dovetail serve` command line; [`Secrets`] are the cluster secret and the tokens every
//! node gets in its environment.
//!
//! Used by `dovetail dev` (and through it by the bench scripts in `scripts/`) and by the
//! multi-node tests' fixture (`tests/support`). The clusters of `scripts/netns-cluster.sh` (one
//! network namespace per node, for the fault-injection scripts and the Jepsen runner) are built by
//! that script: their nodes are started and restarted one by one, inside their namespaces, from
//! saved command lines.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One node's listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    pub id: u64,
    /// `HOST:PORT` of the client and admin API.
    pub api: String,
    /// `HOST:PORT` of the peer listener.
    pub peer: String,
}

/// How a node is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// On an empty data directory: node 1 then bootstraps the cluster.
    Fresh,
    /// On the data it has (after a kill or a stop): nobody bootstraps again.
    Restart,
}

/// A local cluster: its nodes, where their data goes, and the flags they all run with.
#[derive(Debug, Clone)]
pub struct ClusterLayout {
    /// Node `i`'s directory is `<data_dir>/node<i>` (its `serve --data-dir`, and its log).
    pub data_dir: PathBuf,
    pub groups: u32,
    /// Every node, in id order from 1.
    /// Invariant: `nodes[i].id == i + 1`.
    pub nodes: Vec<NodeAddrs>,
    /// Nodes `1..=members` are the cluster node 1 bootstraps; the others start outside it, in
    /// no group, until `POST /admin/members/learners` adds them.
    /// Invariant: `1 <= members <= nodes.len()`.
    pub members: usize,
    /// Extra `serve` flags for every node, after the ones computed here.
    pub serve_flags: Vec<String>,
}

impl ClusterLayout {
    /// `dovetail dev`'s layout: every node on 127.0.0.1, node i's API on `base_port + i` and its
    /// peer listener on `base_port + 100 + i`; `spares` more nodes after the `members`.
    pub fn on_loopback(
        members: u64,
        spares: u64,
        base_port: u16,
        data_dir: &Path,
        groups: u32,
        serve_flags: Vec<String>,
    ) -> ClusterLayout {
        let port = |offset: u64| u64::from(base_port) + offset;
        ClusterLayout {
            data_dir: data_dir.to_path_buf(),
            groups,
            nodes: (1..=members + spares)
                .map(|id| NodeAddrs {
                    id,
                    api: format!("127.0.0.1:{}", port(id)),
                    peer: format!("127.0.0.1:{}", port(100 + id)),
                })
                .collect(),
            members: members as usize,
            serve_flags,
        }
    }

    pub fn node(&self, id: u64) -> &NodeAddrs {
        let node = &self.nodes[(id - 1) as usize];
        debug_assert_eq!(node.id, id, "nodes are in id order from 1");
        node
    }

    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.data_dir.join(format!("node{id}"))
    }

    /// Whether node `id` is one of the nodes the cluster is bootstrapped with.
    pub fn is_member(&self, id: u64) -> bool {
        id as usize <= self.members
    }

    /// The arguments of node `id`'s `dovetail serve`: identity, data directory, listeners,
    /// groups, every other initial member as `--peer` (only a bootstrapping node reads them),
    /// `--bootstrap` for node 1's fresh start, then [`ClusterLayout::serve_flags`].
    pub fn serve_args(&self, id: u64, start: Start) -> Vec<OsString> {
        debug_assert!(
            1 <= self.members && self.members <= self.nodes.len(),
            "members {} of {} nodes",
            self.members,
            self.nodes.len()
        );
        let node = self.node(id);
        let mut args: Vec<OsString> = vec!["serve".into(), "--node-id".into(), id.to_string().into()];
        args.push("--data-dir".into());
        args.push(self.node_dir(id).into());
        for (flag, value) in [("--api-listen", &node.api), ("--peer-listen", &node.peer)] {
            args.push(flag.into());
            args.push(value.into());
        }
        args.push("--groups".into());
        args.push(self.groups.to_string().into());
        for peer in self.nodes.iter().filter(|p| p.id != id && self.is_member(p.id)) {
            args.push("--peer".into());
            args.push(format!("{}={}/{}", peer.id, peer.peer, peer.api).into());
        }
        if id == 1 && start == Start::Fresh {
            args.push("--bootstrap".into());
        }
        args.extend(self.serve_flags.iter().map(OsString::from));
        args
    }

    /// Node `id`'s process, not yet spawned: `exe` (a `dovetail` binary) with
    /// [`ClusterLayout::serve_args`] and `secrets` in its environment. Where its output goes is
    /// the caller's choice.
    pub fn command(&self, exe: &Path, id: u64, start: Start, secrets: &Secrets) -> Command {
        let mut command = Command::new(exe);
        command.args(self.serve_args(id, start));
        for (name, value) in secrets.env() {
            command.env(name, value);
        }
        command
    }
}

/// What the nodes of one cluster share: the secret peers prove to each other, and the bearer
/// tokens of the client and admin APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secrets {
    pub cluster_secret: String,
    pub client_token: String,
    pub admin_token: String,
}

impl Secrets {
    /// Fresh ones: 24 random bytes in hex each.
    pub fn random() -> anyhow::Result<Secrets> {
        Ok(Secrets {
            cluster_secret: random_hex()?,
            client_token: random_hex()?,
            admin_token: random_hex()?,
        })
    }

    /// The environment variables `dovetail serve` reads them from.
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("DOVETAIL_CLUSTER_SECRET", &self.cluster_secret),
            ("DOVETAIL_CLIENT_TOKEN", &self.client_token),
            ("DOVETAIL_ADMIN_TOKEN", &self.admin_token),
        ]
    }

    /// The same as `export NAME=value` lines, for a file a shell sources. The values are hex,
    /// so they need no quoting.
    pub fn env_file(&self) -> String {
        let [secret, client, admin] = self.env();
        [client, admin, secret]
            .iter()
            .map(|(name, value)| format!("export {name}={value}\n"))
            .collect()
    }
}

/// 24 random bytes in hex: a fresh secret.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn node_one_bootstraps_the_members_and_spares_start_outside() {
        let layout = ClusterLayout::on_loopback(3, 1, 7000, Path::new("/d"), 16, vec!["--x".into()]);
        assert_eq!(
            strings(layout.serve_args(1, Start::Fresh)).join(" "),
            "serve --node-id 1 --data-dir /d/node1 --api-listen 127.0.0.1:7001 \
             --peer-listen 127.0.0.1:7101 --groups 16 --peer 2=127.0.0.1:7102/127.0.0.1:7002 \
             --peer 3=127.0.0.1:7103/127.0.0.1:7003 --bootstrap --x"
        );
        assert!(!strings(layout.serve_args(1, Start::Restart)).contains(&"--bootstrap".into()));
        assert!(!strings(layout.serve_args(2, Start::Fresh)).contains(&"--bootstrap".into()));
        let spare = strings(layout.serve_args(4, Start::Fresh)).join(" ");
        assert!(spare.contains("--api-listen 127.0.0.1:7004 --peer-listen 127.0.0.1:7104"));
        assert!(spare.contains("--peer 3=") && !spare.contains("--bootstrap"));
        // Nobody is told about the spare: node 1 must not bootstrap it as a voter.
        for id in 1..=3 {
            assert!(!strings(layout.serve_args(id, Start::Fresh))
                .join(" ")
                .contains("--peer 4="));
        }
    }

    #[test]
    fn the_env_file_exports_what_the_environment_gets() {
        let secrets = Secrets::random().unwrap();
        let file = secrets.env_file();
        for (name, value) in secrets.env() {
            assert!(file.contains(&format!("export {name}={value}\n")), "{file}");
        }
        assert_ne!(secrets.client_token, secrets.admin_token);
    }
}
