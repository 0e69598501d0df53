//! `run`: a cluster member — the raft node with one `MailGroup` per group, and the HTTP API
//! (`api`: the client routes behind the client token, the admin routes and `/metrics` behind the
//! admin token, the dashboard page) — on listeners the caller bound, until `shutdown` resolves.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dovetail_raft::{Node, RaftNode, RaftNodeConfig};
use tokio::net::TcpListener;

use super::api_server::{serve_api, Deadlines};
use super::bodies::NodeBodies;
use super::body_backlog::Backlogs;
use super::body_transfer::BodyTransfer;
use super::config::ServeConfig;
use super::listener::{tls_acceptor, ApiListener, ConnectionBudget};
use super::mail_group::MailGroup;
use super::peer_api::PeerApi;
use super::replicated::ReplicatedNode;
use super::status::NodeInfo;
use crate::api;
use crate::api::admin::AdminState;
use crate::api::auth::{require_bearer, BearerToken};
use crate::api::in_flight::{limit_in_flight, InFlightLimit};
use crate::bodies::BodyStore;
use crate::state_machine::GroupStateMachine;

/// The directory of group `group` under a node's data directory.
pub fn group_dir(config: &ServeConfig, group: u32) -> std::path::PathBuf {
    group_dir_in(&config.data_dir, group)
}

/// The directory of group `group` under the node data directory `data_dir`.
pub fn group_dir_in(data_dir: &std::path::Path, group: u32) -> std::path::PathBuf {
    data_dir.join("groups").join(format!("g{group:04}"))
}

/// The whole HTTP surface of a node: the client routes behind the client token (with the test
/// op's route on a node started with `--test-next-encoding`), every admin route, /metrics
/// included, behind the admin token, and the dashboard page, which holds no data and is public.
/// What the API listener serves, and what the API fuzz targets drive.
pub fn http_app(
    node: Arc<ReplicatedNode>,
    admin: AdminState,
    client_token: BearerToken,
    admin_token: BearerToken,
    test_next_encoding: bool,
    in_flight: InFlightLimit,
) -> axum::Router {
    let client = if test_next_encoding {
        api::client::router(node.clone()).merge(api::client::test_next_encoding_router(node))
    } else {
        api::client::router(node)
    };
    // Inside the client token check: a refusal as busy still needs the token.
    let client = limit_in_flight(client, in_flight);
    require_bearer(client, client_token)
        .merge(require_bearer(api::admin::router(admin), admin_token))
        .merge(api::dashboard::router())
        .layer(axum::middleware::from_fn(super::metrics::track_requests))
}

