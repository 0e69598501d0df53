//! `dovetail ctl`: the operator's command line over the admin API.
//!
//! Every command talks to one node (`--node URL`, any member) with the admin token
//! (`--token` or `DOVETAIL_ADMIN_TOKEN`). Output is an aligned table, or the API's JSON with
//! `--json`. Exit codes: 0 success; 1 the request failed (the node refused or did not answer;
//! the error is printed on stderr); 3 `verify` found a divergence or could not check everything.

use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use serde_json::{json, Value};

use crate::backup::take::{take_backup, Source};
use crate::backup::BackupError;
use crate::node::bodies::BodiesStatus;
use crate::node::overview::ClusterOverview;
use crate::node::peer_api::{error_chain, http_client, ClientTlsError};
use crate::node::verify::VerifyReport;

/// Exit code: `verify` found a divergence or an unchecked replica.
pub const EXIT_DIVERGENCE: i32 = 3;
/// Exit code: the request failed.
pub const EXIT_FAILED: i32 = 1;

/// Why a ctl command failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("the admin token is required: --token or DOVETAIL_ADMIN_TOKEN")]
    NoToken,
    #[error("--node https://...: --ca-cert is required (the CA that signed the node's certificate)")]
    HttpsWithoutCaCert,
    #[error(transparent)]
    CaCert(#[from] ClientTlsError),
    /// The request could not be sent or its answer not read.
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    /// The node answered with an error: its status and its JSON error's code and message.
    #[error("{method} {url}: HTTP {status}: {code}: {message}")]
    Refused {
        method: String,
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// `backup` failed: nothing usable was written.
    #[error("backup: {0}")]
    Backup(#[from] BackupError),
    /// A 2xx answer that is not what the command expects.
    #[error("not a {expected}: {error}")]
    UnexpectedAnswer {
        expected: &'static str,
        error: serde_json::Error,
    },
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Any member's API URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:7001",
        env = "DOVETAIL_NODE"
    )]
    pub node: String,
    /// The admin token.
    #[arg(
        long,
        global = true,
        env = "DOVETAIL_ADMIN_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub token: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM CA certificate(s) to trust for an `https://` --node.
    #[arg(long, global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, global = true, default_value_t = 60)]
    pub timeout_s: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Nodes: reachability, version, uptime, disk use, groups led.
    Status,
    /// Groups: leader, term, commit and snapshot index, each replica's applied index and lag.
    Groups,
    /// Voters and learners of every group.
    Members,
    /// Add a node as a learner of every group.
    AddNode {
        #[arg(long)]
        id: u64,
        /// Its peer (Raft) address.
        #[arg(long)]
        peer_addr: String,
        /// Its API address.
        #[arg(long)]
        api_addr: String,
    },
    /// Promote a learner to voter in every group (refused unless it is caught up everywhere).
    Promote {
        #[arg(long)]
        id: u64,
        /// Promote even a learner that lags or does not answer (it may stall the groups).
        #[arg(long)]
        force: bool,
    },
    /// Remove a node from every group (a voter only if three voters that survive a failure
    /// remain).
    RemoveNode {
        #[arg(long)]
        id: u64,
        /// Remove even a voter whose removal leaves the groups unable to survive a failure.
        #[arg(long)]
        force: bool,
    },
    /// Hand a group's leadership to a voter.
    TransferLeader {
        #[arg(long)]
        group: u32,
        #[arg(long)]
        to: u64,
    },
    /// Build a snapshot now on the node addressed (one group, or all).
    Snapshot {
        #[arg(long)]
        group: Option<u32>,
    },
    /// Spread group leaders evenly over the voters.
    Rebalance,
    /// Compare every replica's per-mailbox digests and check that every node holds every body
    /// its index references; exit 3 on any divergence.
    Verify {
        /// Only these groups (repeatable); default all.
        #[arg(long)]
        group: Vec<u32>,
        /// Also hash every referenced body on every node (reads them all; default: presence).
        #[arg(long)]
        hash_bodies: bool,
    },
    /// Copy every group, each at a linearizable cut, into a new directory (restore it into a
    /// new cluster with `dovetail restore`). Writes go on meanwhile.
    Backup {
        /// The directory to write: must not exist, or be empty.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Replace one replica's copy of one mailbox by a healthy replica's copy; with --bodies,
    /// fetch every referenced body the replica lacks.
    Repair {
        #[arg(long, required_unless_present = "bodies")]
        group: Option<u32>,
        /// The mailbox GUID (32 hex digits), as verify reports it.
        #[arg(long, required_unless_present = "bodies")]
        mailbox: Option<String>,
        /// The node whose copy is replaced.
        #[arg(long)]
        replica: u64,
        /// The node to copy from (default: the group's leader, or another voter).
        #[arg(long, conflicts_with = "bodies")]
        source: Option<u64>,
        /// Repair the replica's bodies instead of a mailbox.
        #[arg(long, conflicts_with_all = ["group", "mailbox"])]
        bodies: bool,
        /// With --bodies: hash every referenced body held first, moving damaged copies aside
        /// (then fetched again).
        #[arg(long, requires = "bodies")]
        check: bool,
    },
}

/// Runs a ctl command; returns the exit code.
pub async fn run(args: CtlArgs) -> i32 {
    let mut out = String::new();
    let code = match execute(&args, &mut out).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    };
    print!("{out}");
    code
}

