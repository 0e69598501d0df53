//! `ServeConfig`: everything `dovetail serve` needs, from flags. Invalid values stop startup with
//! a message naming the flag ([`ConfigError`]).

use std::io;
use std::net::{AddrParseError, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// Why the flags or the config file of `dovetail serve` are refused. Every message names the
/// flag or the key; none echoes a token or the cluster secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("peer {spec:?}: expected ID=PEER_ADDR/API_ADDR, e.g. 2=127.0.0.1:7102/127.0.0.1:7002")]
    PeerSyntax { spec: String },
    #[error("peer {spec:?}: address {addr:?} is not host:port ({error})")]
    PeerAddress {
        spec: String,
        addr: String,
        error: AddrParseError,
    },
    #[error("peer {spec:?}: node ids start at 1")]
    PeerNodeIdZero { spec: String },
    #[error("{flag}: at least 16 bytes are required")]
    TooShort { flag: &'static str },
    #[error("{flag}: must not contain whitespace or control characters")]
    TokenCharacters { flag: &'static str },
    #[error("--client-token and --admin-token must differ")]
    SameTokens,
    #[error("the API tokens must differ from --cluster-secret")]
    TokenIsClusterSecret,
    /// Flags that are given all together or not at all.
    #[error("{flags} go together")]
    Incomplete { flags: &'static str },
    #[error("--tls-ca needs --tls-cert")]
    TlsCaWithoutCert,
    #[error("--imaps-listen needs --tls-cert and --tls-key")]
    ImapsWithoutCert,
    #[error(
        "--election-timeout-ms ({election_timeout_ms}) must be at least 3 x --heartbeat-ms ({heartbeat_ms})"
    )]
    ElectionTimeoutTooShort {
        election_timeout_ms: u64,
        heartbeat_ms: u64,
    },
    #[error("--peer: node id {node_id} is this node's own id")]
    PeerIsThisNode { node_id: u64 },
    #[error("--peer: a node id is listed twice")]
    PeerListedTwice,
    #[error("--config: a file path is required")]
    ConfigPathMissing,
    #[error("--config {path}: {error}")]
    ConfigUnreadable { path: String, error: io::Error },
    #[error("--config {path}: {error}")]
    ConfigFile { path: String, error: ConfigFileError },
}

/// What is wrong inside a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("not valid TOML: {0}")]
    NotToml(String),
    #[error("unknown key `{key}`")]
    UnknownKey { key: String },
    #[error("key `{key}`: expected a string or an integer")]
    ExpectedScalar { key: String },
    #[error("key `{key}`: expected true or false")]
    ExpectedBool { key: String },
    /// The flag's own parser refused the value; `detail` is its message, or only "invalid
    /// value" for a secret.
    #[error("key `{key}`: {detail}")]
    InvalidValue { key: String, detail: String },
}

/// Another member of the cluster: `ID=PEER_ADDR/API_ADDR`, e.g. `2=127.0.0.1:7102/127.0.0.1:7002`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub node_id: u64,
    pub peer_addr: String,
    pub api_addr: String,
}

impl FromStr for PeerSpec {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<PeerSpec, ConfigError> {
        let syntax = || ConfigError::PeerSyntax { spec: s.to_string() };
        let (id, addrs) = s.split_once('=').ok_or_else(syntax)?;
        let (peer_addr, api_addr) = addrs.split_once('/').ok_or_else(syntax)?;
        let node_id: u64 = id.parse().map_err(|_| syntax())?;
        for addr in [peer_addr, api_addr] {
            addr.parse::<SocketAddr>()
                .map_err(|error| ConfigError::PeerAddress {
                    spec: s.to_string(),
                    addr: addr.to_string(),
                    error,
                })?;
        }
        if node_id == 0 {
            return Err(ConfigError::PeerNodeIdZero { spec: s.to_string() });
        }
        Ok(PeerSpec {
            node_id,
            peer_addr: peer_addr.to_string(),
            api_addr: api_addr.to_string(),
        })
    }
}

