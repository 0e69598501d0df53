//! [`ReadRounds`]: one leadership confirmation (ReadIndex) serves every linearizable read that
//! waits on a group at its leader, local or forwarded by a follower.
//!
//! Without it every read asked openraft for its own linearizer, and every such request sent
//! its own heartbeat broadcast to the followers: at 64 concurrent readers, 64 rounds of
//! heartbeats for one group where one does.
//!
//! Why sharing a round is linearizable: a read must see every write committed before it began.
//! A round's position is the leader's commit index read when the round starts, confirmed by a
//! quorum afterwards. A read joins only a round that starts after it arrived: reads arriving
//! while a round is in flight wait for the next one, which starts as soon as the current one
//! answers. So the position every read gets was read after that read began (ARCHITECTURE.md
//! §5).
//!
//! The rounds run on a task of their own, not on a reader's future: a reader that gives up
//! (its deadline, its client gone) leaves the others their answer.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::transport::wire::ReadIndexReply;

/// The reads of one group waiting for a confirmation round; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct ReadRounds {
    state: Mutex<RoundsState>,
}

#[derive(Debug, Default)]
struct RoundsState {
    /// A task is running rounds (and will take `waiting` before it stops).
    running: bool,
    /// Reads that arrived after the current round started: they get the next one.
    waiting: Vec<oneshot::Sender<ReadIndexReply>>,
}

impl ReadRounds {
    /// The answer of the first round that starts after this call: `confirm` runs the round
    /// (it is called once per round, by whichever read starts the task, so every read of a
    /// group must pass an equivalent one).
    pub(crate) async fn read<F, Fut>(self: &Arc<Self>, confirm: F) -> ReadIndexReply
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ReadIndexReply> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.waiting.push(tx);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).run(confirm));
        }
        rx.await.unwrap_or_else(|_| ReadIndexReply::NoQuorum {
            reason: "the read round stopped".to_string(),
        })
    }

    /// Runs rounds while reads wait, each for the reads that arrived before it started.
    async fn run<F, Fut>(self: Arc<Self>, confirm: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ReadIndexReply>,
    {
        loop {
            let batch = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let reply = confirm().await;
            for reader in batch {
                let _ = reader.send(reply.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::LogPosition;

    /// A confirmation whose position is the "commit index" when the round starts; it takes a
    /// while, so reads pile up meanwhile.
    fn confirm(
        commit: Arc<AtomicU64>,
        rounds: Arc<AtomicU64>,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ReadIndexReply> + Send>> + Send + 'static {
        move || {
            let (commit, rounds) = (commit.clone(), rounds.clone());
            Box::pin(async move {
                rounds.fetch_add(1, Ordering::SeqCst);
                let index = commit.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                ReadIndexReply::Ready {
                    position: LogPosition { term: 1, index },
                }
            })
        }
    }

    #[tokio::test]
    async fn concurrent_reads_share_rounds_and_each_sees_what_was_committed_before_it() {
        let reads = Arc::new(ReadRounds::default());
        let commit = Arc::new(AtomicU64::new(0));
        let rounds = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            // A write commits, then a read begins: the read must see at least that index.
            let committed = commit.fetch_add(1, Ordering::SeqCst) + 1;
            let (reads, confirm) = (reads.clone(), confirm(commit.clone(), rounds.clone()));
            tasks.push(tokio::spawn(async move {
                let reply = reads.read(confirm).await;
                (committed, reply)
            }));
            if i % 16 == 15 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for task in tasks {
            let (committed, reply) = task.await.unwrap();
            match reply {
                ReadIndexReply::Ready { position } => assert!(
                    position.index >= committed,
                    "a read that began after index {committed} committed got {}",
                    position.index
                ),
                other => panic!("{other:?}"),
            }
        }
        let rounds = rounds.load(Ordering::SeqCst);
        assert!((1..=8).contains(&rounds), "64 reads took {rounds} rounds");
    }

    #[tokio::test]
    async fn a_reader_that_gives_up_leaves_the_others_their_answer() {
        let reads = Arc::new(ReadRounds::default());
        let (commit, rounds) = (Arc::new(AtomicU64::new(7)), Arc::new(AtomicU64::new(0)));
        let first = {
            let (reads, confirm) = (reads.clone(), confirm(commit.clone(), rounds.clone()));
            tokio::spawn(async move { reads.read(confirm).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let second = {
            let (reads, confirm) = (reads.clone(), confirm(commit.clone(), rounds.clone()));
            tokio::spawn(async move { reads.read(confirm).await })
        };
        first.abort();
        let reply = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(
            reply,
            ReadIndexReply::Ready {
                position: LogPosition { term: 1, index: 7 }
            }
        );
        // The task stops once nobody waits, and a later read starts a new one.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reads.state.lock().unwrap().running);
        let reply = reads.read(confirm(commit, rounds)).await;
        assert!(matches!(reply, ReadIndexReply::Ready { .. }));
    }
}