/// Runs a command, writing what it prints to `out`; returns the exit code.
pub async fn execute(args: &CtlArgs, out: &mut String) -> Result<i32, CtlError> {
    if args.token.is_empty() {
        return Err(CtlError::NoToken);
    }
    let api = Api::new(args)?;
    if let CtlCommand::Backup { out: dir } = &args.command {
        return backup(args, &api, dir, out).await;
    }
    let (method, path, body) = match &args.command {
        CtlCommand::Status | CtlCommand::Groups | CtlCommand::Members => {
            ("GET", "/admin/cluster".to_string(), None)
        }
        CtlCommand::AddNode {
            id,
            peer_addr,
            api_addr,
        } => (
            "POST",
            "/admin/members/learners".into(),
            Some(json!({"node_id": id, "peer_addr": peer_addr, "api_addr": api_addr})),
        ),
        CtlCommand::Promote { id, force } => (
            "POST",
            "/admin/members/voters".into(),
            Some(json!({"node_id": id, "force": force})),
        ),
        CtlCommand::RemoveNode { id, force } => (
            "DELETE",
            format!("/admin/members/{id}"),
            Some(json!({ "force": force })),
        ),
        CtlCommand::TransferLeader { group, to } => (
            "POST",
            format!("/admin/groups/{group}/transfer-leader"),
            Some(json!({"to": to})),
        ),
        CtlCommand::Snapshot { group: Some(g) } => ("POST", format!("/admin/groups/{g}/snapshot"), None),
        CtlCommand::Snapshot { group: None } => ("POST", "/admin/snapshot".into(), None),
        CtlCommand::Rebalance => ("POST", "/admin/rebalance".into(), None),
        CtlCommand::Verify { group, hash_bodies } => (
            "POST",
            "/admin/verify".into(),
            Some(if group.is_empty() {
                json!({ "hash_bodies": hash_bodies })
            } else {
                json!({ "groups": group, "hash_bodies": hash_bodies })
            }),
        ),
        CtlCommand::Backup { .. } => unreachable!("taken above"),
        CtlCommand::Repair {
            bodies: true,
            replica,
            check,
            ..
        } => (
            "POST",
            "/admin/bodies/repair".into(),
            Some(json!({"replica": replica, "check": check})),
        ),
        CtlCommand::Repair {
            group,
            mailbox,
            replica,
            source,
            ..
        } => (
            "POST",
            format!(
                "/admin/groups/{}/mailboxes/{}/repair",
                opt(*group),
                mailbox.as_deref().unwrap_or_default()
            ),
            Some(json!({"replica": replica, "source": source})),
        ),
    };
    let answer = api.call(method, &path, body).await?;
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    }
    match &args.command {
        CtlCommand::Status | CtlCommand::Groups | CtlCommand::Members => {
            let overview: ClusterOverview =
                serde_json::from_value(answer).map_err(|error| CtlError::UnexpectedAnswer {
                    expected: "cluster overview",
                    error,
                })?;
            if !args.json {
                out.push_str(&match args.command {
                    CtlCommand::Status => status_table(&overview),
                    CtlCommand::Groups => groups_table(&overview),
                    _ => members_table(&overview),
                });
            }
            let unreachable = overview.nodes.iter().any(|n| !n.reachable);
            Ok(if unreachable && matches!(args.command, CtlCommand::Status) {
                EXIT_FAILED
            } else {
                0
            })
        }
        CtlCommand::AddNode { .. } | CtlCommand::Promote { .. } | CtlCommand::RemoveNode { .. } => {
            if !args.json {
                out.push_str(&membership_table(&answer));
            }
            Ok(0)
        }
        CtlCommand::Verify { .. } => {
            let report: VerifyReport =
                serde_json::from_value(answer).map_err(|error| CtlError::UnexpectedAnswer {
                    expected: "verify report",
                    error,
                })?;
            if !args.json {
                out.push_str(&verify_table(&report));
            }
            Ok(if report.clean { 0 } else { EXIT_DIVERGENCE })
        }
        _ => {
            if !args.json {
                out.push_str(&key_values(&answer));
            }
            Ok(0)
        }
    }
}

