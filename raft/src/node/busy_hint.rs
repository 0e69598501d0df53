//! [`BusyHint`]: what a node remembers of a group's leader refusing a request as busy, so that
//! it refuses the next ones itself for a moment instead of forwarding them to be refused there.
//!
//! Under overload most requests are refused. Refused at the leader, each one costs the
//! forwarding node the body's parsing, the forward and the answer, and the leader its share:
//! about as much CPU as an admitted write, spent on nothing, which under heavy overload leaves
//! the cluster too little to commit what it admitted (measured: a 3-node cluster offered ten
//! times its capacity committed a fifth of it). With the hint, a node that was just told "busy"
//! answers 429 for the group's writes for [`BUSY_HINT`] before reading their bodies
//! (`RaftNode::admit_write`), then forwards again: one probe per hint, not one forward per
//! request. The leader itself needs no hint: it looks at its queue.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::BusyQueue;

/// How long a node refuses a group's writes itself after its leader said busy: a fraction of a
/// replication round on a loaded machine, so the leader's queue, which drains a batch a round,
/// is offered new requests about every round; far below the `Retry-After` of one second the
/// refused clients are given.
pub const BUSY_HINT: Duration = Duration::from_millis(10);

/// The last busy answer of a group's leader, until it expires.
#[derive(Debug, Default)]
pub(crate) struct BusyHint {
    last: Mutex<Option<Refusal>>,
}

/// A busy answer: which bound, how full, and until when it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub queue: BusyQueue,
    pub queued: u64,
    pub limit: u64,
    pub until: Instant,
}

impl BusyHint {
    /// Remembers a busy answer received at `now`.
    pub fn set(&self, queue: BusyQueue, queued: u64, limit: u64, now: Instant) {
        let refusal = Refusal {
            queue,
            queued,
            limit,
            until: now + BUSY_HINT,
        };
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(refusal);
    }

    /// The busy answer that still stands at `now`, if any.
    pub fn get(&self, now: Instant) -> Option<Refusal> {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.filter(|refusal| now < refusal.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_answer_stands_for_the_hint_then_expires() {
        let hint = BusyHint::default();
        let now = Instant::now();
        assert_eq!(hint.get(now), None);
        hint.set(BusyQueue::Proposals, 64, 64, now);
        let refusal = hint.get(now + BUSY_HINT / 2).expect("within the hint");
        assert_eq!(
            (refusal.queue, refusal.queued, refusal.limit),
            (BusyQueue::Proposals, 64, 64)
        );
        assert_eq!(hint.get(now + BUSY_HINT), None, "expired");
        hint.set(BusyQueue::Forwards, 1024, 1024, now + BUSY_HINT);
        assert_eq!(hint.get(now + BUSY_HINT).unwrap().queue, BusyQueue::Forwards);
    }
}
