//! What a bench worker sends: the workloads, the operation mix each one draws from, and the
//! HTTP request of each operation. Pure: no I/O, so the mix and the request shapes are tested
//! here.

use serde::Serialize;

/// Messages appended to every worker's INBOX before the clock starts when the workload stores
/// flags or reads, so STORE always has UIDs to change.
pub const SETUP_MESSAGES: u64 = 100;

/// The flag STORE toggles (added on one pass over the setup UIDs, removed on the next), so every
/// STORE changes a message and takes the full write path.
const STORE_FLAG: &str = r"\\Flagged";

/// `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Appends of `--batch` messages.
    Append,
    /// STORE of `\Flagged` on one existing message (add, then remove on the next pass).
    Store,
    /// Mailbox status with `consistency=local` (this node's index, no leader round trip).
    ReadLocal,
    /// Mailbox status with `consistency=linearizable` (read index from the leader first).
    ReadLinearizable,
    /// 50% append, 25% store, 25% linearizable status read.
    Mixed,
}

/// One kind of request; the unit the report is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Append,
    Store,
    ReadLocal,
    ReadLinearizable,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Append,
        Operation::Store,
        Operation::ReadLocal,
        Operation::ReadLinearizable,
    ];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Append => "append",
            Operation::Store => "store",
            Operation::ReadLocal => "read-local",
            Operation::ReadLinearizable => "read-linearizable",
        }
    }

    /// Position in [`Operation::ALL`], for per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Weighted choice of operations. Invariant: at least one weight, every weight > 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Operation, u32)>,
}

impl Mix {
    /// The mix of a workload; percentages for `mixed`.
    pub fn of(workload: Workload) -> Mix {
        let weights = match workload {
            Workload::Append => vec![(Operation::Append, 100)],
            Workload::Store => vec![(Operation::Store, 100)],
            Workload::ReadLocal => vec![(Operation::ReadLocal, 100)],
            Workload::ReadLinearizable => vec![(Operation::ReadLinearizable, 100)],
            Workload::Mixed => vec![
                (Operation::Append, 50),
                (Operation::Store, 25),
                (Operation::ReadLinearizable, 25),
            ],
        };
        Mix { weights }
    }

    /// The operations and their weights, in a fixed order.
    pub fn weights(&self) -> &[(Operation, u32)] {
        &self.weights
    }

    pub fn total(&self) -> u32 {
        self.weights.iter().map(|(_, w)| w).sum()
    }

    /// The operation for a uniform draw `r` (any `u64`; reduced modulo the total weight).
    pub fn pick(&self, r: u64) -> Operation {
        let mut point = (r % self.total() as u64) as u32;
        for &(operation, weight) in &self.weights {
            if point < weight {
                return operation;
            }
            point -= weight;
        }
        unreachable!("point < total weight")
    }

    /// Whether the workers need messages in their INBOX before the clock starts.
    pub fn needs_messages(&self) -> bool {
        self.weights.iter().any(|(o, _)| *o != Operation::Append)
    }
}

/// splitmix64: a small, seedable generator for the mix draws (no cryptographic needs).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// An HTTP request to send, relative to a node's base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// `None`: GET; `Some(body)`: POST with a JSON body.
    pub body: Option<String>,
    pub path: String,
}

/// Who sends: identifies the worker's user and keeps its message GUIDs unique.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub run_id: u32,
    pub worker: u32,
}

impl Sender {
    pub fn user(self) -> String {
        format!("{}{}", Sender::user_prefix(self.run_id), self.worker)
    }

    /// What every user of run `run_id` starts with.
    pub fn user_prefix(run_id: u32) -> String {
        format!("bench-{run_id:08x}-")
    }

    /// 32 hex digits, unique per (run, worker, seq, i) for `i < 100` (batches are at most 100;
    /// `seq` 0 is the set-up append of [`SETUP_MESSAGES`]).
    pub fn guid(self, seq: u64, i: u64) -> String {
        format!("{:08x}{:08x}{:016x}", self.run_id, self.worker, seq * 100 + i)
    }

