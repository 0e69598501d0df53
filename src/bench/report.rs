//! What a bench run measured: per-operation recorders (HdrHistogram, microseconds), the report
//! they merge into (serialized for `--json`), the aligned table, and the progress line.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::workload::{Operation, Workload};

/// Slowest latency a histogram holds (60 s); slower ones are clamped to it.
const LATENCY_US_MAX: u64 = 60_000_000;

/// The error kind of a refusal: 429 `busy` (counted among the errors, and timed on its own).
pub const REFUSED_KIND: &str = "http_429";

/// One worker's (or, merged, the run's) measurements of one operation.
#[derive(Debug, Clone)]
pub struct OperationStats {
    /// Latencies of successful (admitted: 2xx) requests, µs: from the intended send time when
    /// paced.
    pub histogram: Histogram<u64>,
    /// The same requests from their actual send: what the cluster took, without the time a
    /// paced request waited in a lagging generator.
    pub from_send: Histogram<u64>,
    /// Latencies of refusals (429 `busy`) from their actual send, µs: how quickly the cluster
    /// says no.
    pub refused: Histogram<u64>,
    /// Paced runs: how late each request was sent after its intended time, µs (the generator's
    /// own lag: a loaded client machine, or `--max-in-flight` reached).
    pub send_lag: Histogram<u64>,
    /// Successful requests.
    pub ops: u64,
    /// Messages in successful requests (appends: the batch; deliveries and fsync'd files: 1;
    /// others 0).
    pub messages: u64,
    /// Message bytes in successful requests (deliveries and fsync'd files: the size; others 0).
    pub bytes: u64,
    /// Failed requests by kind: `http_<status>`, `transport`, `timeout`.
    pub errors: BTreeMap<String, u64>,
}

