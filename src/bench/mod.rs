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
//! **Deliveries** (`deliver`): each request is one message of `--size` bytes with its body
//! (`message/rfc822`), cut from a buffer of random bytes made once (a header line naming the
//! request keeps every body distinct, so single-instance storage never makes one cheap); the
//! set-up delivers one message per worker, retried while the group has not reached log
//! encoding 3 (409). The report adds MB/s. **The floor** (`fsync-floor`, [`floor`]): no
//! cluster; files of the same size written and fsync'd one after another in `--dir`, what the
//! disk alone gives (`scripts/bench/deliver.sh` runs both and compares).
//!
//! Layout: [`workload`] (mix, request shapes, bodies), [`pacing`] (schedules), [`report`]
//! (histograms, table, JSON, progress line), all pure; [`driver`] does the I/O (set-up, workers,
//! progress), [`floor`] the floor's file writes.
//! This file only declares and re-exports, so the pure parts never depend on the driver.

pub mod driver;
pub mod floor;
pub mod pacing;
pub mod report;
pub mod workload;

pub use driver::{run, BenchConfig};
pub use report::{render_table, BenchReport};