    pub fn create_inbox(self) -> RequestSpec {
        RequestSpec {
            body: Some(r#"{"name":"INBOX"}"#.into()),
            path: format!("/v1/users/{}/mailboxes", self.user()),
        }
    }

    /// An append of `count` messages of 4 KiB, GUIDs from request number `seq`.
    pub fn append(self, seq: u64, count: u64) -> RequestSpec {
        let messages: Vec<String> = (0..count)
            .map(|i| format!(r#"{{"guid":"{}","size":4096}}"#, self.guid(seq, i)))
            .collect();
        RequestSpec {
            body: Some(format!(r#"{{"messages":[{}]}}"#, messages.join(","))),
            path: format!("/v1/users/{}/mailboxes/INBOX/messages", self.user()),
        }
    }

    /// The request of operation `operation`, number `seq` (from 1) of this worker.
    pub fn request(self, operation: Operation, seq: u64, batch: u64) -> RequestSpec {
        let mailbox = format!("/v1/users/{}/mailboxes/INBOX", self.user());
        match operation {
            Operation::Append => self.append(seq, batch),
            Operation::Store => {
                // Walk the set-up UIDs; add the flag on even passes, remove it on odd ones.
                let uid = 1 + seq % SETUP_MESSAGES;
                let mode = if (seq / SETUP_MESSAGES).is_multiple_of(2) {
                    "add"
                } else {
                    "remove"
                };
                RequestSpec {
                    body: Some(format!(
                        r#"{{"uids":"{uid}","mode":"{mode}","flags":["{STORE_FLAG}"]}}"#
                    )),
                    path: format!("{mailbox}/store"),
                }
            }
            Operation::ReadLocal => RequestSpec {
                body: None,
                path: format!("{mailbox}?consistency=local"),
            },
            Operation::ReadLinearizable => RequestSpec {
                body: None,
                path: format!("{mailbox}?consistency=linearizable"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_draws_follow_the_documented_percentages() {
        let mix = Mix::of(Workload::Mixed);
        assert_eq!(mix.total(), 100);
        // Exact over one full cycle of the weight space.
        let mut counts = [0u32; 4];
        for r in 0..100 {
            counts[mix.pick(r).index()] += 1;
        }
        assert_eq!(counts, [50, 25, 0, 25]);
        // Close over random draws (fixed seed: deterministic).
        let mut rng = Rng(42);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[mix.pick(rng.next_u64()).index()] += 1;
        }
        assert!((49_000..51_000).contains(&counts[0]), "{counts:?}");
        assert!((24_000..26_000).contains(&counts[1]), "{counts:?}");
        assert_eq!(counts[2], 0);
        assert!((24_000..26_000).contains(&counts[3]), "{counts:?}");
    }

    #[test]
    fn single_workloads_always_pick_their_operation() {
        for (workload, operation) in [
            (Workload::Append, Operation::Append),
            (Workload::Store, Operation::Store),
            (Workload::ReadLocal, Operation::ReadLocal),
            (Workload::ReadLinearizable, Operation::ReadLinearizable),
        ] {
            let mix = Mix::of(workload);
            assert!((0..1000).all(|r| mix.pick(r * 7919) == operation));
            assert_eq!(mix.needs_messages(), operation != Operation::Append);
        }
        assert!(Mix::of(Workload::Mixed).needs_messages());
    }

    #[test]
    fn requests_are_well_formed_and_guids_unique() {
        let sender = Sender {
            run_id: 0xabc,
            worker: 7,
        };
        let append = sender.append(3, 2);
        assert_eq!(append.path, "/v1/users/bench-00000abc-7/mailboxes/INBOX/messages");
        let body: serde_json::Value = serde_json::from_str(append.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["messages"].as_array().unwrap().len(), 2);
        assert_eq!(body["messages"][1]["guid"], "00000abc00000007000000000000012d");
        let mut guids = std::collections::HashSet::new();
        for seq in 0..50 {
            for i in 0..100 {
                assert!(guids.insert(sender.guid(seq, i)));
            }
        }
        let store = sender.request(Operation::Store, 1, 1);
        let body: serde_json::Value = serde_json::from_str(store.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["uids"], "2");
        assert_eq!(body["mode"], "add");
        assert_eq!(body["flags"][0], r"\Flagged");
        let store = sender.request(Operation::Store, SETUP_MESSAGES + 5, 1);
        let body: serde_json::Value = serde_json::from_str(store.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            (body["uids"].as_str(), body["mode"].as_str()),
            (Some("6"), Some("remove"))
        );
        let read = sender.request(Operation::ReadLinearizable, 1, 1);
        assert_eq!(read.body, None);
        assert!(read.path.ends_with("/INBOX?consistency=linearizable"));
        assert!(sender
            .request(Operation::ReadLocal, 1, 1)
            .path
            .ends_with("?consistency=local"));
    }
}
