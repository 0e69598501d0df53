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
use tokio::sync::Semaphore;

use super::pacing;
use super::report::{self, BenchReport, OperationStats};
use super::workload::{self, MessagePool, Mix, Operation, RequestSpec, Rng, Sender, Workload};

/// A request that has not answered after this long counts as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// API base URLs of the nodes to send to, comma separated (http://127.0.0.1:7001,...).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:7001")]
    pub nodes: Vec<String>,
    /// What to send: append | store | read-local | read-linearizable | mixed
    /// (50% append, 25% store, 25% read-linearizable) | deliver (one message of --size bytes
    /// with its body) | fsync-floor (no cluster: files of --size bytes written and fsync'd one
    /// after another in --dir).
    #[arg(long, value_enum, default_value_t = Workload::Append)]
    pub workload: Workload,
    /// deliver and fsync-floor: bytes per message or file (4096, 4k, 100k, 1m; default 4k).
    #[arg(long, value_parser = workload::parse_size)]
    pub size: Option<u64>,
    /// fsync-floor: the directory to write in (on the filesystem of the nodes' data).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
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
    /// Total requests per second, spread evenly over the clients, each sent at its intended time
    /// whether or not earlier ones were answered (open loop); latency is measured from that
    /// time. Default: closed loop, as fast as answers come.
    #[arg(long)]
    pub rate: Option<f64>,
    /// With --rate: most requests outstanding at once over all clients (each one connection). A
    /// send due while all are taken waits for one, and is charged from its intended time.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_in_flight: u64,
    /// Write the GUID of every message of every acknowledged (2xx) append to this file, one
    /// `USER GUID` line each (set-up and warm-up included): what the cluster must hold.
    /// Appends only (a delivery's GUID is the node's).
    #[arg(long)]
    pub acked_out: Option<std::path::PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// The cluster's client token (every workload but fsync-floor).
    #[arg(
        long,
        env = "DOVETAIL_CLIENT_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub token: String,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Everything a worker shares with the others.
struct Shared {
    client: HttpClient,
    nodes: Vec<String>,
    authorization: String,
    /// Deliveries: the bodies.
    pool: Option<MessagePool>,
    /// Requests answered (any outcome) and failed, warm-up included: for the progress line.
    completed: AtomicU64,
    failed: AtomicU64,
}

/// Sends one request; the status, or the kind of failure.
async fn send(shared: &Shared, node: usize, spec: &RequestSpec) -> Result<u16, &'static str> {
    let url = format!("{}{}", shared.nodes[node % shared.nodes.len()], spec.path);
    let (builder, body) = match (&spec.body, &spec.message) {
        (Some(json), _) => (
            hyper::Request::post(url).header("content-type", "application/json"),
            Bytes::from(json.clone()),
        ),
        (None, Some(message)) => (
            hyper::Request::post(url).header("content-type", workload::MESSAGE_CONTENT_TYPE),
            message.clone(),
        ),
        (None, None) => (hyper::Request::get(url), Bytes::new()),
    };
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

/// How often a set-up request refused as busy (429) is sent again, one second apart (the
/// `Retry-After` of the refusal): a refused request was not taken, so sending it again is safe.
const SETUP_ATTEMPTS: u32 = 30;