impl Default for OperationStats {
    fn default() -> Self {
        let histogram = || Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds");
        OperationStats {
            histogram: histogram(),
            from_send: histogram(),
            refused: histogram(),
            send_lag: histogram(),
            ops: 0,
            messages: 0,
            bytes: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl OperationStats {
    /// A 2xx, `latency` charged (from the intended time when paced), `from_send` from the actual
    /// send.
    pub fn record_ok(&mut self, latency: Duration, from_send: Duration, messages: u64) {
        record(&mut self.histogram, latency);
        record(&mut self.from_send, from_send);
        self.ops += 1;
        self.messages += messages;
    }

    /// A 2xx that stored `bytes` of message bodies (or a file written and fsync'd).
    pub fn record_bytes(&mut self, bytes: u64) {
        self.bytes += bytes;
    }

    /// How late a paced request was sent.
    pub fn record_send_lag(&mut self, lag: Duration) {
        record(&mut self.send_lag, lag);
    }

    /// A 429 `busy`: an error of kind [`REFUSED_KIND`], whose latency (from the actual send) is
    /// kept apart.
    pub fn record_refused(&mut self, latency: Duration) {
        record(&mut self.refused, latency);
        self.record_error(REFUSED_KIND);
    }

    pub fn record_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &OperationStats) {
        self.histogram.add(&other.histogram).expect("same bounds");
        self.from_send.add(&other.from_send).expect("same bounds");
        self.refused.add(&other.refused).expect("same bounds");
        self.send_lag.add(&other.send_lag).expect("same bounds");
        self.ops += other.ops;
        self.messages += other.messages;
        self.bytes += other.bytes;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
    histogram.record(us).expect("clamped into the histogram's range");
}

/// Latency percentiles of one operation, µs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationReport {
    pub ops: u64,
    pub ops_per_second: f64,
    pub messages_per_second: f64,
    /// Message bytes stored per second, in MB (10^6 bytes): deliveries and fsync'd files.
    pub megabytes_per_second: f64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency of the successful (admitted, 2xx) requests only (paced: from the intended send).
    pub latency_us: LatencyReport,
    /// The same from the actual send (equal in a closed loop; apart in a paced run whose
    /// generator fell behind: see `send_lag_us`).
    pub latency_from_send_us: LatencyReport,
    /// Requests refused with 429 `busy` (also among `errors`, as `http_429`).
    pub refused: u64,
    /// Latency of those refusals, from their actual send.
    pub refused_latency_us: LatencyReport,
    /// Paced runs: how late requests were sent after their intended times (all 0 in a closed
    /// loop). Large values mean the generator, not the cluster, fell behind.
    pub send_lag_us: LatencyReport,
}

impl LatencyReport {
    /// The percentiles of `h` (all 0 when it is empty).
    pub fn of(h: &Histogram<u64>) -> LatencyReport {
        let empty = h.is_empty();
        let at = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        LatencyReport {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: if empty { 0 } else { h.max() },
            mean: if empty { 0.0 } else { h.mean() },
        }
    }
}

impl OperationReport {
    pub fn from_stats(stats: &OperationStats, seconds: f64) -> OperationReport {
        OperationReport {
            ops: stats.ops,
            ops_per_second: stats.ops as f64 / seconds,
            messages_per_second: stats.messages as f64 / seconds,
            megabytes_per_second: stats.bytes as f64 / 1e6 / seconds,
            errors: stats.error_count(),
            errors_by_kind: stats.errors.clone(),
            latency_us: LatencyReport::of(&stats.histogram),
            latency_from_send_us: LatencyReport::of(&stats.from_send),
            refused: stats.refused.len(),
            refused_latency_us: LatencyReport::of(&stats.refused),
            send_lag_us: LatencyReport::of(&stats.send_lag),
        }
    }
}

/// What a run measured (`--json` prints this).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub workload: Workload,
    /// Worker `w` was the user `<user_prefix><w>`.
    pub user_prefix: String,
    /// Operation name -> weight (percent).
    pub mix: BTreeMap<String, u32>,
    pub nodes: usize,
    pub concurrency: usize,
    pub batch: u64,
    /// `--size`: the bytes of each delivered message or fsync'd file (`null` for the others).
    pub size_bytes: Option<u64>,
    /// `--rate` (requests per second, all workers), or `null`: closed loop.
    pub rate: Option<f64>,
    pub warmup_seconds: u64,
    /// The measured window.
    pub seconds: f64,
    /// Successful requests of every operation.
    pub ops: u64,
    pub ops_per_second: f64,
    pub errors: u64,
    /// Requests refused with 429 `busy`, every operation (also among `errors`).
    pub refused: u64,
    /// Paced runs: intended sends still unsent when the run ended (the cluster fell behind).
    pub unsent: u64,
    pub operations: BTreeMap<String, OperationReport>,
    /// Every operation's errors, by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Time the set-up took before the clock started.
    pub setup_seconds: f64,
    /// Successful requests of every operation by the whole second of the run they completed
    /// in, from the start of the warm-up (the last entry may be a partial second): how
    /// throughput moved during the run.
    pub ok_per_second: Vec<u64>,
    /// What the figures mean beyond the table (e.g. how a floor compares with deliveries).
    pub notes: Vec<String>,
}

/// A latency for people: `850 µs`, `1.51 ms`, `29.1 ms`, `196 ms`, `1.23 s`.
pub fn format_latency_us(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=9_999 => format!("{ms:.2} ms"),
        10_000..=99_999 => format!("{ms:.1} ms"),
        100_000..=999_999 => format!("{ms:.0} ms"),
        _ => format!("{:.2} s", ms / 1000.0),
    }
}

