//! `dovetail-jepsen`: run a Jepsen-style test against a Dovetail cluster in network namespaces,
//! re-check a stored run, or run the short CI suite. Needs root (namespaces, iptables).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use dovetail_jepsen::rng::clock_seed;
use dovetail_jepsen::run::nemesis::NemesisKind;
use dovetail_jepsen::run::workload::WorkloadKind;
use dovetail_jepsen::run::{run, RunConfig};

#[derive(Parser)]
#[command(name = "dovetail-jepsen", about = "Jepsen-style partition tests for Dovetail")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One run: a workload under a nemesis; the last line is the verdict, the exit code follows it.
    Run(RunArgs),
    /// Re-runs every checker on a stored run directory (history, final reads, logs).
    Check {
        /// A run directory (or a `latest` link).
        dir: PathBuf,
    },
    /// The short suite CI runs: uid and set under partitions and kills, flags under pauses, one
    /// membership run, bodies under kills (3 nodes). With --soak, longer runs of every workload
    /// under every nemesis.
    Suite {
        #[command(flatten)]
        common: CommonArgs,
        /// Seconds per run (default 30, or 300 with --soak).
        #[arg(long)]
        time_limit: Option<u64>,
        /// Every workload under every nemesis, 5 nodes, longer runs.
        #[arg(long)]
        soak: bool,
    },
    /// The TCP proxy between peers that `netns-cluster.sh up --proxy` starts in every node's
    /// namespace (see `dovetail_jepsen::proxy`); steered through its control port.
    #[command(hide = true)]
    Proxy {
        /// The control port.
        #[arg(long, default_value = "127.0.0.1:8100")]
        control: std::net::SocketAddr,
        /// `LISTEN=TARGET`, e.g. `127.0.0.1:8102=10.77.0.12:7101`; repeat for each peer.
        #[arg(long = "route", value_parser = parse_route)]
        routes: Vec<dovetail_jepsen::proxy::Route>,
    },
}

fn parse_route(text: &str) -> Result<dovetail_jepsen::proxy::Route, String> {
    let (listen, target) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not LISTEN=TARGET"))?;
    Ok(dovetail_jepsen::proxy::Route {
        listen: listen
            .parse()
            .map_err(|e| format!("'{listen}' is not an address: {e}"))?,
        target: target.to_string(),
    })
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    #[arg(long, default_value_t = 4)]
    groups: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    concurrency: u32,
    /// Operations per second, all clients together (default 30; bodies 6).
    #[arg(long)]
    rate: Option<f64>,
    /// Seed of the operation and fault schedule (default: from the clock; printed). A suite's
    /// runs take seed, seed + 1, ...
    #[arg(long, env = "DOVETAIL_SEED")]
    seed: Option<u64>,
    /// Seconds of each fault.
    #[arg(long, default_value_t = 5)]
    fault_s: u64,
    /// Seconds of calm between faults.
    #[arg(long, default_value_t = 4)]
    heal_s: u64,
    /// A client gives up on an operation after this long (it becomes `info`).
    #[arg(long, default_value_t = 5000)]
    op_timeout_ms: u64,
    /// Where reports go.
    #[arg(long, default_value = "jepsen/store")]
    store: PathBuf,
    /// The dovetail binary (default: the newer of target/release/dovetail and target/debug/dovetail).
    #[arg(long, env = "DOVETAIL_BIN")]
    bin: Option<PathBuf>,
    /// The fault-injection scripts.
    #[arg(long, default_value = "scripts")]
    scripts: PathBuf,
    /// State directory of the namespaced cluster.
    #[arg(long, env = "DOVETAIL_NETNS_DIR", default_value = "/tmp/dovetail-netns")]
    netns_dir: PathBuf,
    /// Leave the cluster up after the run (then `scripts/netns-cluster.sh down`).
    #[arg(long)]
    keep_cluster: bool,
    /// Route peer traffic through the TCP proxies even when the nemesis does not need them
    /// (latency, drop and combined always do).
    #[arg(long)]
    proxy: bool,
    /// Set and list workloads: move to fresh mailboxes every this many operations (0: never),
    /// so reads and checks stay small on long runs.
    #[arg(long, default_value_t = 500)]
    rotate_ops: u64,
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    workload: WorkloadKind,
    #[arg(long, value_enum, default_value = "partition")]
    nemesis: NemesisKind,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    #[command(flatten)]
    common: CommonArgs,
}