/// Flags of `dovetail serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// A TOML file of flags (keys are the long flag names, `-` or `_`; `peer` is a list).
    /// Command-line flags override the file; a `--peer` on the command line replaces the file's
    /// whole `peer` list.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id: unique in the cluster and never reused (1, 2, ...).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: u64,
    /// Where this node keeps its Raft log (sled) and group directories.
    #[arg(long, default_value = "./dovetail-data/node")]
    pub data_dir: PathBuf,
    /// Address of the peer (Raft RPC) listener.
    #[arg(long, default_value = "127.0.0.1:7101")]
    pub peer_listen: SocketAddr,
    /// Address of the HTTP API listener.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub api_listen: SocketAddr,
    /// Address other nodes use to reach this node's peer listener (defaults to --peer-listen).
    #[arg(long)]
    pub peer_advertise: Option<String>,
    /// Address clients and other nodes use to reach this node's API (defaults to --api-listen).
    #[arg(long)]
    pub api_advertise: Option<String>,
    /// Another member, `ID=PEER_ADDR/API_ADDR`; repeat for each. Used with --bootstrap.
    #[arg(long = "peer")]
    pub peers: Vec<PeerSpec>,
    /// Number of groups; fixed when the cluster is created.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: u32,
    /// Initialize the cluster with this node and every --peer as voters (once, on one node).
    #[arg(long)]
    pub bootstrap: bool,
    /// The shared secret peers prove to each other. Prefer the environment variable.
    #[arg(long, env = "DOVETAIL_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: String,
    /// Bearer token the client API (`/v1/...`) requires. Prefer the environment variable.
    #[arg(long, env = "DOVETAIL_CLIENT_TOKEN", hide_env_values = true)]
    pub client_token: String,
    /// Bearer token the admin API (`/admin/...`, `/metrics`) requires; must differ from the
    /// client token. Every node of a cluster needs the same one (nodes call each other's admin
    /// API). Prefer the environment variable.
    #[arg(long, env = "DOVETAIL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Most API connections that have sent a request with a valid token open at once; a request
    /// with a token on one more is refused 429 `busy` and its connection closed
    /// (`node::listener`).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Most API connections that have not yet sent a request with a valid token; one more
    /// takes the place of the oldest that has sent nothing (or is over a second into its request
    /// head), which is closed.
    #[arg(long, default_value_t = super::listener::DEFAULT_MAX_PENDING, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending_connections: u32,
    /// PEM certificate chain: serve the API over TLS (with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM certificate of this node for mutual TLS on the peer port (with --peer-tls-key and
    /// --peer-tls-ca; every member must use TLS or none). It must name the host of this node's
    /// peer address (an IP address SAN for `10.0.0.2:7101`).
    #[arg(long)]
    pub peer_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --peer-tls-cert.
    #[arg(long)]
    pub peer_tls_key: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) that signed every member's peer certificate.
    #[arg(long)]
    pub peer_tls_ca: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) this node trusts when it calls other members' API over HTTPS
    /// (cluster overview, verify, repair); default: --tls-cert itself.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Entries applied between snapshots of a group.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_interval: u64,
    /// Entries kept in the log behind a group's snapshot: a follower missing no more than this
    /// catches up from the log, one further behind gets the snapshot.
    #[arg(long, default_value_t = 5_000)]
    pub log_retention: u64,
    /// Client API requests this node serves at once; one more is answered 429 `busy` with
    /// `Retry-After` at once, before its body is read (`api::in_flight`).
    #[arg(long, default_value_t = crate::api::in_flight::DEFAULT_MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Writes a group's leader queues while the previous entry commits (per group); a write
    /// beyond it is refused at once with 429 `busy` and `Retry-After`, never proposed.
    #[arg(long, default_value_t = dovetail_raft::node::proposals::DEFAULT_MAX_QUEUED_REQUESTS as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_queued_writes: u64,
    /// How long a write or linearizable read may wait for a leader and a quorum (then 503).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub request_timeout_ms: u64,
    /// Raft heartbeat interval.
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(10..))]
    pub heartbeat_ms: u64,
    /// Raft election timeout, lower bound (the upper bound is twice this).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(50..))]
    pub election_timeout_ms: u64,
    /// How often this node checks whether it leads too many groups and hands one to the voter
    /// leading the fewest (see `node::rebalance`); 0 turns automatic balancing off.
    #[arg(long, default_value_t = 2_000)]
    pub rebalance_interval_ms: u64,
    /// Threads of this node's async runtime; default: one per CPU (or `TOKIO_WORKER_THREADS`).
    /// Where several nodes share a machine (the etcd comparison: 3 nodes on 2 cores), fewer
    /// threads per node mean fewer cross-thread wake-ups per request.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub worker_threads: Option<u64>,
    /// Below this many free bytes on the data directory's file system the node raises its
    /// storage alarm: it refuses writes (507) and hands its leaderships over, and clears the alarm
    /// by itself once the space is back (`node::disk_monitor`).
    #[arg(long, default_value_t = 256 << 20)]
    pub min_free_bytes: u64,
    /// The Raft log's quota: above it the storage alarm is raised as for a full disk.
    #[arg(long, default_value_t = 8 << 30, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub max_log_bytes: u64,
    /// What the Raft log keeps written ahead of its segments, so that a full disk is noticed
    /// while the log still has room to finish the writes in flight.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub log_reserve_bytes: u64,
    /// Largest message a delivery may carry (`POST .../messages` with `message/rfc822`); a larger
    /// one is refused with 413 and nothing is stored.
    #[arg(long, default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_message_bytes: u64,
    /// Address of the LMTP listener (RFC 2033, for an MTA's deliveries; `lmtp` module); off
    /// when not given.
    #[arg(long)]
    pub lmtp_listen: Option<SocketAddr>,
    /// The users, in Dovecot's passwd-file format (`user:{SCHEME}hash`; `users` module), the same
    /// file on every node, re-read on SIGHUP (a file that does not parse is refused and the old
    /// table kept). Without it every valid user name is accepted at LMTP's `RCPT TO`.
    #[arg(long)]
    pub passwd_file: Option<std::path::PathBuf>,
    /// Most LMTP connections served at once; one more is answered 421 and closed.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub lmtp_max_connections: u32,
    /// Address of the IMAP listener (RFC 3501; `imap` module): plaintext, with STARTTLS when
    /// the node has --tls-cert; off when not given.
    #[arg(long)]
    pub imap_listen: Option<SocketAddr>,
    /// Address of the IMAP listener with implicit TLS (port 993's kind); needs --tls-cert.
    #[arg(long)]
    pub imaps_listen: Option<SocketAddr>,
    /// Take LOGIN and AUTHENTICATE PLAIN on --imap-listen before TLS (otherwise refused, and
    /// LOGINDISABLED advertised, until STARTTLS). For loopback and tests.
    #[arg(long)]
    pub imap_allow_plaintext: bool,
    /// Most IMAP connections served at once over both listeners; one more gets BYE.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub imap_max_connections: u32,
    /// Memory for the ids of the bodies waiting to be sent to one peer in the background
    /// (counted as 64 bytes each); past it they spill to disk (`node::body_backlog`).
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(64..))]
    pub body_backlog_memory: u64,
    /// Disk for one peer's spilled backlog (16 bytes per body id, under
    /// `<data-dir>/body-backlog/`); past it the peer is marked for a full body resync.
    #[arg(long, default_value_t = 64 << 20)]
    pub body_backlog_disk: u64,
    /// How long a stored body no record references is kept before the collector deletes it
    /// (covers deliveries in flight: a body is stored before its entry is proposed). A number of
    /// seconds, or with a unit: `500ms`, `30s`, `10m`, `1h`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub body_gc_grace: Duration,
    /// For the rolling-upgrade test only: this node applies and reports the log encoding the
    /// next release would add (`txn::encoding::TEST_NEXT_ENCODING`, with its test op), as a
    /// newer build would; without it the node is that test's older build.
    #[arg(long, hide = true)]
    pub test_next_encoding: bool,
}