/// The report as an aligned table, header lines first.
pub fn render_table(report: &BenchReport) -> String {
    let mix: Vec<String> = report.mix.iter().map(|(op, w)| format!("{w}% {op}")).collect();
    let pacing = match report.rate {
        None => "closed loop".to_string(),
        Some(rate) => format!(
            "paced at {rate:.0} req/s (latency from intended send), {} unsent",
            report.unsent
        ),
    };
    let size = match report.size_bytes {
        Some(size) => format!("size {size} bytes"),
        None => format!("batch {}", report.batch),
    };
    // The floor has writers on the local disk, not clients of nodes.
    let (who, nodes) = match report.workload {
        Workload::FsyncFloor => ("writers", String::new()),
        _ => ("clients", format!(", {} nodes", report.nodes)),
    };
    let mut out = format!(
        "workload {} ({}), {} {who}, {size}, {}{nodes}, {:.0} s measured after {} s warm-up\n",
        kebab(report.workload),
        mix.join(", "),
        report.concurrency,
        pacing,
        report.seconds,
        report.warmup_seconds
    );
    out += &format!(
        "{:<18} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
        "OPERATION", "OPS", "OPS/S", "MSGS/S", "MB/S", "P50", "P90", "P99", "P99.9", "MAX", "ERRORS"
    );
    for (name, op) in &report.operations {
        let l = &op.latency_us;
        let carries = |n: &str| {
            Operation::ALL
                .iter()
                .any(|o| o.name() == n && o.carries_messages())
        };
        let messages_per_second = if carries(name) {
            format!("{:.1}", op.messages_per_second)
        } else {
            "-".to_string()
        };
        // Only deliveries and fsync'd files carry bytes (an append's size is only declared).
        let megabytes_per_second = if carries(name) && name != Operation::Append.name() {
            format!("{:.2}", op.megabytes_per_second)
        } else {
            "-".to_string()
        };
        out += &format!(
            "{:<18} {:>9} {:>10.1} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
            name,
            op.ops,
            op.ops_per_second,
            messages_per_second,
            megabytes_per_second,
            format_latency_us(l.p50),
            format_latency_us(l.p90),
            format_latency_us(l.p99),
            format_latency_us(l.p999),
            format_latency_us(l.max),
            op.errors
        );
    }
    if report.operations.len() > 1 {
        out += &format!(
            "{:<18} {:>9} {:>10.1} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
            "total", report.ops, report.ops_per_second, "", "", "", "", "", "", "", report.errors
        );
    }
    let errors: Vec<String> = report
        .operations
        .iter()
        .flat_map(|(name, op)| {
            op.errors_by_kind
                .iter()
                .map(move |(kind, n)| format!("{name} {kind} x{n}"))
        })
        .collect();
    if errors.is_empty() {
        out += "errors: none\n";
    } else {
        out += &format!("errors: {}\n", errors.join(", "));
    }
    for (name, op) in report.operations.iter().filter(|(_, op)| op.refused > 0) {
        let l = &op.refused_latency_us;
        out += &format!(
            "refused {name}: {} x 429 busy (not in the latencies above), answered in p50 {} p99 {} max {}\n",
            op.refused,
            format_latency_us(l.p50),
            format_latency_us(l.p99),
            format_latency_us(l.max)
        );
    }
    for note in &report.notes {
        out += &format!("note: {note}\n");
    }
    out
}

fn kebab(workload: Workload) -> String {
    serde_json::to_value(workload)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One state of the progress line: `[####------]  3.5/11 s  measuring  ops 12345  2103/s
/// errors 0`. `ops` and `errors` count since the start (warm-up included); `rate` is over the
/// last update interval.
pub fn progress_line(
    elapsed: Duration,
    total: Duration,
    warmup: Duration,
    ops: u64,
    rate: f64,
    errors: u64,
) -> String {
    const WIDTH: usize = 20;
    let fraction = (elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9)).clamp(0.0, 1.0);
    let filled = (fraction * WIDTH as f64).round() as usize;
    let phase = if elapsed < warmup {
        "warm-up  "
    } else {
        "measuring"
    };
    format!(
        "[{}{}] {:>5.1}/{:.0} s  {phase}  ops {ops}  {rate:.0}/s  errors {errors}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        elapsed.as_secs_f64().min(total.as_secs_f64()),
        total.as_secs_f64()
    )
}

