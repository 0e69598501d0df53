//! The runner: a cluster in network namespaces, clients in the root namespace, a nemesis, and
//! at the end healing, final reads, analysis and a report.
//!
//! The schedule: clients (one tokio task each, `--concurrency` of them) invoke operations at
//! `--rate` in total against the nodes in turn (client `c`'s process `p` talks to node
//! `1 + p % nodes`); an operation without an answer within `--op-timeout-ms` is `info` and its
//! client continues as a new process. The nemesis waits one interval, then alternates a fault
//! for `--fault-s` seconds and a heal for `--heal-s` seconds until `--time-limit`. Then every
//! fault is healed, the runner waits until every group has one leader and every member has
//! applied its leader's commit index, reads every mailbox on every node locally (and, for the
//! bodies workload, every delivered body), asks a node to verify every replica, and runs the
//! checkers.

pub mod bodies;
pub mod control;
mod error;
pub mod http;
pub mod nemesis;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

use self::control::{api_addr, node_name, Cluster};
use self::http::{Answer, Api, Role};
use self::nemesis::{Fault, Nemesis, NemesisKind};
use self::workload::{ClientState, Workload, WorkloadKind};
use crate::history::{Event, EventType};
use crate::report::Report;
use crate::rng::Rng;
use crate::schema::FaultWindow;

pub use self::error::RunError;

/// Everything a run needs; `--seed` with the same values replays the schedule.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub workload: WorkloadKind,
    pub nemesis: NemesisKind,
    pub nodes: u32,
    pub groups: u32,
    pub time_limit_s: u64,
    pub concurrency: u32,
    /// Operations per second, all clients together.
    pub rate: f64,
    pub seed: u64,
    pub fault_s: u64,
    pub heal_s: u64,
    pub op_timeout_ms: u64,
    pub store: PathBuf,
    pub bin: PathBuf,
    pub scripts: PathBuf,
    pub netns_dir: PathBuf,
    /// Run the peer proxies (`netns-cluster.sh up --proxy`) with this `dovetail-jepsen` binary;
    /// needed by the latency, drop and combined nemeses, optional for the others.
    pub proxy_bin: Option<PathBuf>,
    /// Set and list workloads: move to fresh mailboxes after this many operations (0: never).
    pub rotate_ops: u64,
    /// Extra `dovetail serve` flags for every node.
    pub serve_flags: Vec<String>,
    /// Leave the cluster running after the run.
    pub keep_cluster: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub valid: bool,
}

/// Process numbers of the setup's operations (far above any client's).
const SETUP_PROCESS: u64 = 1 << 40;

fn since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Runs one test; the report lands in `<store>/<workload>-<nemesis>/<timestamp>/`.
pub async fn run(config: RunConfig) -> Result<RunOutcome, RunError> {
    let nemesis_name = serde_json::to_value(config.nemesis)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let test_dir = config
        .store
        .join(format!("{}-{nemesis_name}", config.workload.name()));
    let stamp = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!("{}-{:03}", now.as_secs(), now.subsec_millis())
    };
    let dir = test_dir.join(&stamp);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::File {
        path: dir.clone(),
        source,
    })?;
    println!(
        "run {}: {} workload, {nemesis_name} nemesis, {} nodes, seed {}",
        dir.display(),
        config.workload.name(),
        config.nodes,
        config.seed
    );
    let config_path = dir.join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(|source| RunError::File {
        path: config_path,
        source,
    })?;

    let cluster = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            Cluster::up(
                &config.scripts,
                &config.netns_dir,
                &config.bin,
                config.proxy_bin.as_deref(),
                config.nodes,
                config.groups,
                &config.serve_flags,
            )
        })
        .await
        .map_err(|source| RunError::Task {
            task: "starting the cluster",
            source,
        })??
    };
    let result = run_on(&config, &cluster, &dir).await;
    for node in 1..=cluster.nodes {
        let _ = std::fs::create_dir_all(dir.join("logs"));
        let _ = std::fs::copy(
            cluster.log_path(node),
            dir.join("logs").join(format!("{}.log", node_name(node))),
        );
    }
    if !config.keep_cluster {
        if let Err(e) = cluster.down() {
            eprintln!("tearing the cluster down: {e}");
        }
    }
    let valid = result?;
    let _ = std::fs::remove_file(test_dir.join("latest"));
    let _ = std::os::unix::fs::symlink(&stamp, test_dir.join("latest"));
    let _ = std::fs::remove_file(config.store.join("latest"));
    if let Some(name) = test_dir.file_name() {
        let _ = std::os::unix::fs::symlink(PathBuf::from(name).join(&stamp), config.store.join("latest"));
    }
    Ok(RunOutcome { dir, valid })
}

