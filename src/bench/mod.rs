//! `dovetail bench`: a load generator against a running cluster's HTTP API.
//!
//! Each of `--concurrency` workers is a user of its own (`bench-<run>-<worker>`, so the load
//! spreads over groups as real users would). **Set-up**, before the clock: every worker creates
//! its INBOX and, when the workload stores flags or reads, appends
//! [`workload::SETUP_MESSAGES`] messages to it. Then every worker draws operations from the
//! workload's mix (`mixed`: 50% append, 25% store, 25% linearizable status read) and sends them
//! through the nodes given, round-robin per request, for `--warmup` + `--duration` seconds;
//! only requests sent after the warm-up are counted.
//!
//! **Pacing** (`pacing`): closed loop by default (the next request when the answer is in; latency
//! from send to complete response); with `--rate` each worker paces to `rate / concurrency`,
//! open loop: each request goes at its intended time whether or not the earlier ones were
//! answered (at most `--max-in-flight` outstanding over all workers; a send that waits for room
//! is late), and latency counts from the intended send time (no coordinated omission), so a
//! cluster that answers slowly or refuses still gets the offered rate. **Measurement**
//! (`report`): per operation, HdrHistograms (µs) of the admitted (2xx) requests, charged from
//! the intended time and, apart, from the actual send (they differ when a paced generator falls
//! behind, which `send_lag_us` shows); a failure is counted by kind (`http_<status>` for a
//! non-2xx answer, `transport`, `timeout` after 30 s), never mixed into those latencies;
//! refusals (`http_429`, busy) are timed from their send in a histogram of their own. Per second
//! of the run, the successful requests (`ok_per_second`: how throughput moved). `--acked-out`
//! lists the GUIDs of every acknowledged append, for checking that the cluster holds them.
//! Connections are kept alive (hyper's pool). A progress line on stderr (a terminal only) shows
//! elapsed time, completed requests, the current rate and errors twice a second.
//!
//! Layout: [`workload`] (mix and request shapes), [`pacing`] (schedules), [`report`] (histograms,
//! table, JSON, progress line), all pure; [`driver`] does the I/O (set-up, workers, progress).
//! This file only declares and re-exports, so the pure parts never depend on the driver.

pub mod driver;
pub mod pacing;
pub mod report;
pub mod workload;

pub use driver::{run, BenchConfig};
pub use report::{render_table, BenchReport};