impl ServeConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The highest log encoding this node applies and reports (`txn::encoding`).
    pub fn max_encoding(&self) -> u8 {
        if self.test_next_encoding {
            crate::txn::encoding::TEST_NEXT_ENCODING
        } else {
            crate::txn::encoding::CURRENT_ENCODING
        }
    }

    /// Checks relations between flags that clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_secret.len() < 16 {
            return Err(ConfigError::TooShort {
                flag: "--cluster-secret (DOVETAIL_CLUSTER_SECRET)",
            });
        }
        for (flag, token) in [
            ("--client-token (DOVETAIL_CLIENT_TOKEN)", &self.client_token),
            ("--admin-token (DOVETAIL_ADMIN_TOKEN)", &self.admin_token),
        ] {
            if token.len() < 16 {
                return Err(ConfigError::TooShort { flag });
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::TokenCharacters { flag });
            }
        }
        if self.client_token == self.admin_token {
            return Err(ConfigError::SameTokens);
        }
        if self.client_token == self.cluster_secret || self.admin_token == self.cluster_secret {
            return Err(ConfigError::TokenIsClusterSecret);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Incomplete {
                flags: "--tls-cert and --tls-key",
            });
        }
        if self.tls_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::TlsCaWithoutCert);
        }
        if self.imaps_listen.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::ImapsWithoutCert);
        }
        let peer_tls = [&self.peer_tls_cert, &self.peer_tls_key, &self.peer_tls_ca];
        if peer_tls.iter().any(|p| p.is_some()) && !peer_tls.iter().all(|p| p.is_some()) {
            return Err(ConfigError::Incomplete {
                flags: "--peer-tls-cert, --peer-tls-key and --peer-tls-ca",
            });
        }
        if self.election_timeout_ms < 3 * self.heartbeat_ms {
            return Err(ConfigError::ElectionTimeoutTooShort {
                election_timeout_ms: self.election_timeout_ms,
                heartbeat_ms: self.heartbeat_ms,
            });
        }
        if self.peers.iter().any(|p| p.node_id == self.node_id) {
            return Err(ConfigError::PeerIsThisNode {
                node_id: self.node_id,
            });
        }
        let mut ids: Vec<u64> = self.peers.iter().map(|p| p.node_id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::PeerListedTwice);
        }
        Ok(())
    }

    /// The peer TLS files, if configured (after `validate`).
    pub fn peer_tls(&self) -> Option<dovetail_raft::transport::PeerTlsFiles> {
        Some(dovetail_raft::transport::PeerTlsFiles {
            cert: self.peer_tls_cert.clone()?,
            key: self.peer_tls_key.clone()?,
            ca: self.peer_tls_ca.clone()?,
        })
    }

    pub fn peer_advertise(&self) -> String {
        self.peer_advertise
            .clone()
            .unwrap_or_else(|| self.peer_listen.to_string())
    }

    pub fn api_advertise(&self) -> String {
        self.api_advertise
            .clone()
            .unwrap_or_else(|| self.api_listen.to_string())
    }
}