/// Sends a set-up request until it is not refused as busy; its status.
async fn set_up_request(shared: &Shared, node: usize, spec: &RequestSpec) -> Result<u16, &'static str> {
    let mut attempts = 1;
    loop {
        match send(shared, node, spec).await {
            Ok(429) if attempts < SETUP_ATTEMPTS => {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// How long a worker's set-up delivery is retried while its group has not enabled log encoding
/// 3 (409 `not_enabled`: a fresh cluster's gate opens on its own shortly after start).
const SETUP_DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// The set-up delivery of one worker (request number 0, not counted): sent until its group
/// takes deliveries.
async fn set_up_delivery(shared: &Shared, sender: Sender, node: usize) -> anyhow::Result<()> {
    let user = sender.user();
    let pool = shared.pool.as_ref().expect("a delivery workload has a pool");
    let spec = sender.deliver(0, pool);
    let deadline = Instant::now() + SETUP_DELIVERY_WAIT;
    loop {
        let status = set_up_request(shared, node, &spec)
            .await
            .map_err(|e| anyhow::anyhow!("the set-up delivery for {user}: {e}"))?;
        match status {
            200 => return Ok(()),
            // Not yet at log encoding 3 (or, briefly, a 503 while bodies find a majority).
            409 | 503 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => anyhow::bail!(
                "the set-up delivery for {user}: HTTP {status} (deliveries need log encoding 3)"
            ),
        }
    }
}

/// The set-up of one worker: its INBOX, messages to STORE on and read, or a first delivery.
async fn set_up(shared: &Shared, sender: Sender, messages: bool, delivers: bool) -> anyhow::Result<()> {
    let user = sender.user();
    let node = sender.worker as usize;
    let status = set_up_request(shared, node, &sender.create_inbox())
        .await
        .map_err(|e| anyhow::anyhow!("creating the INBOX of {user}: {e}"))?;
    anyhow::ensure!(
        status == 201 || status == 409,
        "creating the INBOX of {user}: HTTP {status}"
    );
    if messages {
        let status = set_up_request(shared, node, &sender.append(0, workload::SETUP_MESSAGES))
            .await
            .map_err(|e| anyhow::anyhow!("appending set-up messages for {user}: {e}"))?;
        anyhow::ensure!(
            status == 200,
            "appending set-up messages for {user}: HTTP {status}"
        );
    }
    if delivers {
        set_up_delivery(shared, sender, node).await?;
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

/// One request as it was timed, for the worker to record.
struct Exchange {
    operation: Operation,
    seq: u64,
    intended: Option<Duration>,
    sent: Duration,
    completed: Duration,
    result: Result<u16, &'static str>,
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    stats: [OperationStats; Operation::COUNT],
    /// Successful (2xx) requests by the whole second of the run they completed in, warm-up
    /// included.
    ok_per_second: Vec<u64>,
    /// Intended sends still unsent when the run ended (paced runs).
    unsent: u64,
    /// Request numbers of this worker's acknowledged appends (0: the set-up append).
    acked_appends: Vec<u64>,
}

impl WorkerResult {
    fn record(&mut self, shared: &Shared, clock: &Clock, batch: u64, e: Exchange) {
        let size = shared.pool.as_ref().map_or(0, MessagePool::size);
        shared.completed.fetch_add(1, Ordering::Relaxed);
        let ok = matches!(e.result, Ok(200..=299));
        if !ok {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        } else {
            let second = e.completed.as_secs() as usize;
            if self.ok_per_second.len() <= second {
                self.ok_per_second.resize(second + 1, 0);
            }
            self.ok_per_second[second] += 1;
        }
        if ok && e.operation == Operation::Append {
            self.acked_appends.push(e.seq);
        }
        // Counted by the actual send time: an overloaded paced run, whose sends all lag their
        // intended times, is still measured (with the latencies its backlog causes).
        if e.sent < clock.warmup {
            return;
        }
        let latency = pacing::charged_latency(e.intended, e.sent, e.completed);
        let s = &mut self.stats[e.operation.index()];
        if let Some(intended) = e.intended {
            s.record_send_lag(e.sent.saturating_sub(intended));
        }
        match e.result {
            Ok(200..=299) => {
                let (messages, bytes) = match e.operation {
                    Operation::Append => (batch, 0),
                    Operation::Deliver => (1, size),
                    _ => (0, 0),
                };
                s.record_ok(latency, e.completed.saturating_sub(e.sent), messages);
                s.record_bytes(bytes);
            }
            Ok(429) => s.record_refused(e.completed.saturating_sub(e.sent)),
            Ok(status) => s.record_error(&format!("http_{status}")),
            Err(kind) => s.record_error(kind),
        }
    }
}

/// Sends request number `seq` (an `operation`) and times it.
async fn exchange(
    shared: Arc<Shared>,
    sender: Sender,
    clock: Clock,
    operation: Operation,
    seq: u64,
    intended: Option<Duration>,
    batch: u64,
) -> Exchange {
    let spec = sender.request(operation, seq, batch, shared.pool.as_ref());
    let sent = clock.start.elapsed();
    let result = send(&shared, sender.worker as usize + seq as usize, &spec).await;
    Exchange {
        operation,
        seq,
        intended,
        sent,
        completed: clock.start.elapsed(),
        result,
    }
}

/// One worker's measurement loop. Closed loop: one request at a time. Paced: each request at
/// its intended time, whatever is still outstanding (open loop), as long as `in_flight` (shared
/// by every worker) has room; a refused or slow answer never delays the next send.
async fn work(
    shared: Arc<Shared>,
    sender: Sender,
    mix: Mix,
    pacing: pacing::Pacing,
    clock: Clock,
    batch: u64,
    in_flight: Arc<Semaphore>,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    let mut rng = Rng(((sender.run_id as u64) << 32) | sender.worker as u64);
    let mut outstanding = tokio::task::JoinSet::new();
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
        let request = exchange(shared.clone(), sender, clock, operation, k, intended, batch);
        if intended.is_none() {
            let e = request.await;
            result.record(&shared, &clock, batch, e);
            continue;
        }
        // A free slot, or the wait for one (the request is then late, and charged for it).
        let slot = in_flight.clone().acquire_owned().await.expect("never closed");
        outstanding.spawn(async move {
            let e = request.await;
            drop(slot);
            e
        });
        while let Some(done) = outstanding.try_join_next() {
            result.record(&shared, &clock, batch, done.expect("a request task panicked"));
        }
    }
    while let Some(done) = outstanding.join_next().await {
        result.record(&shared, &clock, batch, done.expect("a request task panicked"));
    }
    result.unsent = pacing.due_before(clock.end).saturating_sub(k);
    result
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

/// `--size` when not given.
const DEFAULT_SIZE_BYTES: u64 = 4096;

/// Largest `--size` (the nodes' default `--max-message-bytes` is 64 MiB).
const MAX_SIZE_BYTES: u64 = 1 << 30;

pub async fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(!config.nodes.is_empty(), "--nodes: at least one URL");
    anyhow::ensure!(config.concurrency > 0, "--concurrency: at least 1");
    anyhow::ensure!(config.duration > 0, "--duration: at least 1 second");
    if let Some(rate) = config.rate {
        anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate: a positive number");
    }
    let sized = matches!(config.workload, Workload::Deliver | Workload::FsyncFloor);
    anyhow::ensure!(
        sized || config.size.is_none(),
        "--size: only for --workload deliver and fsync-floor"
    );
    anyhow::ensure!(
        (config.workload == Workload::FsyncFloor) == config.dir.is_some(),
        "--dir: needed by --workload fsync-floor, and only by it"
    );
    let size = config.size.unwrap_or(DEFAULT_SIZE_BYTES);
    anyhow::ensure!(
        (workload::MESSAGE_BYTES_MIN..=MAX_SIZE_BYTES).contains(&size),
        "--size: from {} bytes to 1g",
        workload::MESSAGE_BYTES_MIN
    );
    anyhow::ensure!(!sized || config.acked_out.is_none(), "--acked-out: appends only");
    let run_id = {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        u32::from_le_bytes(b)
    };
    anyhow::ensure!(
        config.workload == Workload::FsyncFloor || !config.token.is_empty(),
        "the client token: --token or DOVETAIL_CLIENT_TOKEN"
    );
    let pool = sized.then(|| MessagePool::new(size, u64::from(run_id)));
    if let (Some(dir), Some(pool)) = (&config.dir, &pool) {
        let floor = super::floor::FloorRun {
            writers: config.concurrency,
            warmup_seconds: config.warmup,
            seconds: config.duration,
        };
        return super::floor::run(floor, dir, pool, run_id).await;
    }
    let shared = Arc::new(Shared {
        // Idle connections are dropped before a node closes them (`api_server::KEEP_ALIVE_TIMEOUT`).
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(crate::node::peer_api::POOL_IDLE_TIMEOUT)
            .build_http(),
        nodes: config
            .nodes
            .iter()
            .map(|n| n.trim_end_matches('/').to_string())
            .collect(),
        authorization: format!("Bearer {}", config.token),
        pool,
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
    let setup_started = Instant::now();
    let mut setups = tokio::task::JoinSet::new();
    for &sender in &senders {
        let shared = shared.clone();
        let (messages, delivers) = (mix.needs_messages(), mix.delivers());
        setups.spawn(async move { set_up(&shared, sender, messages, delivers).await });
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
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight as usize));
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
                in_flight.clone(),
            ))
        })
        .collect();
    let setup_seconds = (clock.start - setup_started).as_secs_f64();
    let mut stats: [OperationStats; Operation::COUNT] = Default::default();
    let mut unsent = 0;
    let mut ok_per_second: Vec<u64> = Vec::new();
    let mut acked = String::new();
    for (worker, &sender) in workers.into_iter().zip(&senders) {
        let result = worker.await?;
        for (total, s) in stats.iter_mut().zip(&result.stats) {
            total.merge(s);
        }
        unsent += result.unsent;
        if ok_per_second.len() < result.ok_per_second.len() {
            ok_per_second.resize(result.ok_per_second.len(), 0);
        }
        for (total, n) in ok_per_second.iter_mut().zip(&result.ok_per_second) {
            *total += n;
        }
        if config.acked_out.is_some() {
            let setup = mix.needs_messages().then_some((0, workload::SETUP_MESSAGES));
            let user = sender.user();
            for (seq, count) in setup
                .into_iter()
                .chain(result.acked_appends.iter().map(|&seq| (seq, config.batch)))
            {
                for i in 0..count {
                    acked += &format!("{user} {}\n", sender.guid(seq, i));
                }
            }
        }
    }
    if let Some(path) = &config.acked_out {
        std::fs::write(path, acked).map_err(|e| anyhow::anyhow!("--acked-out {}: {e}", path.display()))?;
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
        size_bytes: sized.then_some(size),
        rate: config.rate,
        warmup_seconds: config.warmup,
        seconds: config.duration as f64,
        ops: 0,
        ops_per_second: 0.0,
        errors: 0,
        refused: 0,
        unsent: 0,
        operations: Default::default(),
        errors_by_kind: Default::default(),
        setup_seconds,
        ok_per_second,
        notes: if mix.delivers() {
            vec![
                "each delivery is acknowledged once its body is durable on a majority of the \
                  group's voters and its index entry committed; MB/s counts each body once \
                  (MB = 10^6 bytes)"
                    .to_string(),
            ]
        } else {
            Vec::new()
        },
    };
    Ok(report::build_report(base, mix.weights(), &stats, unsent))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use axum::http::StatusCode;
    use axum::routing::post;

    use super::*;

    /// Against a server that takes 300 ms to answer each append, two in three with 429, a paced
    /// run still sends at its rate (one request at a time per client would send 7 a second per
    /// client, not 100), keeps the refusals out of the admitted latencies, and lists the GUIDs of
    /// exactly the acknowledged appends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paced_run_keeps_its_rate_while_answers_are_slow_and_refused() {
        let appends = Arc::new(AtomicU64::new(0));
        let counter = appends.clone();
        let app = axum::Router::new()
            .route(
                "/v1/users/{user}/mailboxes",
                post(|| async { StatusCode::CREATED }),
            )
            .route(
                "/v1/users/{user}/mailboxes/INBOX/messages",
                post(move || {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if n.is_multiple_of(3) {
                            StatusCode::OK
                        } else {
                            StatusCode::TOO_MANY_REQUESTS
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        let acked_out = dir.path().join("acked");
        let config = BenchConfig {
            nodes: vec![format!("http://{addr}")],
            workload: Workload::Append,
            size: None,
            dir: None,
            concurrency: 2,
            batch: 2,
            duration: 2,
            warmup: 0,
            rate: Some(200.0),
            max_in_flight: 1024,
            acked_out: Some(acked_out.clone()),
            json: true,
            no_progress: true,
            token: "t".into(),
        };
        let report = run(config).await.unwrap();
        let append = &report.operations["append"];
        let answered = append.ops + append.refused;
        assert_eq!(report.unsent, 0, "{report:?}");
        assert_eq!(append.errors, append.refused, "only refusals: {report:?}");
        assert_eq!(
            answered, 400,
            "every intended send went out and was answered: {report:?}"
        );
        assert_eq!(appends.load(Ordering::SeqCst), 400);
        assert!(append.ops > 100 && append.refused > 200, "{report:?}");
        assert!(append.latency_us.p50 >= 300_000, "{:?}", append.latency_us);
        assert!(append.refused_latency_us.p50 >= 300_000);
        assert_eq!(report.ok_per_second.iter().sum::<u64>(), append.ops);
        assert!(report.ok_per_second.len() >= 2, "{:?}", report.ok_per_second);
        assert!(
            append.send_lag_us.p99 < 1_000_000,
            "the generator kept its schedule: {:?}",
            append.send_lag_us
        );
        let acked = std::fs::read_to_string(&acked_out).unwrap();
        assert_eq!(acked.lines().count() as u64, 2 * append.ops);
        let guids: std::collections::BTreeSet<&str> =
            acked.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(guids.len() as u64, 2 * append.ops, "GUIDs are distinct");
        assert!(acked.lines().all(|l| l.starts_with(&report.user_prefix)));
    }
}
