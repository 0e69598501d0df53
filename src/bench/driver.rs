//! The driver of `dovetail bench`: set-up, the workers that send requests and time them, the
//! progress line. Everything it computes comes from the pure modules beside it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::pacing;
use super::report::{self, BenchReport, OperationStats};
use super::workload::{self, Mix, Operation, RequestSpec, Rng, Sender, Workload};

/// A request that has not answered after this long counts as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// API base URLs of the nodes to send to, comma separated (http://127.0.0.1:7001,...).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:7001")]
    pub nodes: Vec<String>,
    /// What to send: append | store | read-local | read-linearizable | mixed
    /// (50% append, 25% store, 25% read-linearizable).
    #[arg(long, value_enum, default_value_t = Workload::Append)]
    pub workload: Workload,
    /// Concurrent clients (each a user of its own, one request outstanding at a time).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Messages per append.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub batch: u64,
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Warm-up in seconds: requests are sent but not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Total requests per second, spread evenly over the clients; latency is then measured from
    /// each request's intended send time. Default: closed loop, as fast as answers come.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// The cluster's client token.
    #[arg(long, env = "DOVETAIL_CLIENT_TOKEN", hide_env_values = true)]
    pub token: String,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Everything a worker shares with the others.
struct Shared {
    client: HttpClient,
    nodes: Vec<String>,
    authorization: String,
    /// Requests answered (any outcome) and failed, warm-up included: for the progress line.
    completed: AtomicU64,
    failed: AtomicU64,
}

/// Sends one request; the status, or the kind of failure.
async fn send(shared: &Shared, node: usize, spec: &RequestSpec) -> Result<u16, &'static str> {
    let url = format!("{}{}", shared.nodes[node % shared.nodes.len()], spec.path);
    let builder = match spec.body {
        Some(_) => hyper::Request::post(url).header("content-type", "application/json"),
        None => hyper::Request::get(url),
    };
    let body = spec.body.clone().map(Bytes::from).unwrap_or_default();
    let request = builder
        .header("authorization", &shared.authorization)
        .body(Full::new(body))
        .map_err(|_| "invalid_request")?;
    let exchange = async {
        let response = shared.client.request(request).await.map_err(|_| "transport")?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|_| "transport")?;
        Ok(status)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or(Err("timeout"))
}

/// The set-up of one worker: its INBOX, and messages to STORE on and read.
async fn set_up(shared: &Shared, sender: Sender, messages: bool) -> anyhow::Result<()> {
    let user = sender.user();
    let node = sender.worker as usize;
    let status = send(shared, node, &sender.create_inbox())
        .await
        .map_err(|e| anyhow::anyhow!("creating the INBOX of {user}: {e}"))?;
    anyhow::ensure!(
        status == 201 || status == 409,
        "creating the INBOX of {user}: HTTP {status}"
    );
    if messages {
        let status = send(shared, node, &sender.append(0, workload::SETUP_MESSAGES))
            .await
            .map_err(|e| anyhow::anyhow!("appending set-up messages for {user}: {e}"))?;
        anyhow::ensure!(
            status == 200,
            "appending set-up messages for {user}: HTTP {status}"
        );
    }
    Ok(())
}

/// The clock of a run: every instant is an offset from `start`.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    warmup: Duration,
    end: Duration,
}