/// Expands `serve --config FILE` in a full command line (`argv[0]` first): the file's flags are
/// inserted right after `serve`, before the command-line flags, except those the command line
/// also gives: the command line wins, and a command-line `--peer` replaces the file's whole
/// `peer` list (no merging). A file value beats `DOVETAIL_CLUSTER_SECRET`, as any flag does.
/// Other command lines are returned as is.
pub fn expand_config_file(args: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let Some(serve) = args.iter().skip(1).position(|a| a == "serve").map(|i| i + 1) else {
        return Ok(args);
    };
    let rest = &args[serve + 1..];
    let mut path = None;
    for (i, a) in rest.iter().enumerate() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            path = Some(rest.get(i + 1).ok_or(ConfigError::ConfigPathMissing)?.clone());
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_string());
        }
    }
    let Some(path) = path else { return Ok(args) };
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::ConfigUnreadable {
        path: path.clone(),
        error,
    })?;
    let on_cli = |long: &str| {
        rest.iter().any(|a| {
            a.strip_prefix("--")
                .is_some_and(|f| f == long || f.starts_with(&format!("{long}=")))
        })
    };
    let file_args = config_file_args(&text, on_cli).map_err(|error| ConfigError::ConfigFile {
        path: path.clone(),
        error,
    })?;
    let mut out = args[..=serve].to_vec();
    out.extend(file_args);
    out.extend_from_slice(rest);
    Ok(out)
}

/// Keys whose values never appear in an error message.
const SECRET_KEYS: [&str; 3] = ["cluster-secret", "client-token", "admin-token"];