/// The per-operation stats of a run, merged into the report.
pub fn build_report(
    base: BenchReport,
    mix: &[(Operation, u32)],
    stats: &[OperationStats; Operation::COUNT],
    unsent: u64,
) -> BenchReport {
    let mut report = base;
    report.unsent = unsent;
    for &(operation, weight) in mix {
        let s = &stats[operation.index()];
        report.mix.insert(operation.name().to_string(), weight);
        report.ops += s.ops;
        report.errors += s.error_count();
        report.refused += s.refused.len();
        for (kind, n) in &s.errors {
            *report.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
        report.operations.insert(
            operation.name().to_string(),
            OperationReport::from_stats(s, report.seconds),
        );
    }
    report.ops_per_second = report.ops as f64 / report.seconds;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_report(workload: Workload) -> BenchReport {
        BenchReport {
            workload,
            user_prefix: "bench-00000001-".into(),
            mix: BTreeMap::new(),
            nodes: 3,
            concurrency: 64,
            batch: 1,
            size_bytes: None,
            rate: None,
            warmup_seconds: 1,
            seconds: 10.0,
            ops: 0,
            ops_per_second: 0.0,
            errors: 0,
            refused: 0,
            unsent: 0,
            operations: BTreeMap::new(),
            errors_by_kind: BTreeMap::new(),
            setup_seconds: 0.0,
            ok_per_second: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn latencies_are_formatted_with_three_significant_digits() {
        assert_eq!(format_latency_us(850), "850 µs");
        assert_eq!(format_latency_us(1_512), "1.51 ms");
        assert_eq!(format_latency_us(29_140), "29.1 ms");
        assert_eq!(format_latency_us(196_400), "196 ms");
        assert_eq!(format_latency_us(1_234_000), "1.23 s");
    }

    #[test]
    fn stats_merge_into_a_report_with_totals_and_error_kinds() {
        let mix = crate::bench::workload::Mix::of(Workload::Mixed);
        let mut stats: [OperationStats; Operation::COUNT] = Default::default();
        let mut other: [OperationStats; Operation::COUNT] = Default::default();
        for ms in 1..=100u64 {
            stats[Operation::Append.index()].record_ok(
                Duration::from_millis(ms),
                Duration::from_millis(ms),
                1,
            );
        }
        other[Operation::Append.index()].record_ok(Duration::from_millis(500), Duration::from_millis(500), 1);
        other[Operation::Append.index()].record_error("http_503");
        stats[Operation::Store.index()].record_ok(Duration::from_micros(700), Duration::from_micros(700), 0);
        stats[Operation::Store.index()].record_error("http_503");
        stats[Operation::Store.index()].record_error("transport");
        for (s, o) in stats.iter_mut().zip(&other) {
            s.merge(o);
        }
        let report = build_report(empty_report(Workload::Mixed), mix.weights(), &stats, 0);
        assert_eq!(report.ops, 102);
        assert_eq!(report.errors, 3);
        assert_eq!(report.errors_by_kind["http_503"], 2);
        assert_eq!(report.errors_by_kind["transport"], 1);
        let append = &report.operations["append"];
        assert_eq!((append.ops, append.errors), (101, 1));
        assert!((append.ops_per_second - 10.1).abs() < 1e-9);
        // The 51st of 101 values; HdrHistogram with 3 significant digits: within 0.1%.
        assert!(
            append.latency_us.p50.abs_diff(51_000) <= 51,
            "{:?}",
            append.latency_us
        );
        assert!(append.latency_us.max.abs_diff(500_000) <= 500);
        assert_eq!(report.operations["read-linearizable"].ops, 0);
        assert_eq!(report.operations["read-linearizable"].latency_us.max, 0);
        assert!(!report.operations.contains_key("read-local"));
        assert_eq!(report.mix["append"], 50);

        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("workload mixed (50% append, 25% read-linearizable, 25% store), 64 clients")
        );
        assert!(lines[1].starts_with("OPERATION"));
        assert!(lines[2].starts_with("append") && lines[2].contains("51.0 ms") && lines[2].ends_with(" 1"));
        assert!(lines[5].starts_with("total") && lines[5].ends_with(" 3"));
        assert_eq!(
            lines[6],
            "errors: append http_503 x1, store http_503 x1, store transport x1"
        );
        // Every row is as wide as the header.
        assert!(lines[1..5]
            .iter()
            .all(|l| l.chars().count() == lines[1].chars().count()));

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workload"], "mixed");
        assert_eq!(json["operations"]["store"]["errors_by_kind"]["transport"], 1);
        assert_eq!(json["rate"], serde_json::Value::Null);
    }

    #[test]
    fn a_clean_single_operation_run_has_no_total_row() {
        let mix = crate::bench::workload::Mix::of(Workload::Append);
        let mut stats: [OperationStats; Operation::COUNT] = Default::default();
        stats[0].record_ok(Duration::from_millis(2), Duration::from_millis(2), 10);
        let mut base = empty_report(Workload::Append);
        base.rate = Some(500.0);
        let table = render_table(&build_report(base, mix.weights(), &stats, 7));
        assert!(table.contains("paced at 500 req/s (latency from intended send), 7 unsent"));
        assert!(!table.contains("\ntotal"));
        assert!(table.ends_with("errors: none\n"));
    }

    /// A delivery run reports its size, messages per second and MB/s (10^6 bytes) in the
    /// table and the JSON, and ends with its notes.
    #[test]
    fn a_delivery_run_reports_megabytes_per_second_and_notes() {
        let mix = crate::bench::workload::Mix::of(Workload::Deliver);
        let mut stats: [OperationStats; Operation::COUNT] = Default::default();
        for _ in 0..250 {
            let s = &mut stats[Operation::Deliver.index()];
            s.record_ok(Duration::from_millis(4), Duration::from_millis(4), 1);
            s.record_bytes(100_000);
        }
        let mut base = empty_report(Workload::Deliver);
        base.size_bytes = Some(100_000);
        base.notes = vec!["bodies are random".into()];
        let report = build_report(base, mix.weights(), &stats, 0);
        let deliver = &report.operations["deliver"];
        assert!((deliver.messages_per_second - 25.0).abs() < 1e-9);
        assert!((deliver.megabytes_per_second - 2.5).abs() < 1e-9);
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0]
            .starts_with("workload deliver (100% deliver), 64 clients, size 100000 bytes, closed loop"));
        assert!(lines[1].contains(" MB/S "));
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells[..5], ["deliver", "250", "25.0", "25.0", "2.50"]);
        assert_eq!(lines[1].chars().count(), lines[2].chars().count());
        assert!(
            table.ends_with("errors: none\nnote: bodies are random\n"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["size_bytes"], 100_000);
        assert_eq!(json["operations"]["deliver"]["megabytes_per_second"], 2.5);
    }

    /// A 429 is an error of its own kind, and its quick answer never enters the admitted
    /// requests' latencies: those stay the latencies of the 2xx answers alone.
    #[test]
    fn refusals_are_counted_and_timed_apart_from_admitted_requests() {
        let mix = crate::bench::workload::Mix::of(Workload::Append);
        let mut stats: [OperationStats; Operation::COUNT] = Default::default();
        let mut other: [OperationStats; Operation::COUNT] = Default::default();
        for _ in 0..10 {
            // Sent 50 ms late: charged 200 ms from the intended time, 150 ms from the send.
            stats[0].record_ok(Duration::from_millis(200), Duration::from_millis(150), 1);
        }
        for ms in 1..=90 {
            other[0].record_refused(Duration::from_micros(ms * 10));
        }
        other[0].record_error("http_503");
        stats[0].merge(&other[0]);
        let mut base = empty_report(Workload::Append);
        base.rate = Some(1000.0);
        let report = build_report(base, mix.weights(), &stats, 0);
        let append = &report.operations["append"];
        assert_eq!((append.ops, append.refused, append.errors), (10, 90, 91));
        assert_eq!((report.refused, report.errors), (90, 91));
        assert_eq!(report.errors_by_kind["http_429"], 90);
        assert!(
            append.latency_us.p50.abs_diff(200_000) <= 200,
            "{:?}",
            append.latency_us
        );
        assert!(append.latency_from_send_us.p50.abs_diff(150_000) <= 150);
        assert!(
            append.refused_latency_us.max.abs_diff(900) <= 1,
            "{:?}",
            append.refused_latency_us
        );
        let table = render_table(&report);
        assert!(
            table.contains("errors: append http_429 x90, append http_503 x1\n"),
            "{table}"
        );
        assert!(
            table.ends_with("refused append: 90 x 429 busy (not in the latencies above), answered in p50 450 µs p99 900 µs max 900 µs\n"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["refused"], 90);
        assert_eq!(json["operations"]["append"]["refused_latency_us"]["max"], 900);
    }

    #[test]
    fn progress_line_shows_phase_bar_and_counts() {
        let s = Duration::from_secs_f64;
        let line = progress_line(s(0.5), s(11.0), s(1.0), 40, 80.0, 0);
        assert_eq!(
            line,
            "[#-------------------]   0.5/11 s  warm-up    ops 40  80/s  errors 0"
        );
        let line = progress_line(s(5.5), s(11.0), s(1.0), 12_345, 2_103.4, 2);
        assert_eq!(
            line,
            "[##########----------]   5.5/11 s  measuring  ops 12345  2103/s  errors 2"
        );
        // Past the end the bar stays full.
        assert!(progress_line(s(12.0), s(11.0), s(1.0), 1, 0.0, 0)
            .starts_with("[####################]  11.0/11 s"));
    }
}