fn config(
    common: &CommonArgs,
    workload: WorkloadKind,
    nemesis: NemesisKind,
    time_limit: u64,
    seed: u64,
) -> RunConfig {
    // Default: the newer of the release and debug builds (a stale one would test old code).
    let bin = common.bin.clone().unwrap_or_else(|| {
        let modified = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let (release, debug) = ("target/release/dovetail", "target/debug/dovetail");
        match (modified(release), modified(debug)) {
            (Some(r), Some(d)) if r >= d => PathBuf::from(release),
            (Some(_), None) => PathBuf::from(release),
            _ => PathBuf::from(debug),
        }
    });
    RunConfig {
        workload,
        nemesis,
        nodes: common.nodes,
        groups: common.groups,
        time_limit_s: time_limit,
        concurrency: common.concurrency,
        rate: common.rate.unwrap_or(workload.default_rate()),
        seed,
        fault_s: common.fault_s,
        heal_s: common.heal_s,
        op_timeout_ms: common.op_timeout_ms,
        store: common.store.clone(),
        bin: std::fs::canonicalize(&bin).unwrap_or(bin),
        scripts: common.scripts.clone(),
        netns_dir: common.netns_dir.clone(),
        // The proxies are this very program.
        proxy_bin: (common.proxy || nemesis.needs_proxy()).then(|| {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("target/debug/dovetail-jepsen"))
        }),
        rotate_ops: common.rotate_ops,
        serve_flags: vec![
            "--request-timeout-ms".into(),
            "3000".into(),
            "--heartbeat-ms".into(),
            "100".into(),
            "--election-timeout-ms".into(),
            "500".into(),
        ],
        keep_cluster: common.keep_cluster,
    }
}

async fn main_async(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(args) => {
            let seed = args.common.seed.unwrap_or_else(clock_seed);
            let config = config(&args.common, args.workload, args.nemesis, args.time_limit, seed);
            match run(config).await {
                Ok(outcome) => i32::from(!outcome.valid),
                Err(e) => {
                    eprintln!("error: {e}");
                    println!("{}", dovetail_jepsen::report::INVALID);
                    2
                }
            }
        }
        Command::Proxy { control, routes } => match dovetail_jepsen::proxy::run(control, routes).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("proxy: {e}");
                1
            }
        },
        Command::Check { dir } => match dovetail_jepsen::check::check_dir(&dir) {
            Ok(report) => i32::from(!report.valid),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Suite {
            common,
            time_limit,
            soak,
        } => {
            let seed = common.seed.unwrap_or_else(clock_seed);
            let runs: Vec<(WorkloadKind, NemesisKind)> = if soak {
                let workloads = [
                    WorkloadKind::Uid,
                    WorkloadKind::Set,
                    WorkloadKind::Flags,
                    WorkloadKind::List,
                    WorkloadKind::Bodies,
                ];
                let nemeses = [
                    NemesisKind::Partition,
                    NemesisKind::Kill,
                    NemesisKind::Pause,
                    NemesisKind::Membership,
                    NemesisKind::Latency,
                    NemesisKind::Drop,
                    NemesisKind::Combined,
                ];
                workloads
                    .iter()
                    .flat_map(|w| nemeses.iter().map(move |n| (*w, *n)))
                    .collect()
            } else {
                vec![
                    (WorkloadKind::Uid, NemesisKind::Partition),
                    (WorkloadKind::Set, NemesisKind::Kill),
                    (WorkloadKind::Flags, NemesisKind::Pause),
                    (WorkloadKind::List, NemesisKind::Membership),
                    (WorkloadKind::Bodies, NemesisKind::Kill),
                ]
            };
            let time_limit = time_limit.unwrap_or(if soak { 300 } else { 30 });
            let mut failed = Vec::new();
            for (i, (workload, nemesis)) in runs.iter().enumerate() {
                let config = config(
                    &common,
                    *workload,
                    *nemesis,
                    time_limit,
                    seed.wrapping_add(i as u64),
                );
                let label = format!("{} under {:?}", workload.name(), nemesis);
                match run(config).await {
                    Ok(outcome) if outcome.valid => {}
                    Ok(outcome) => failed.push(format!("{label}: {}", outcome.dir.display())),
                    Err(e) => failed.push(format!("{label}: {e}")),
                }
            }
            println!("suite: {} runs, {} invalid", runs.len(), failed.len());
            for f in &failed {
                println!("  invalid: {f}");
            }
            println!(
                "{}",
                if failed.is_empty() {
                    dovetail_jepsen::report::GOOD
                } else {
                    dovetail_jepsen::report::INVALID
                }
            );
            i32::from(!failed.is_empty())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = runtime.block_on(main_async(cli));
    std::process::exit(code);
}