/// The run proper, on a cluster that is up; returns whether the analysis is valid.
async fn run_on(config: &RunConfig, cluster: &Cluster, dir: &std::path::Path) -> Result<bool, RunError> {
    let api = Api::new(&cluster.client_token, &cluster.admin_token);
    let mut rng = Rng::new(config.seed);
    let expected_ops = (config.time_limit_s as f64 * config.rate) as u64;
    let mut workload = Workload::new(
        config.workload,
        config.seed,
        config.rotate_ops,
        expected_ops,
        config.nodes,
    );
    let start = Instant::now();
    let setup = workload.setup(cluster, &api).await?;
    let workload = Arc::new(workload);
    let end = Instant::now() + Duration::from_secs(config.time_limit_s);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    // The setup's appends, as one process that completed them before any client started
    // (retries included: the acknowledged one is what counts).
    for (i, (invoke, ok)) in setup.into_iter().enumerate() {
        let event = |kind, value| Event {
            time_ns: i as u64 * 2 + u64::from(kind == EventType::Ok),
            process: SETUP_PROCESS + i as u64,
            node: "setup".into(),
            kind,
            f: "append".into(),
            value,
        };
        let _ = events_tx.send(event(EventType::Invoke, invoke));
        let _ = events_tx.send(event(EventType::Ok, ok));
    }
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = events_rx.recv().await {
            events.push(event);
        }
        events
    });

    // Clients.
    let mut clients = Vec::new();
    // Reading the clock and queueing the event happen under one lock, so the history is in
    // time order (two clients could otherwise stamp, then queue, in opposite orders).
    let stamp_lock: Arc<std::sync::Mutex<()>> = Arc::default();
    let pause = Duration::from_secs_f64(f64::from(config.concurrency) / config.rate.max(0.01));
    for client in 0..config.concurrency {
        let (workload, api, events) = (workload.clone(), api.clone(), events_tx.clone());
        let stamp_lock = stamp_lock.clone();
        let mut rng = rng.fork();
        let (nodes, concurrency) = (config.nodes, config.concurrency);
        let timeout = Duration::from_millis(config.op_timeout_ms);
        clients.push(tokio::spawn(async move {
            let mut process = u64::from(client);
            let mut state = ClientState::default();
            // Spread the clients' first operations over one pause.
            tokio::time::sleep(pause.mul_f64(rng.below(1000) as f64 / 1000.0)).await;
            while Instant::now() < end {
                let node = 1 + (process % u64::from(nodes)) as u32;
                let op = workload.next_op(&mut rng, &mut state);
                let record = |kind: EventType, value: Value| {
                    let _stamping = stamp_lock.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = events.send(Event {
                        time_ns: since(start),
                        process,
                        node: node_name(node),
                        kind,
                        f: op.f.to_string(),
                        value,
                    });
                };
                record(EventType::Invoke, op.value.clone());
                let (kind, value) = workload.execute(&api, node, &op, &mut state, timeout).await;
                record(kind, value);
                if kind == EventType::Info {
                    process += u64::from(concurrency);
                }
                let jitter = pause.mul_f64(0.5 + rng.below(1000) as f64 / 1000.0);
                tokio::time::sleep(jitter).await;
            }
        }));
    }
    drop(events_tx);

    // The nemesis.
    let windows: Arc<Mutex<Vec<FaultWindow>>> = Arc::default();
    let mut nemesis = Nemesis::new(config.nemesis, rng.fork(), config.nodes);
    let mut outstanding: Option<Fault> = None;
    tokio::time::sleep(Duration::from_secs(config.heal_s).min(end.saturating_duration_since(Instant::now())))
        .await;
    while Instant::now() + Duration::from_secs(config.fault_s) < end {
        let Some(fault) = nemesis.choose(cluster, &api).await else {
            break;
        };
        let mut window = FaultWindow {
            start_ns: since(start),
            end_ns: None,
            label: fault.label(),
            fault: serde_json::to_value(&fault).unwrap_or(Value::Null),
            error: None,
        };
        println!("{:>7.1}s  fault: {}", start.elapsed().as_secs_f64(), window.label);
        if let Err(e) = nemesis::inject(&fault, cluster, &api).await {
            eprintln!("injecting {}: {e}", window.label);
            window.error = Some(format!("inject: {e}"));
        }
        outstanding = Some(fault.clone());
        tokio::time::sleep(Duration::from_secs(config.fault_s)).await;
        if let Err(e) = nemesis::heal(&fault, cluster, &api).await {
            eprintln!("healing {}: {e}", window.label);
            window.error = Some(format!("heal: {e}"));
        } else {
            outstanding = None;
        }
        window.end_ns = Some(since(start));
        println!("{:>7.1}s  healed", start.elapsed().as_secs_f64());
        windows.lock().await.push(window);
        tokio::time::sleep(
            Duration::from_secs(config.heal_s).min(end.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    for client in clients {
        let _ = client.await;
    }
    let events = collector.await.map_err(|source| RunError::Task {
        task: "collecting the history",
        source,
    })?;
    println!(
        "{:>7.1}s  load stopped: {} operations; healing everything",
        start.elapsed().as_secs_f64(),
        events.iter().filter(|e| e.kind == EventType::Invoke).count()
    );

    // Heal everything and let the cluster recover.
    let mut recovery_errors = Vec::new();
    if let Some(fault) = &outstanding {
        if let Err(e) = nemesis::heal(fault, cluster, &api).await {
            recovery_errors.push(format!("healing {}: {e}", fault.label()));
        }
    }
    let mut scripts = vec![
        ("heal.sh", vec![]),
        ("resume.sh", vec!["all".to_string()]),
        ("restart.sh", vec!["all".to_string()]),
    ];
    if cluster.proxy {
        scripts.push(("proxy.sh", vec!["all".to_string(), "clean".to_string()]));
    }
    for (script, args) in scripts {
        if let Err(e) = cluster.run_script(script, args).await {
            recovery_errors.push(e.to_string());
        }
    }
    let recovered_at = Instant::now();
    if let Err(e) = cluster.wait_converged(&api, Duration::from_secs(90)).await {
        recovery_errors.push(e.to_string());
    }
    println!(
        "{:>7.1}s  recovered in {:.1}s{}",
        start.elapsed().as_secs_f64(),
        recovered_at.elapsed().as_secs_f64(),
        if recovery_errors.is_empty() {
            ""
        } else {
            " (with errors)"
        }
    );

    let mut finals = workload.final_reads(cluster, &api).await;
    if config.workload == WorkloadKind::Bodies {
        bodies::final_body_reads(cluster, &api, &events, &mut finals).await;
    }
    finals.verify = Some(
        match api
            .call(
                Role::Admin,
                &api_addr(1),
                "POST",
                "/admin/verify",
                Some(&json!({})),
                Duration::from_secs(120),
            )
            .await
        {
            Answer::Http(200, v) => v,
            other => json!({"clean": false, "error": format!("{other:?}")}),
        },
    );
    finals.logs = Some(
        (1..=cluster.nodes)
            .map(|n| {
                (
                    node_name(n),
                    std::fs::read_to_string(cluster.log_path(n)).unwrap_or_default(),
                )
            })
            .collect(),
    );

    let windows = windows.lock().await.clone();
    let config_json = serde_json::to_value(config).unwrap_or(Value::Null);
    let report = Report::new(config_json, events, finals, windows, recovery_errors);
    report.write(dir)?;
    Ok(report.valid)
}
