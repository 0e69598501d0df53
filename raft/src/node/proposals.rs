//! [`Proposals`]: a leader coalesces the requests that wait for one group into one log entry.
//!
//! Without it every request is its own Raft entry: its own log write, its own replication
//! round trip to each follower, its own apply and the task wake-ups between them, on three
//! nodes. Under load, requests to one group queue here instead; a single proposer task per
//! group takes everything queued (up to [`MAX_BATCH_REQUESTS`] requests or
//! [`MAX_BATCH_BYTES`]), proposes it as one [`Batch`] entry, and hands each waiter its own
//! response when the entry is applied. While that entry is in flight the next batch gathers,
//! so the batch size follows the load: a lone request is proposed at once, alone.
//!
//! What this does not change: each request is still applied on its own, in queue order, with
//! its own response (the application's exactly-once sessions see each one); the whole batch is
//! one entry, so it commits or is lost as one, and every replica applies the same requests in
//! the same order. A request whose entry was not committed (leadership lost) is answered
//! `NotLeader`/`Failed` like a lone one, and the caller retries it as before.
//!
//! **Bound.** The queue holds at most [`ProposalLimits::requests`] requests and
//! [`ProposalLimits::bytes`] bytes (besides the batch in flight). A request that would go beyond
//! either is not queued: it is answered [`ForwardReply::Busy`] at once, never proposed, and the
//! caller tells its client to come back later (HTTP 429) instead of waiting behind a queue that
//! would outlast its deadline. A request that finds the queue empty is always taken, whatever
//! its size, so one large request is never refused for its size alone. The bound keeps a
//! leader's memory and the wait of an admitted request (about two replication rounds: the entry
//! in flight, then its own) independent of the offered load. Once the queue is full, nodes
//! refuse the group's writes before reading them (`RaftNode::admit_write`: this queue on the
//! leader, the busy hint elsewhere).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::state_machine::GroupRaft;
use crate::transport::wire::ForwardReply;
use crate::type_config::{Batch, GroupId, Request, MAX_BATCH_BYTES};
use crate::Application;

/// At most this many requests go into one entry (and at most [`MAX_BATCH_BYTES`]).
pub const MAX_BATCH_REQUESTS: usize = 256;
/// Default of [`ProposalLimits::requests`]. An admitted request waits for the entry in flight,
/// then commits in the next one, which carries at most the queue: the queue's length is what
/// the leader's latency under overload follows, and 64 keeps it at about two rounds of 64
/// requests. Closed-loop clients of one group up to this many are never refused (their requests
/// in flight are the queue plus the entry); more than that, per group, is overload.
pub const DEFAULT_MAX_QUEUED_REQUESTS: usize = 64;
/// [`ProposalLimits::bytes`]: sixteen full batches, 1 MiB. Only large requests reach it before
/// the count does (64 requests of the domain's largest, 64 KiB, would be 4 MiB per group).
pub const MAX_QUEUED_BYTES: usize = 16 * MAX_BATCH_BYTES;
/// Entries of one group a leader has in flight from this queue at once. One: the batch gathers
/// while the previous entry commits, which is what makes batches grow under load. (Measured
/// against three: 64 clients over 16 groups, 2,342-2,481 appends/s with one against 2,106-2,107
/// with three, two alternating runs each.)
const MAX_IN_FLIGHT: usize = 1;

type Waiter = oneshot::Sender<ForwardReply>;

/// How much one group's queue may hold (see the module docs for what happens beyond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalLimits {
    /// Requests waiting to be proposed. At least 1.
    pub requests: usize,
    /// Bytes of those requests.
    pub bytes: usize,
}

impl Default for ProposalLimits {
    fn default() -> Self {
        ProposalLimits {
            requests: DEFAULT_MAX_QUEUED_REQUESTS,
            bytes: MAX_QUEUED_BYTES,
        }
    }
}

#[derive(Default)]
struct Queue {
    pending: Vec<(Request, Waiter)>,
    /// Invariant: the sum of the lengths of `pending`'s requests.
    bytes: usize,
    /// Proposer tasks running (each proposes one batch at a time).
    running: usize,
}

/// One group's queue of requests waiting to be proposed.
pub(crate) struct Proposals {
    group_id: GroupId,
    limits: ProposalLimits,
    queue: Mutex<Queue>,
}

impl Proposals {
    pub(crate) fn new(group_id: GroupId, limits: ProposalLimits) -> Proposals {
        Proposals {
            group_id,
            limits: ProposalLimits {
                requests: limits.requests.max(1),
                bytes: limits.bytes,
            },
            queue: Mutex::default(),
        }
    }