/// Runs a node until `shutdown` resolves, then drains: stops accepting requests, lets requests
/// in flight finish, flushes every group and syncs the log.
pub async fn run(
    config: ServeConfig,
    peer_listener: TcpListener,
    api_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    config.validate()?;
    // Bound first: a taken address fails the start before anything else.
    let lmtp_listener = match config.lmtp_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--lmtp-listen {addr}: {e}"))?,
        ),
        None => None,
    };
    let bind = |addr: Option<std::net::SocketAddr>, flag: &'static str| async move {
        match addr {
            Some(addr) => TcpListener::bind(addr)
                .await
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{flag} {addr}: {e}")),
            None => Ok(None),
        }
    };
    let imap_listener = bind(config.imap_listen, "--imap-listen").await?;
    let imaps_listener = bind(config.imaps_listen, "--imaps-listen").await?;
    // Before the raft node starts: a series handle taken before the recorder exists records
    // nowhere.
    let metrics_handle = super::metrics::install();
    let raft_config = RaftNodeConfig {
        heartbeat_interval_ms: config.heartbeat_ms,
        election_timeout_ms_min: config.election_timeout_ms,
        election_timeout_ms_max: config.election_timeout_ms * 2,
        snapshot_logs_since_last: Some(config.snapshot_interval),
        max_in_snapshot_log_to_keep: config.log_retention,
        max_queued_proposals: config.max_queued_writes as usize,
        peer_tls: config.peer_tls(),
        log_reserve_bytes: config.log_reserve_bytes,
        ..RaftNodeConfig::new(
            config.node_id,
            config.data_dir.clone(),
            config.groups,
            config.cluster_secret.as_bytes().to_vec(),
        )
    };
    let dirs: Vec<_> = (0..config.groups).map(|g| group_dir(&config, g)).collect();
    let max_encoding = config.max_encoding();
    let raft = RaftNode::start(raft_config, peer_listener, move |group| {
        let machine = GroupStateMachine::open(&dirs[group as usize]).map_err(std::io::Error::other)?;
        let mail_group = MailGroup::new(machine, max_encoding);
        if !mail_group.legacy_names().is_empty() {
            // Once per group and start. Such names came before log encoding 2; the API now
            // normalizes names to NFC, so one not in NFC is no longer reachable by its name.
            tracing::warn!(
                group,
                names = %mail_group.legacy_names().join("; "),
                "names stored before log encoding 2 are not in Unicode NFC or hold invisible \
                 characters; they stay as they are (renaming them would change replicated state), \
                 and new writes cannot name them"
            );
        }
        Ok(mail_group)
    })
    .await?;
    if config.bootstrap {
        let mut members = BTreeMap::new();
        members.insert(
            config.node_id,
            Node {
                peer_addr: config.peer_advertise(),
                api_addr: config.api_advertise(),
            },
        );
        for peer in &config.peers {
            members.insert(
                peer.node_id,
                Node {
                    peer_addr: peer.peer_addr.clone(),
                    api_addr: peer.api_addr.clone(),
                },
            );
        }
        raft.initialize(members).await?;
    }
    let client_token = BearerToken::new("client", &config.client_token);
    let admin_token = BearerToken::new("admin", &config.admin_token);
    let info = Arc::new(NodeInfo::new(
        config.node_id,
        config.api_advertise(),
        config.peer_advertise(),
        config.max_encoding(),
        config.data_dir.clone(),
        started,
    ));
    // Nodes call each other's admin API in the scheme their own API speaks.
    let peers = match (&config.tls_cert, &config.tls_ca) {
        (None, _) => PeerApi::new(&config.admin_token),
        (Some(cert), ca) => PeerApi::https(&config.admin_token, ca.as_ref().unwrap_or(cert))?,
    };
    let roots = config
        .tls_cert
        .as_ref()
        .map(|cert| config.tls_ca.as_ref().unwrap_or(cert).as_path());
    let bodies = NodeBodies::new(
        Arc::new(BodyStore::open(config.data_dir.join("blobs"))?),
        raft.clone(),
        BodyTransfer::new(&config.admin_token, roots)?,
        BodyTransfer::new(&config.admin_token, roots)?,
        config.max_message_bytes,
        Backlogs::open(
            config.data_dir.join("body-backlog"),
            config.body_backlog_memory,
            config.body_backlog_disk,
        )?,
    );
    let backlog = tokio::spawn(bodies.clone().run_backlog());
    let sweep = tokio::spawn(super::body_sweep::run_body_sweep(
        raft.clone(),
        bodies.clone(),
        config.body_gc_grace,
    ));
    let node = Arc::new(ReplicatedNode::new(
        raft.clone(),
        bodies.clone(),
        config.request_timeout(),
    ));
    let disk = tokio::spawn(super::disk_monitor::run_disk_monitor(
        raft.clone(),
        config.data_dir.clone(),
        super::disk_monitor::DiskLimits {
            min_free_bytes: config.min_free_bytes,
            max_log_bytes: config.max_log_bytes,
        },
        info.storage.clone(),
    ));
    let gate = tokio::spawn(super::encoding_gate::run_encoding_gate(
        raft.clone(),
        info.clone(),
        peers.clone(),
        config.request_timeout(),
    ));
    // Before the API serves: a group this node was removed from is not served after a restart.
    let removed = super::membership_watch::restore(&raft, &config.data_dir)?;
    let watch = tokio::spawn(super::membership_watch::run_membership_watch(
        raft.clone(),
        peers.clone(),
        config.data_dir.clone(),
        removed,
        // The maximum election timeout: a follower of a live leader has heard from it by then.
        Duration::from_millis(config.election_timeout_ms * 2),
    ));
    let admin = AdminState {
        raft: raft.clone(),
        info,
        peers,
        timeout: config.request_timeout() * 3,
        metrics: metrics_handle.clone(),
        bodies: bodies.clone(),
    };
    // The API, LMTP and IMAP stop on `shutdown`.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&s| s).await;
    };
    // The users: loaded before anything is served (a file that does not parse stops the node
    // with the line that is wrong), re-read on SIGHUP.
    let users = match &config.passwd_file {
        Some(path) => {
            let users = Arc::new(crate::users::Users::load(path)?);
            crate::users::spawn_sighup_reload(users.clone())?;
            Some(users)
        }
        None => None,
    };
    let directory = match &users {
        Some(users) => crate::lmtp::Directory::Passwd(users.clone()),
        None => crate::lmtp::Directory::AllowAll,
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let mut imap = Vec::new();
    if imap_listener.is_some() || imaps_listener.is_some() {
        let imap_config = crate::imap::ImapConfig {
            max_connections: config.imap_max_connections as usize,
            allow_plaintext: config.imap_allow_plaintext,
            ..crate::imap::ImapConfig::new(config.max_message_bytes)
        };
        let server = crate::imap::ImapServer::new(node.clone(), users.clone(), imap_config, tls.clone());
        for (listener, kind) in [
            (imap_listener, crate::imap::ListenerKind::Plain),
            (imaps_listener, crate::imap::ListenerKind::ImplicitTls),
        ] {
            if let Some(listener) = listener {
                tracing::info!(node_id = config.node_id, imap = %listener.local_addr()?, ?kind, "serving IMAP");
                imap.push(tokio::spawn(server.clone().serve(
                    listener,
                    kind,
                    stopped(stopping.clone()),
                )));
            }
        }
    }
    let lmtp = match lmtp_listener {
        Some(listener) => {
            let spool_dir = config.data_dir.join("lmtp-spool");
            std::fs::create_dir_all(&spool_dir)?;
            let lmtp_config = crate::lmtp::LmtpConfig {
                max_connections: config.lmtp_max_connections as usize,
                ..crate::lmtp::LmtpConfig::new(config.max_message_bytes, spool_dir)
            };
            tracing::info!(node_id = config.node_id, lmtp = %listener.local_addr()?, "serving LMTP");
            Some(tokio::spawn(crate::lmtp::serve(
                listener,
                node.clone(),
                Arc::new(directory),
                lmtp_config,
                stopped(stopping.clone()),
            )))
        }
        None => None,
    };
    let app = http_app(
        node,
        admin,
        client_token,
        admin_token,
        config.test_next_encoding,
        InFlightLimit::new(config.max_in_flight as usize),
    );
    let api_listener = ApiListener::new(
        api_listener,
        ConnectionBudget {
            max_authenticated: config.max_connections as usize,
            max_pending: config.max_pending_connections as usize,
        },
    )?;
    let api_addr = api_listener.local_addr();
    let rebalancer = (config.rebalance_interval_ms > 0).then(|| {
        tokio::spawn(super::rebalance::run_rebalancer(
            raft.clone(),
            Duration::from_millis(config.rebalance_interval_ms),
            Duration::from_millis(config.election_timeout_ms),
        ))
    });
    let gauges = super::metrics::spawn_gauge_task(raft.clone(), bodies.clone(), metrics_handle);
    tracing::info!(
        node_id = config.node_id,
        api = %api_addr,
        tls = tls.is_some(),
        max_connections = config.max_connections,
        max_pending_connections = config.max_pending_connections,
        peer = %raft.peer_addr(),
        groups = config.groups,
        "serving"
    );
    serve_api(api_listener, tls, app, Deadlines::default(), stopped(stopping)).await;
    if let Some(lmtp) = lmtp {
        lmtp.abort();
    }
    for imap in imap {
        imap.abort();
    }
    if let Some(rebalancer) = rebalancer {
        rebalancer.abort();
    }
    gauges.abort();
    gate.abort();
    backlog.abort();
    sweep.abort();
    watch.abort();
    disk.abort();
    tracing::info!(node_id = config.node_id, "draining: flushing groups and the log");
    raft.shutdown().await?;
    Ok(())
}