/// The flags a config file stands for. Every key is checked on its own against the flag's
/// parser, so an error names the key (and never echoes a value of `cluster-secret`).
fn config_file_args(text: &str, on_cli: impl Fn(&str) -> bool) -> Result<Vec<String>, ConfigFileError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigFileError::NotToml(e.message().to_string()))?;
    let command = ServeConfig::augment_args(clap::Command::new("serve"));
    let mut out = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| ConfigFileError::UnknownKey { key: key.clone() })?;
        let flag = format!("--{long}");
        let takes_value = arg.get_action().takes_values();
        let scalar = |v: &toml::Value| -> Result<String, ConfigFileError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                _ => Err(ConfigFileError::ExpectedScalar { key: key.clone() }),
            }
        };
        let mut args = Vec::new();
        match (value, takes_value) {
            (toml::Value::Boolean(b), false) => {
                if *b {
                    args.push(flag.clone());
                }
            }
            (_, false) => return Err(ConfigFileError::ExpectedBool { key: key.clone() }),
            (toml::Value::Array(items), true) if long == "peer" => {
                for item in items {
                    args.extend([flag.clone(), scalar(item)?]);
                }
            }
            (v, true) => args.extend([flag.clone(), scalar(v)?]),
        }
        // Check the values with the flag's own parser (the required flags get placeholders).
        let placeholders = [
            ("node-id", "1"),
            ("cluster-secret", "0123456789abcdef"),
            ("client-token", "client-0123456789abcdef"),
            ("admin-token", "admin-0123456789abcdef"),
        ]
        .into_iter()
        .filter(|(f, _)| *f != long)
        .flat_map(|(f, v)| [format!("--{f}"), v.to_string()]);
        let probe = std::iter::once("serve".to_string())
            .chain(placeholders)
            .chain(args.iter().cloned());
        if let Err(e) = command.clone().try_get_matches_from(probe) {
            let detail = if SECRET_KEYS.contains(&long.as_str()) {
                "invalid value".to_string()
            } else {
                e.render()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("invalid value")
                    .to_string()
            };
            return Err(ConfigFileError::InvalidValue {
                key: key.clone(),
                detail,
            });
        }
        if !on_cli(&long) {
            out.extend(args);
        }
    }
    Ok(out)
}

/// A duration flag: a number of seconds, or a number with a unit (`ms`, `s`, `m`, `h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with an optional unit (ms, s, m, h)"))?;
    let per = match unit.trim() {
        "ms" => Duration::from_millis(1),
        "" | "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    per.checked_mul(u32::try_from(n).map_err(|_| format!("{text:?}: too long"))?)
        .ok_or_else(|| format!("{text:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_specs() {
        let p: PeerSpec = "2=127.0.0.1:7102/127.0.0.1:7002".parse().unwrap();
        assert_eq!(
            (p.node_id, p.peer_addr.as_str(), p.api_addr.as_str()),
            (2, "127.0.0.1:7102", "127.0.0.1:7002")
        );
        let refused = |spec: &str| spec.parse::<PeerSpec>().unwrap_err();
        assert!(matches!(refused("2"), ConfigError::PeerSyntax { .. }));
        assert!(matches!(
            refused("x=1.2.3.4:1/1.2.3.4:2"),
            ConfigError::PeerSyntax { .. }
        ));
        let e = refused("2=nohost/1.2.3.4:2");
        assert!(
            matches!(&e, ConfigError::PeerAddress { addr, .. } if addr == "nohost"),
            "{e}"
        );
        assert!(matches!(
            refused("0=1.2.3.4:1/1.2.3.4:2"),
            ConfigError::PeerNodeIdZero { .. }
        ));
    }

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(subcommand)]
        serve: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Serve(ServeConfig),
    }

    /// Writes `toml` to a file and parses `dovetail serve --config FILE <cli>`.
    fn parse_with(toml: &str, cli: &[&str]) -> Result<ServeConfig, String> {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, toml).unwrap();
        let mut args: Vec<String> = vec!["dovetail".into(), "serve".into(), "--config".into()];
        args.push(path.to_str().unwrap().into());
        args.extend(cli.iter().map(|s| s.to_string()));
        let args = expand_config_file(args).map_err(|e| e.to_string())?;
        let Sub::Serve(config) = Cmd::try_parse_from(args).map_err(|e| e.to_string())?.serve;
        Ok(config)
    }

    const FULL: &str = r#"
