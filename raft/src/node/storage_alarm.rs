//! [`StorageAlarm`]: the node's "no more writes" switch for a full disk (like etcd's NOSPACE
//! alarm), raised and cleared by the node's disk monitor through
//! [`RaftNode::set_storage_alarm`](super::RaftNode::set_storage_alarm).
//!
//! While it is raised, the node takes no new log entries, so its log never has to write more
//! than the reserve it keeps (`log_store/reserve.rs`):
//! - proposals made on this node fail at once with [`ProposeError::NoSpace`](super::ProposeError)
//!   (the API answers 507), and proposals forwarded to it as leader are turned back, so the
//!   forwarding node retries at the next leader;
//! - it asks every group it leads to transfer leadership to another voter (again every second
//!   while it still leads), and stops campaigning (openraft's `elect` switch), so it does not
//!   become leader again and append the new leader's blank entry;
//! - as a follower it refuses AppendEntries that carry entries and incoming snapshots (the
//!   leader backs off and retries: the node is a slow follower until the alarm clears); empty
//!   AppendEntries (heartbeats, commit updates) and votes still go through, so it neither
//!   starts elections nor blocks them;
//! - reads are served as usual.
//!
//! Clearing the alarm switches elections back on; the leader catches the node up.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a node in alarm asks again to hand over a group it still leads.
pub const STEP_DOWN_RETRY: Duration = Duration::from_secs(1);

/// The alarm's state: why it is raised (`None`: it is not), and per group when this node last
/// asked to hand leadership over.
#[derive(Debug, Default)]
pub(crate) struct StorageAlarm {
    reason: Mutex<Option<String>>,
    step_downs: Mutex<std::collections::HashMap<u32, Instant>>,
}

impl StorageAlarm {
    /// Why the node refuses writes, if it does.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sets the reason; returns the previous one.
    pub fn set(&self, reason: Option<String>) -> Option<String> {
        let mut current = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if reason.is_none() {
            self.step_downs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        std::mem::replace(&mut *current, reason)
    }

    /// Whether to ask (again) now that `group_id` be handed over: not more often than
    /// [`STEP_DOWN_RETRY`].
    pub fn step_down_due(&self, group_id: u32, now: Instant) -> bool {
        let mut asked = self.step_downs.lock().unwrap_or_else(PoisonError::into_inner);
        match asked.get(&group_id) {
            Some(at) if now.duration_since(*at) < STEP_DOWN_RETRY => false,
            _ => {
                asked.insert(group_id, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_downs_are_asked_at_most_once_a_second_per_group() {
        let alarm = StorageAlarm::default();
        assert_eq!(alarm.set(Some("full".into())), None);
        let now = Instant::now();
        assert!(alarm.step_down_due(1, now));
        assert!(!alarm.step_down_due(1, now + Duration::from_millis(500)));
        assert!(alarm.step_down_due(2, now));
        assert!(alarm.step_down_due(1, now + STEP_DOWN_RETRY));
        assert_eq!(alarm.set(None), Some("full".into()));
        assert!(
            alarm.step_down_due(1, now + STEP_DOWN_RETRY),
            "cleared with the alarm"
        );
        assert_eq!(alarm.reason(), None);
    }
}