/// One worker's measurement loop; its per-operation stats and its unsent intended requests.
async fn work(
    shared: Arc<Shared>,
    sender: Sender,
    mix: Mix,
    pacing: pacing::Pacing,
    clock: Clock,
    batch: u64,
) -> ([OperationStats; 4], u64) {
    let mut stats: [OperationStats; 4] = Default::default();
    let mut rng = Rng(((sender.run_id as u64) << 32) | sender.worker as u64);
    let mut k = 0u64;
    loop {
        let now = clock.start.elapsed();
        let intended = pacing.intended(k);
        if now >= clock.end || intended.is_some_and(|t| t >= clock.end) {
            break;
        }
        if let Some(t) = intended.filter(|&t| t > now) {
            tokio::time::sleep_until((clock.start + t).into()).await;
        }
        k += 1;
        let operation = mix.pick(rng.next_u64());
        let spec = sender.request(operation, k, batch);
        let sent = clock.start.elapsed();
        let result = send(&shared, sender.worker as usize + k as usize, &spec).await;
        let completed = clock.start.elapsed();
        shared.completed.fetch_add(1, Ordering::Relaxed);
        let ok = matches!(result, Ok(200..=299));
        if !ok {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        // Counted by the actual send time: an overloaded paced run, whose sends all lag their
        // intended times, is still measured (with the latencies its backlog causes).
        if sent < clock.warmup {
            continue;
        }
        let s = &mut stats[operation.index()];
        match result {
            Ok(200..=299) => {
                let messages = if operation == Operation::Append { batch } else { 0 };
                s.record_ok(pacing::charged_latency(intended, sent, completed), messages);
            }
            Ok(status) => s.record_error(&format!("http_{status}")),
            Err(kind) => s.record_error(kind),
        }
    }
    let unsent = pacing.due_before(clock.end).saturating_sub(k);
    (stats, unsent)
}

/// Prints the progress line on stderr twice a second until `done` is set, then ends the line.
async fn show_progress(shared: Arc<Shared>, clock: Clock, done: Arc<AtomicBool>) {
    let mut last = (Duration::ZERO, 0u64);
    let mut stderr = std::io::stderr();
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let elapsed = clock.start.elapsed();
        let completed = shared.completed.load(Ordering::Relaxed);
        let dt = (elapsed - last.0).as_secs_f64().max(1e-3);
        let rate = (completed - last.1) as f64 / dt;
        last = (elapsed, completed);
        let line = report::progress_line(
            elapsed,
            clock.end,
            clock.warmup,
            completed,
            rate,
            shared.failed.load(Ordering::Relaxed),
        );
        // `\r` and "erase line": the line is rewritten in place.
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
    }
    let _ = writeln!(stderr);
}

pub async fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(!config.nodes.is_empty(), "--nodes: at least one URL");
    anyhow::ensure!(config.concurrency > 0, "--concurrency: at least 1");
    anyhow::ensure!(config.duration > 0, "--duration: at least 1 second");
    if let Some(rate) = config.rate {
        anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate: a positive number");
    }
    let run_id = {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        u32::from_le_bytes(b)
    };
    let shared = Arc::new(Shared {
        client: Client::builder(TokioExecutor::new()).build_http(),
        nodes: config
            .nodes
            .iter()
            .map(|n| n.trim_end_matches('/').to_string())
            .collect(),
        authorization: format!("Bearer {}", config.token),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let mix = Mix::of(config.workload);
    let senders: Vec<Sender> = (0..config.concurrency)
        .map(|w| Sender {
            run_id,
            worker: w as u32,
        })
        .collect();

    // Set-up, all workers at once, before the clock starts.
    let mut setups = tokio::task::JoinSet::new();
    for &sender in &senders {
        let shared = shared.clone();
        let messages = mix.needs_messages();
        setups.spawn(async move { set_up(&shared, sender, messages).await });
    }
    while let Some(result) = setups.join_next().await {
        result??;
    }

    let clock = Clock {
        start: Instant::now(),
        warmup: Duration::from_secs(config.warmup),
        end: Duration::from_secs(config.warmup + config.duration),
    };
    let done = Arc::new(AtomicBool::new(false));
    let progress = (!config.no_progress && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(show_progress(shared.clone(), clock, done.clone())));
    let workers: Vec<_> = senders
        .iter()
        .map(|&sender| {
            let pacing = pacing::Pacing::new(config.rate, config.concurrency, sender.worker as usize);
            tokio::spawn(work(
                shared.clone(),
                sender,
                mix.clone(),
                pacing,
                clock,
                config.batch,
            ))
        })
        .collect();
    let mut stats: [OperationStats; 4] = Default::default();
    let mut unsent = 0;
    for worker in workers {
        let (worker_stats, worker_unsent) = worker.await?;
        for (total, s) in stats.iter_mut().zip(&worker_stats) {
            total.merge(s);
        }
        unsent += worker_unsent;
    }
    done.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        progress.await?;
    }

    let base = BenchReport {
        workload: config.workload,
        user_prefix: Sender::user_prefix(run_id),
        mix: Default::default(),
        nodes: shared.nodes.len(),
        concurrency: config.concurrency,
        batch: config.batch,
        rate: config.rate,
        warmup_seconds: config.warmup,
        seconds: config.duration as f64,
        ops: 0,
        ops_per_second: 0.0,
        errors: 0,
        unsent: 0,
        operations: Default::default(),
        errors_by_kind: Default::default(),
    };
    Ok(report::build_report(base, mix.weights(), &stats, unsent))
}