/// `ctl backup`: each group's line on stderr as it is done, then a table (or the manifest as
/// JSON) of what was written.
async fn backup(args: &CtlArgs, api: &Api, dir: &std::path::Path, out: &mut String) -> Result<i32, CtlError> {
    let source = Source {
        base: api.base.clone(),
        token: args.token.clone(),
        ca_cert: args.ca_cert.clone(),
        timeout: api.timeout,
    };
    let started = std::time::Instant::now();
    let manifest = take_backup(&source, dir, |copy| {
        eprintln!(
            "group {}: cut {} (read index {}), {} mailboxes",
            copy.group, copy.cut, copy.read_index, copy.mailboxes
        );
    })
    .await?;
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&manifest).unwrap_or_default()
        );
        return Ok(0);
    }
    let size = |path: &str| {
        manifest
            .files
            .iter()
            .find(|f| f.path == path)
            .map_or(0, |f| f.bytes)
    };
    let rows: Vec<Vec<String>> = manifest
        .groups
        .iter()
        .map(|g| {
            vec![
                g.group.to_string(),
                g.cut.to_string(),
                g.read_index.to_string(),
                g.users.to_string(),
                g.mailboxes.to_string(),
                bytes(size(&g.file)),
            ]
        })
        .collect();
    out.push_str(&table(
        &["GROUP", "CUT", "READ INDEX", "USERS", "MAILBOXES", "SIZE"],
        &rows,
    ));
    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    let _ = writeln!(
        out,
        "backup of {} groups and {} message bodies ({}) from node {} in {:.2?}: {}",
        manifest.group_count,
        manifest.body_files().len(),
        bytes(total),
        manifest.cluster.served_by,
        started.elapsed(),
        dir.display()
    );
    Ok(0)
}

/// A table with columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The groups' active log encoding: one number when they agree, the range while a gate is moving.
fn active_encoding(o: &ClusterOverview) -> String {
    let encodings: std::collections::BTreeSet<u8> = o.groups.iter().filter_map(|g| g.encoding).collect();
    match (encodings.first(), encodings.last()) {
        (Some(low), Some(high)) if low == high => low.to_string(),
        (Some(low), Some(high)) => format!("{low}-{high} (groups differ)"),
        _ => "unknown".into(),
    }
}