    /// Queues `request` and answers once the entry carrying it is applied (or failed), or at
    /// once with [`ForwardReply::Busy`] when the queue is full.
    pub(crate) async fn propose<A: Application>(
        self: &Arc<Self>,
        raft: &GroupRaft<A>,
        request: Request,
    ) -> ForwardReply {
        let (tx, rx) = oneshot::channel();
        match self.enqueue(request, tx) {
            Err(busy) => return busy,
            // A task of its own: the caller may stop waiting (deadline), the batch must not.
            Ok(true) => drop(tokio::spawn(self.clone().run(raft.clone()))),
            Ok(false) => {}
        }
        rx.await.unwrap_or_else(|_| ForwardReply::Failed {
            reason: "the proposer stopped before answering".to_string(),
        })
    }

    /// Queues `request` with its waiter if it fits; `Ok(true)` when a proposer must be started
    /// for it, `Err` (the busy answer) when it does not fit.
    fn enqueue(&self, request: Request, waiter: Waiter) -> Result<bool, ForwardReply> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(busy) = self.refusal(&queue, request.0.len()) {
            drop(queue);
            let group = self.group_id.to_string();
            metrics::counter!(crate::metrics::PROPOSALS_REFUSED_TOTAL, "group" => group).increment(1);
            return Err(busy);
        }
        queue.bytes += request.0.len();
        queue.pending.push((request, waiter));
        debug_assert!(queue.pending.len() <= self.limits.requests);
        let start = queue.running < MAX_IN_FLIGHT;
        if start {
            queue.running += 1;
        }
        Ok(start)
    }

    /// `(queued, limit)` when the queue holds as many requests as it may (the next one would be
    /// refused whatever its size); a cheap look before a request is even read.
    pub(crate) fn full(&self) -> Option<(u64, u64)> {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        (queue.pending.len() >= self.limits.requests)
            .then_some((queue.pending.len() as u64, self.limits.requests as u64))
    }

    /// The answer to a request of `len` bytes that does not fit in the queue; `None` if it does.
    /// An empty queue takes any request.
    fn refusal(&self, queue: &Queue, len: usize) -> Option<ForwardReply> {
        let full = queue.pending.len() >= self.limits.requests
            || queue.bytes.saturating_add(len) > self.limits.bytes;
        (full && !queue.pending.is_empty()).then_some(ForwardReply::Busy {
            queued: queue.pending.len() as u64,
            limit: self.limits.requests as u64,
        })
    }

    /// Takes the next batch, or retires this proposer when nothing is queued.
    fn take(&self) -> Option<Vec<(Request, Waiter)>> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.pending.is_empty() {
            queue.running -= 1;
            return None;
        }
        let mut bytes = 0;
        let mut count = 0;
        for (request, _) in &queue.pending {
            if count == MAX_BATCH_REQUESTS || (count > 0 && bytes + request.0.len() > MAX_BATCH_BYTES) {
                break;
            }
            bytes += request.0.len();
            count += 1;
        }
        let rest = queue.pending.split_off(count);
        queue.bytes -= bytes;
        debug_assert_eq!(queue.bytes, rest.iter().map(|(r, _)| r.0.len()).sum::<usize>());
        Some(std::mem::replace(&mut queue.pending, rest))
    }

    async fn run<A: Application>(self: Arc<Self>, raft: GroupRaft<A>) {
        while let Some(batch) = self.take() {
            let (requests, waiters): (Vec<Request>, Vec<Waiter>) = batch.into_iter().unzip();
            metrics::histogram!(crate::metrics::PROPOSAL_BATCH_REQUESTS).record(requests.len() as f64);
            let started = std::time::Instant::now();
            let result = raft.client_write(Batch(requests)).await;
            metrics::histogram!(crate::metrics::PROPOSAL_ROUND_SECONDS).record(started.elapsed());
            match result {
                // One response per request: the state machine stops the group otherwise.
                Ok(written) => {
                    let position = crate::state_machine::position_of(&written.log_id);
                    for (waiter, response) in waiters.into_iter().zip(written.data.0) {
                        // A waiter that gave up (deadline) no longer listens; nothing to do.
                        let _ = waiter.send(ForwardReply::Applied { position, response });
                    }
                }
                Err(e) => {
                    let reply = ForwardReply::from_write(Err(e));
                    for waiter in waiters {
                        let _ = waiter.send(reply.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(sizes: &[usize]) -> Proposals {
        let limits = ProposalLimits {
            requests: usize::MAX,
            bytes: usize::MAX,
        };
        let proposals = Proposals::new(7, limits);
        {
            let mut queue = proposals.queue.lock().unwrap();
            queue.running = 1;
            for &size in sizes {
                let (tx, _rx) = oneshot::channel();
                queue.pending.push((Request(vec![0; size]), tx));
                queue.bytes += size;
            }
        }
        proposals
    }

    fn sizes(batch: &[(Request, Waiter)]) -> Vec<usize> {
        batch.iter().map(|(r, _)| r.0.len()).collect()
    }

    #[test]
    fn takes_everything_queued_in_order_then_retires() {
        let proposals = queue_of(&[1, 2, 3]);
        assert_eq!(sizes(&proposals.take().unwrap()), [1, 2, 3]);
        assert!(proposals.take().is_none());
        assert_eq!(proposals.queue.lock().unwrap().running, 0);
    }

    #[test]
    fn a_batch_stops_at_the_request_and_byte_limits() {
        let proposals = queue_of(&vec![1; MAX_BATCH_REQUESTS + 5]);
        assert_eq!(proposals.take().unwrap().len(), MAX_BATCH_REQUESTS);
        assert_eq!(proposals.take().unwrap().len(), 5);

        let half = MAX_BATCH_BYTES / 2;
        let proposals = queue_of(&[half, half, 1, MAX_BATCH_BYTES * 2, 7]);
        assert_eq!(sizes(&proposals.take().unwrap()), [half, half]);
        assert_eq!(sizes(&proposals.take().unwrap()), [1]);
        // An oversized request still goes, alone.
        assert_eq!(sizes(&proposals.take().unwrap()), [MAX_BATCH_BYTES * 2]);
        assert_eq!(sizes(&proposals.take().unwrap()), [7]);
        assert!(proposals.take().is_none());
    }

    fn enqueue(proposals: &Proposals, size: usize) -> Result<bool, ForwardReply> {
        let (tx, _rx) = oneshot::channel();
        proposals.enqueue(Request(vec![0; size]), tx)
    }

    #[test]
    fn a_full_queue_refuses_with_busy_until_a_batch_is_taken() {
        let limits = ProposalLimits {
            requests: 2,
            bytes: 1 << 20,
        };
        let proposals = Proposals::new(3, limits);
        assert_eq!(
            enqueue(&proposals, 1),
            Ok(true),
            "the first request starts a proposer"
        );
        assert_eq!(enqueue(&proposals, 1), Ok(false));
        assert_eq!(
            enqueue(&proposals, 1),
            Err(ForwardReply::Busy { queued: 2, limit: 2 })
        );
        assert_eq!(
            proposals.queue.lock().unwrap().pending.len(),
            2,
            "a refusal queues nothing"
        );
        // Once the proposer takes the queued requests as a batch, there is room again.
        assert_eq!(proposals.take().unwrap().len(), 2);
        assert_eq!(enqueue(&proposals, 1), Ok(false), "the proposer is still running");
        assert_eq!(enqueue(&proposals, 1), Ok(false));
        assert!(enqueue(&proposals, 1).is_err());
        assert_eq!(proposals.full(), Some((2, 2)));
        proposals.take();
        assert_eq!(proposals.full(), None);
    }

    #[test]
    fn the_byte_limit_refuses_but_an_empty_queue_takes_any_request() {
        let limits = ProposalLimits {
            requests: 100,
            bytes: 100,
        };
        let proposals = Proposals::new(3, limits);
        assert_eq!(enqueue(&proposals, 60), Ok(true));
        assert_eq!(
            enqueue(&proposals, 50),
            Err(ForwardReply::Busy {
                queued: 1,
                limit: 100
            })
        );
        assert_eq!(
            enqueue(&proposals, 40),
            Ok(false),
            "exactly at the byte limit fits"
        );
        assert_eq!(proposals.queue.lock().unwrap().bytes, 100);
        assert_eq!(sizes(&proposals.take().unwrap()), [60, 40]);
        assert_eq!(proposals.queue.lock().unwrap().bytes, 0);
        assert_eq!(
            enqueue(&proposals, 500),
            Ok(false),
            "alone, a large request is taken"
        );
        assert!(enqueue(&proposals, 1).is_err());
    }

    #[test]
    fn a_limit_of_zero_requests_still_takes_one_at_a_time() {
        let proposals = Proposals::new(
            3,
            ProposalLimits {
                requests: 0,
                bytes: 0,
            },
        );
        assert_eq!(enqueue(&proposals, 10), Ok(true));
        assert!(enqueue(&proposals, 10).is_err());
    }
}