node-id = 1
data_dir = "/var/lib/dovetail"
peer-listen = "127.0.0.1:7101"
api-listen = "127.0.0.1:7001"
api-advertise = "10.0.0.1:7001"
peer = ["2=127.0.0.1:7102/127.0.0.1:7002", "3=127.0.0.1:7103/127.0.0.1:7003"]
groups = 8
bootstrap = true
cluster-secret = "file-secret-0123456789"
client-token = "file-client-token-0123"
admin-token = "file-admin-token-01234"
snapshot-interval = 100
log_retention = 50
request-timeout-ms = 2000
heartbeat-ms = 100
election-timeout-ms = 600
rebalance-interval-ms = 0
worker-threads = 1
"#;

    #[test]
    fn config_file_full() {
        let c = parse_with(FULL, &[]).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/dovetail"));
        assert_eq!(c.api_advertise(), "10.0.0.1:7001");
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[1].node_id, 3);
        assert_eq!((c.groups, c.bootstrap), (8, true));
        assert_eq!(c.cluster_secret, "file-secret-0123456789");
        assert_eq!((c.snapshot_interval, c.log_retention), (100, 50));
        assert_eq!(
            (c.request_timeout_ms, c.heartbeat_ms, c.election_timeout_ms),
            (2000, 100, 600)
        );
        assert_eq!(c.rebalance_interval_ms, 0);
        assert_eq!(c.worker_threads, Some(1));
        c.validate().unwrap();
    }

    #[test]
    fn config_file_command_line_overrides() {
        let c = parse_with(
            FULL,
            &[
                "--groups",
                "4",
                "--heartbeat-ms",
                "50",
                "--peer",
                "5=127.0.0.1:7105/127.0.0.1:7005",
            ],
        )
        .unwrap();
        assert_eq!((c.groups, c.heartbeat_ms, c.node_id), (4, 50, 1));
        // A command-line --peer replaces the file's list.
        assert_eq!(c.peers.iter().map(|p| p.node_id).collect::<Vec<_>>(), [5]);
        let c = parse_with(
            "node-id = 2\nbootstrap = false\n",
            &[
                "--cluster-secret",
                "cli-secret-0123456789",
                "--client-token",
                "cli-client-token-0123",
                "--admin-token",
                "cli-admin-token-01234",
            ],
        )
        .unwrap();
        assert_eq!(
            (c.node_id, c.bootstrap, c.cluster_secret.as_str()),
            (2, false, "cli-secret-0123456789")
        );
    }

    #[test]
    fn config_file_unknown_key_is_named() {
        let e = parse_with("node-id = 1\nheartbeat = 100\n", &[]).unwrap_err();
        assert!(
            e.contains("unknown key `heartbeat`") && e.contains("node.toml"),
            "{e}"
        );
    }

    #[test]
    fn config_file_bad_values_are_named() {
        for (toml, key) in [
            ("node-id = \"one\"", "node-id"),
            ("node-id = 0", "node-id"),
            ("groups = 5000", "groups"),
            ("api_listen = \"nohost\"", "api_listen"),
            ("peer = [\"2\"]", "peer"),
            ("bootstrap = 1", "bootstrap"),
            ("heartbeat-ms = true", "heartbeat-ms"),
            ("snapshot-interval = 1.5", "snapshot-interval"),
            ("worker-threads = 0", "worker-threads"),
        ] {
            let e = parse_with(toml, &[]).unwrap_err();
            assert!(
                e.contains(&format!("key `{key}`")) && e.contains("node.toml"),
                "{toml}: {e}"
            );
        }
        let e = parse_with("node-id = [", &[]).unwrap_err();
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn tokens_are_checked_and_never_echoed() {
        let e = parse_with("admin-token = [\"s3cret-in-a-list\"]", &[]).unwrap_err();
        assert!(e.contains("key `admin-token`") && !e.contains("s3cret"), "{e}");
        let mut c = parse_with(FULL, &[]).unwrap();
        c.admin_token = c.client_token.clone();
        assert!(matches!(c.validate(), Err(ConfigError::SameTokens)));
        c.admin_token = "short".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--admin-token") && !e.contains("short"), "{e}");
        c.admin_token = "has a space 0123456789".into();
        assert!(c.validate().unwrap_err().to_string().contains("whitespace"));
        c.admin_token = "file-admin-token-01234".into();
        c.tls_cert = Some("cert.pem".into());
        assert!(c.validate().unwrap_err().to_string().contains("--tls-key"));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