fn status_table(o: &ClusterOverview) -> String {
    let rows: Vec<Vec<String>> = o
        .nodes
        .iter()
        .map(|n| {
            let led = o.groups.iter().filter(|g| g.leader == Some(n.node_id)).count();
            vec![
                n.node_id.to_string(),
                n.api_addr.clone(),
                if n.reachable {
                    "up".into()
                } else {
                    "UNREACHABLE".into()
                },
                opt(n.version.clone()),
                opt(n.max_encoding),
                opt(n.uptime_s.map(|s| format!("{s}s"))),
                opt(n.disk.as_ref().map(|d| bytes(d.log_bytes))),
                opt(n.disk.as_ref().map(|d| bytes(d.index_bytes))),
                opt(n
                    .bodies
                    .as_ref()
                    .map(|b| format!("{} ({})", b.stored, bytes(b.stored_bytes)))),
                opt(n.bodies.as_ref().map(body_debts)),
                led.to_string(),
                n.error
                    .clone()
                    .or_else(|| {
                        n.removed
                            .then(|| "REMOVED from every group: serves nothing".to_string())
                    })
                    .or_else(|| {
                        n.storage_alarm
                            .as_ref()
                            .map(|alarm| format!("STORAGE ALARM: {alarm}"))
                    })
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let leaderless = o.groups.iter().filter(|g| g.leader.is_none()).count();
    let mut out = table(
        &[
            "NODE",
            "API",
            "STATE",
            "VERSION",
            "ENCODING",
            "UPTIME",
            "LOG",
            "INDEX",
            "BODIES",
            "MISSING/OWED",
            "LEADS",
            "ERROR",
        ],
        &rows,
    );
    let _ = writeln!(
        out,
        "{} nodes, {} groups, {} without a leader, active log encoding {}",
        o.nodes.len(),
        o.groups.len(),
        leaderless,
        active_encoding(o)
    );
    out.push_str(&mail_table(o));
    out
}

/// One line per reachable node: its IMAP and LMTP sessions open, IMAP commands answered
/// OK/NO/BAD, failed logins, and LMTP recipients delivered/deferred (451, 452)/refused (5xx).
fn mail_table(o: &ClusterOverview) -> String {
    let rows: Vec<Vec<String>> = o
        .nodes
        .iter()
        .filter_map(|n| {
            let m = n.mail.as_ref()?;
            Some(vec![
                n.node_id.to_string(),
                format!("{}+{}", m.imap_sessions_open, m.imaps_sessions_open),
                format!(
                    "{}/{}/{}",
                    m.imap_commands_ok, m.imap_commands_no, m.imap_commands_bad
                ),
                m.imap_login_failures.to_string(),
                m.lmtp_sessions_open.to_string(),
                format!("{}/{}/{}", m.lmtp_delivered, m.lmtp_deferred, m.lmtp_refused),
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    table(
        &[
            "NODE",
            "IMAP+IMAPS",
            "COMMANDS OK/NO/BAD",
            "LOGIN FAILURES",
            "LMTP",
            "DELIVERED/DEFERRED/REFUSED",
        ],
        &rows,
    )
}

/// A node's body debts: referenced bodies it lacks (as of its last sweep), then the ids it owes
/// its peers (memory and disk tiers), with `+resync` while a peer is marked for a full resync.
fn body_debts(b: &BodiesStatus) -> String {
    let owed: u64 = b.backlogs.iter().map(|p| p.queued as u64 + p.spilled).sum();
    let resync = if b.backlogs.iter().any(|p| p.resync) {
        "+resync"
    } else {
        ""
    };
    format!("{}/{owed}{resync}", b.missing)
}

fn groups_table(o: &ClusterOverview) -> String {
    let nodes: Vec<u64> = o.nodes.iter().map(|n| n.node_id).collect();
    let mut headers = vec!["GROUP", "LEADER", "TERM", "COMMITTED", "SNAPSHOT"];
    let labels: Vec<String> = nodes.iter().map(|n| format!("N{n} APPLIED/LAG")).collect();
    headers.extend(labels.iter().map(String::as_str));
    headers.push("ERROR");
    let rows: Vec<Vec<String>> = o
        .groups
        .iter()
        .map(|g| {
            let mut row = vec![
                g.group.to_string(),
                opt(g.leader),
                g.term.to_string(),
                opt(g.committed),
                opt(g.snapshot),
            ];
            for n in &nodes {
                row.push(match g.replicas.get(n) {
                    None => "-".into(),
                    Some(r) => format!("{}/{}", opt(r.applied), opt(r.lag)),
                });
            }
            row.push(g.last_error.clone().unwrap_or_default());
            row
        })
        .collect();
    table(&headers, &rows)
}

fn members_table(o: &ClusterOverview) -> String {
    let rows: Vec<Vec<String>> = o
        .nodes
        .iter()
        .map(|n| {
            let voter = o.groups.iter().filter(|g| g.voters.contains(&n.node_id)).count();
            let learner = o
                .groups
                .iter()
                .filter(|g| g.learners.contains(&n.node_id))
                .count();
            vec![
                n.node_id.to_string(),
                n.api_addr.clone(),
                voter.to_string(),
                learner.to_string(),
            ]
        })
        .collect();
    table(&["NODE", "API", "VOTER IN", "LEARNER IN"], &rows)
}

/// What a membership call did: one row per group, then a summary line.
fn membership_table(answer: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let rows: Vec<Vec<String>> = answer["groups"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|g| {
            let outcome = text(&g["outcome"]);
            let detail = match outcome.as_str() {
                "changed" => format!("now {} (log index {})", text(&g["role"]), text(&g["log_index"])),
                "unchanged" => format!("already {}", text(&g["already"])),
                _ => g["reason"].as_str().unwrap_or_default().to_string(),
            };
            vec![text(&g["group"]), outcome, detail]
        })
        .collect();
    let mut out = table(&["GROUP", "OUTCOME", "DETAIL"], &rows);
    let _ = write!(
        out,
        "{} node {}: {} groups changed, {} unchanged",
        text(&answer["action"]),
        text(&answer["node_id"]),
        text(&answer["changed"]),
        text(&answer["unchanged"]),
    );
    if let Some(already) = answer["already"].as_str() {
        let _ = write!(out, " (already {already} everywhere)");
    } else if let Some(role) = answer["role"].as_str() {
        let _ = write!(out, "; now {role}");
    }
    out.push('\n');
    out
}

fn verify_table(r: &VerifyReport) -> String {
    let mut out = String::new();
    if !r.divergences.is_empty() {
        let rows: Vec<Vec<String>> = r
            .divergences
            .iter()
            .map(|d| {
                vec![
                    d.group.to_string(),
                    d.mailbox_guid.clone().unwrap_or_else(|| "(manifest)".into()),
                    format!("{}/{}", d.user, d.mailbox),
                    d.suspects
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    d.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["GROUP", "MAILBOX", "NAME", "SUSPECTS", "REASON"], &rows));
    }
    if !r.bodies.is_empty() {
        let rows: Vec<Vec<String>> = r
            .bodies
            .iter()
            .map(|b| {
                vec![
                    b.node_id.to_string(),
                    b.group.to_string(),
                    b.body_id.clone(),
                    format!("{:?}", b.problem).to_lowercase(),
                    b.good_copies
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        out.push_str(&table(
            &["NODE", "GROUP", "BODY", "PROBLEM", "GOOD COPIES"],
            &rows,
        ));
        let nodes: std::collections::BTreeSet<u64> = r.bodies.iter().map(|b| b.node_id).collect();
        for node in nodes {
            let _ = writeln!(
                out,
                "repair: dovetail ctl repair --bodies --replica {node}{}",
                if r.bodies_hashed { " --check" } else { "" }
            );
        }
    }
    for u in &r.unverified {
        let _ = writeln!(
            out,
            "unverified: group {} mailbox {} kept changing ({:?})",
            u.group, u.mailbox_guid, u.positions
        );
    }
    for u in &r.unreachable {
        let _ = writeln!(out, "unreachable: {u}");
    }
    let _ = writeln!(
        out,
        "{}: {} groups, {} mailboxes checked, {} divergent, {} bodies checked{}, {} missing or damaged, {} unverified, {} unreachable replicas",
        if r.clean { "clean" } else { "NOT CLEAN" },
        r.groups_checked,
        r.mailboxes_checked,
        r.divergences.len(),
        r.bodies_checked,
        if r.bodies_hashed { " (hashed)" } else { "" },
        r.bodies.len(),
        r.unverified.len(),
        r.unreachable.len()
    );
    out
}

/// A flat JSON object as `key: value` lines (nested values as JSON).
fn key_values(v: &Value) -> String {
    let mut out = String::new();
    match v.as_object() {
        Some(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                let _ = writeln!(out, "{k:<width$}  {v}");
            }
        }
        None => {
            let _ = writeln!(out, "{v}");
        }
    }
    out
}

struct Api {
    client:
        Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>,
    base: String,
    authorization: String,
    timeout: Duration,
}

impl Api {
    fn new(args: &CtlArgs) -> Result<Api, CtlError> {
        let base = args.node.trim_end_matches('/');
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        if base.starts_with("https://") && args.ca_cert.is_none() {
            return Err(CtlError::HttpsWithoutCaCert);
        }
        Ok(Api {
            client: http_client(args.ca_cert.as_deref())?,
            base,
            authorization: format!("Bearer {}", args.token),
            timeout: Duration::from_secs(args.timeout_s),
        })
    }

    /// Sends a request; a 2xx JSON answer is returned, anything else is an error naming the
    /// API's error code and message.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CtlError> {
        let url = format!("{}{path}", self.base);
        let failed = |reason: String| CtlError::Request {
            url: url.clone(),
            reason,
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", &self.authorization)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(|e| failed(e.to_string()))?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| failed(error_chain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(CtlError::Refused {
                    method: method.to_string(),
                    url: url.clone(),
                    status: status.as_u16(),
                    code: value["error"]["code"].as_str().unwrap_or("?").to_string(),
                    message: value["error"]["message"].as_str().unwrap_or("").to_string(),
                });
            }
            Ok(value)
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .unwrap_or_else(|_| {
                Err(CtlError::Timeout {
                    url: url.clone(),
                    timeout: self.timeout,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::overview::NodeReport;
    use crate::node::status::MailFrontStatus;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONGER"],
            &[vec!["wide cell".into(), "x".into()], vec!["y".into(), "z".into()]],
        );
        assert_eq!(t, "A          LONGER\nwide cell  x\ny          z\n");
    }

    #[test]
    fn membership_answers_read_per_group() {
        let answer = json!({
            "node_id": 3, "action": "add_learner", "role": "voter", "already": "voter",
            "changed": 0, "unchanged": 2, "refused": 0,
            "groups": [
                {"group": 0, "outcome": "unchanged", "already": "voter"},
                {"group": 1, "outcome": "changed", "role": "learner", "log_index": 57},
            ],
        });
        assert_eq!(
            membership_table(&answer),
            "GROUP  OUTCOME    DETAIL\n\
             0      unchanged  already voter\n\
             1      changed    now learner (log index 57)\n\
             add_learner node 3: 0 groups changed, 2 unchanged (already voter everywhere)\n"
        );
    }

    #[test]
    fn mail_counts_one_line_per_node() {
        let mail = MailFrontStatus {
            imap_sessions_open: 2,
            imaps_sessions_open: 1,
            imap_commands_ok: 40,
            imap_commands_no: 3,
            imap_commands_bad: 1,
            imap_login_failures: 2,
            lmtp_sessions_open: 0,
            lmtp_delivered: 7,
            lmtp_deferred: 2,
            lmtp_refused: 1,
        };
        let node = |node_id: u64, mail: Option<MailFrontStatus>| NodeReport {
            node_id,
            api_addr: format!("n{node_id}:1"),
            reachable: mail.is_some(),
            error: None,
            version: None,
            uptime_s: None,
            disk: None,
            max_encoding: None,
            storage_alarm: None,
            removed: false,
            bodies: None,
            mail,
        };
        let o = ClusterOverview {
            nodes: vec![node(1, Some(mail)), node(2, None)],
            groups: vec![],
        };
        assert_eq!(
            mail_table(&o),
            "NODE  IMAP+IMAPS  COMMANDS OK/NO/BAD  LOGIN FAILURES  LMTP  DELIVERED/DEFERRED/REFUSED\n\
             1     2+1         40/3/1              2               0     7/2/1\n"
        );
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
