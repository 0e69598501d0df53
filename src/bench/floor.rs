//! `--workload fsync-floor`: what the disk alone gives, the floor a delivery's MB/s is compared
//! with. Each of `--concurrency` writers (1 by default: one file after another) creates a file of
//! `--size` bytes in `--dir`, writes it and fsyncs it, then the next; timed and reported as the
//! other workloads are (files/s as messages/s, MB/s, latency percentiles). No rename and no
//! directory fsync: the body store does both on top of this, so the floor is a bound a delivery
//! cannot reach. The files are removed at the end of the run.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::report::{self, BenchReport, OperationStats};
use super::workload::{MessagePool, Mix, Operation, Sender, Workload};

/// How long the floor runs and how many writers it has (from `dovetail bench`'s flags).
#[derive(Debug, Clone, Copy)]
pub struct FloorRun {
    pub writers: usize,
    pub warmup_seconds: u64,
    pub seconds: u64,
}

/// One writer's measurements and the files it left.
struct WriterResult {
    stats: OperationStats,
    ok_per_second: Vec<u64>,
    files: Vec<PathBuf>,
}

/// Writes and fsyncs files one after another until `end`; counted from `warmup` on.
fn write_files(
    dir: &Path,
    pool: &MessagePool,
    sender: Sender,
    start: Instant,
    warmup: Duration,
    end: Duration,
) -> std::io::Result<WriterResult> {
    let mut result = WriterResult {
        stats: OperationStats::default(),
        ok_per_second: Vec::new(),
        files: Vec::new(),
    };
    let mut seq = 0u64;
    while start.elapsed() < end {
        seq += 1;
        // Cut before the clock, as a bench client's body is made before its request is sent.
        let body = pool.message(sender, seq);
        let path = dir.join(format!("floor-{:08x}-{}-{seq}", sender.run_id, sender.worker));
        let sent = start.elapsed();
        let mut file = File::create(&path)?;
        result.files.push(path);
        file.write_all(&body)?;
        file.sync_all()?;
        drop(file);
        let completed = start.elapsed();
        let second = completed.as_secs() as usize;
        if result.ok_per_second.len() <= second {
            result.ok_per_second.resize(second + 1, 0);
        }
        result.ok_per_second[second] += 1;
        if sent >= warmup {
            let took = completed - sent;
            result.stats.record_ok(took, took, 1);
            result.stats.record_bytes(pool.size());
        }
    }
    Ok(result)
}

/// The fsync floor in `dir`: the report of `--workload fsync-floor`.
pub async fn run(
    config: FloorRun,
    dir: &Path,
    pool: &MessagePool,
    run_id: u32,
) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(dir.is_dir(), "--dir {}: not a directory", dir.display());
    let start = Instant::now();
    let warmup = Duration::from_secs(config.warmup_seconds);
    let end = Duration::from_secs(config.warmup_seconds + config.seconds);
    let writers: Vec<_> = (0..config.writers)
        .map(|worker| {
            let (dir, pool) = (dir.to_path_buf(), pool.clone());
            let sender = Sender {
                run_id,
                worker: worker as u32,
            };
            tokio::task::spawn_blocking(move || write_files(&dir, &pool, sender, start, warmup, end))
        })
        .collect();
    let mut stats: [OperationStats; Operation::COUNT] = Default::default();
    let mut ok_per_second: Vec<u64> = Vec::new();
    let mut files = Vec::new();
    let mut failure = None;
    for writer in writers {
        match writer.await? {
            Ok(result) => {
                stats[Operation::WriteFsync.index()].merge(&result.stats);
                if ok_per_second.len() < result.ok_per_second.len() {
                    ok_per_second.resize(result.ok_per_second.len(), 0);
                }
                for (total, n) in ok_per_second.iter_mut().zip(&result.ok_per_second) {
                    *total += n;
                }
                files.extend(result.files);
            }
            Err(e) => failure = Some(e),
        }
    }
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    if let Some(e) = failure {
        anyhow::bail!("--dir {}: {e}", dir.display());
    }
    let base = BenchReport {
        workload: Workload::FsyncFloor,
        user_prefix: String::new(),
        mix: Default::default(),
        nodes: 0,
        concurrency: config.writers,
        batch: 1,
        size_bytes: Some(pool.size()),
        rate: None,
        warmup_seconds: config.warmup_seconds,
        seconds: config.seconds as f64,
        ops: 0,
        ops_per_second: 0.0,
        errors: 0,
        refused: 0,
        unsent: 0,
        operations: Default::default(),
        errors_by_kind: Default::default(),
        setup_seconds: 0.0,
        ok_per_second,
        notes: vec![
            format!(
                "files of {} bytes written and fsync'd one after another per writer in {} \
                 (no rename, no directory fsync); MB = 10^6 bytes",
                pool.size(),
                dir.display()
            ),
            "a 3-node cluster whose nodes share this disk writes each delivered body three \
             times (once per replica) plus each node's log entry: a delivery's MB/s at a third \
             of this floor is the disk's limit"
                .to_string(),
        ],
    };
    Ok(report::build_report(
        base,
        Mix::of(Workload::FsyncFloor).weights(),
        &stats,
        0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-second floor in a temporary directory: files were written, MB/s is files/s times
    /// the size, and no file is left behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_floor_writes_fsyncs_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let floor_run = FloorRun {
            writers: 1,
            warmup_seconds: 0,
            seconds: 1,
        };
        let pool = MessagePool::new(65_536, 1);
        let report = run(floor_run, dir.path(), &pool, 1).await.unwrap();
        assert_eq!(report.workload, Workload::FsyncFloor);
        let floor = &report.operations["write-fsync"];
        assert!(floor.ops > 0, "{report:?}");
        assert_eq!(report.size_bytes, Some(65_536));
        let expected = floor.messages_per_second * 65_536.0 / 1e6;
        assert!((floor.megabytes_per_second - expected).abs() < 1e-9);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(report::render_table(&report).contains("three times"));
    }
}
