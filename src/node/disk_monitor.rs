//! The disk monitor: a full disk is an alarm, not a crash.
//!
//! Every [`CHECK_INTERVAL`] the node reads the free space of its data directory's file system,
//! the size of its Raft log and the log's reserve (`dovetail_raft` keeps the log file written
//! ahead of its segments; the top-up failing is the first sign of a full disk), and decides
//! ([`alarm_reason`], pure) whether the storage alarm must be raised or may clear:
//! - raised when the free space is below `--min-free-bytes`, the log's reserve fell short, or
//!   the log is larger than `--max-log-bytes`;
//! - cleared only once all three are comfortably back (free space a margin above the watermark,
//!   the reserve whole, the log a sixteenth under its quota), so it does not flap.
//!
//! The raft layer does the rest (`RaftNode::set_storage_alarm`): no new entries through or into
//! this node, leadership handed over, no campaigning; reads go on. The alarm shows in
//! `/admin/status` (`node.storage`), `/metrics` (`dovetail_storage_alarm`,
//! `dovetail_disk_free_bytes`, `dovetail_log_reserve_bytes`), `ctl status` and the dashboard.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dovetail_raft::{RaftNode, ReserveStatus};

use super::mail_group::MailGroup;
use super::status::{dir_bytes, StorageReport};

/// How often the disk is looked at.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The watermarks the monitor applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLimits {
    pub min_free_bytes: u64,
    pub max_log_bytes: u64,
}

/// One look at the disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskReading {
    /// Bytes an unprivileged process may still write on the data directory's file system.
    pub free_bytes: u64,
    /// Bytes under `<data-dir>/raft-log`.
    pub log_bytes: u64,
    pub reserve: ReserveStatus,
}

/// Why the alarm must be (or stay) raised, or `None` if it may be clear. `raised` is whether it
/// is raised now: clearing needs a margin above each watermark.
pub fn alarm_reason(reading: &DiskReading, limits: DiskLimits, raised: bool) -> Option<String> {
    let free_floor = if raised {
        limits.min_free_bytes + (limits.min_free_bytes / 8).max(4 << 20)
    } else {
        limits.min_free_bytes
    };
    let log_ceiling = if raised {
        limits.max_log_bytes - limits.max_log_bytes / 16
    } else {
        limits.max_log_bytes
    };
    if let Some(error) = &reading.reserve.error {
        return Some(format!(
            "the Raft log could not keep its {} byte reserve: {error}",
            reading.reserve.target_bytes
        ));
    }
    if raised && reading.reserve.is_short() {
        return Some(format!(
            "the Raft log's reserve is {} of {} bytes",
            reading.reserve.ahead_bytes, reading.reserve.target_bytes
        ));
    }
    if reading.free_bytes < free_floor {
        return Some(format!(
            "{} bytes free on the data directory's file system, below {free_floor} (--min-free-bytes {})",
            reading.free_bytes, limits.min_free_bytes
        ));
    }
    if reading.log_bytes > log_ceiling {
        return Some(format!(
            "the Raft log uses {} bytes, above {log_ceiling} (--max-log-bytes {})",
            reading.log_bytes, limits.max_log_bytes
        ));
    }
    None
}

/// Free bytes for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs fills the zeroed struct we pass; the path is a NUL-terminated C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Runs the monitor until aborted, keeping `report` current for the status.
pub async fn run_disk_monitor(
    raft: RaftNode<MailGroup>,
    data_dir: PathBuf,
    limits: DiskLimits,
    report: Arc<Mutex<StorageReport>>,
) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let dir = data_dir.clone();
        let measured =
            tokio::task::spawn_blocking(move || (free_bytes(&dir), dir_bytes(&dir.join("raft-log")))).await;
        let Ok((Ok(free), log_bytes)) = measured else {
            continue;
        };
        let reading = DiskReading {
            free_bytes: free,
            log_bytes,
            reserve: raft.log_reserve(),
        };
        let reason = alarm_reason(&reading, limits, raft.storage_alarm().is_some());
        raft.set_storage_alarm(reason.clone()).await;
        super::metrics::record_storage(reason.is_some(), reading.free_bytes, reading.reserve.ahead_bytes);
        *report.lock().unwrap_or_else(PoisonError::into_inner) = StorageReport {
            alarm: reason,
            free_bytes: reading.free_bytes,
            log_bytes: reading.log_bytes,
            log_reserve_bytes: reading.reserve.ahead_bytes,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const LIMITS: DiskLimits = DiskLimits {
        min_free_bytes: 64 * MIB,
        max_log_bytes: 1024 * MIB,
    };

    fn reading(free_bytes: u64, log_bytes: u64) -> DiskReading {
        DiskReading {
            free_bytes,
            log_bytes,
            reserve: ReserveStatus {
                ahead_bytes: 16 * MIB,
                target_bytes: 16 * MIB,
                error: None,
            },
        }
    }

    #[test]
    fn raised_below_the_watermark_cleared_only_above_a_margin() {
        assert_eq!(alarm_reason(&reading(100 * MIB, 0), LIMITS, false), None);
        let low = alarm_reason(&reading(63 * MIB, 0), LIMITS, false).unwrap();
        assert!(low.contains("--min-free-bytes"), "{low}");
        // Just above the watermark again: stays raised until the margin is there too.
        assert!(alarm_reason(&reading(65 * MIB, 0), LIMITS, true).is_some());
        assert_eq!(alarm_reason(&reading(73 * MIB, 0), LIMITS, true), None);
    }

    #[test]
    fn a_short_reserve_raises_it_and_a_whole_one_is_needed_to_clear() {
        let mut full = reading(1, 0);
        full.reserve.error = Some("No space left on device (os error 28)".into());
        full.reserve.ahead_bytes = 3 * MIB;
        let reason = alarm_reason(&full, LIMITS, false).unwrap();
        assert!(reason.contains("No space left"), "{reason}");
        // Space back, but the reserve not yet topped up: still raised.
        let mut refilling = reading(500 * MIB, 0);
        refilling.reserve.ahead_bytes = 8 * MIB;
        assert!(alarm_reason(&refilling, LIMITS, true).is_some());
        assert_eq!(alarm_reason(&reading(500 * MIB, 0), LIMITS, true), None);
    }

    #[test]
    fn the_log_quota_has_its_own_alarm() {
        let reason = alarm_reason(&reading(500 * MIB, 1025 * MIB), LIMITS, false).unwrap();
        assert!(reason.contains("--max-log-bytes"), "{reason}");
        assert!(alarm_reason(&reading(500 * MIB, 1000 * MIB), LIMITS, true).is_some());
        assert_eq!(alarm_reason(&reading(500 * MIB, 900 * MIB), LIMITS, true), None);
    }

    #[test]
    fn free_bytes_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
