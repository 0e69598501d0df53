//! What a bench worker sends: the workloads, the operation mix each one draws from, the HTTP
//! request of each operation, and the message bodies of deliveries. Pure: no I/O, so the mix,
//! the request shapes and the bodies are tested here.

use hyper::body::Bytes;
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
    /// Deliveries of one message of `--size` bytes with its body (`message/rfc822`), random
    /// bytes different in every request.
    Deliver,
    /// No cluster: files of `--size` bytes written and fsync'd one after another in `--dir`, the
    /// floor a delivery's MB/s is compared with.
    FsyncFloor,
}

/// One kind of request; the unit the report is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Append,
    Store,
    ReadLocal,
    ReadLinearizable,
    Deliver,
    WriteFsync,
}

impl Operation {
    pub const COUNT: usize = 6;
    pub const ALL: [Operation; Operation::COUNT] = [
        Operation::Append,
        Operation::Store,
        Operation::ReadLocal,
        Operation::ReadLinearizable,
        Operation::Deliver,
        Operation::WriteFsync,
    ];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Append => "append",
            Operation::Store => "store",
            Operation::ReadLocal => "read-local",
            Operation::ReadLinearizable => "read-linearizable",
            Operation::Deliver => "deliver",
            Operation::WriteFsync => "write-fsync",
        }
    }

    /// Whether a successful request of this operation stores messages (counted in the
    /// report's messages per second).
    pub fn carries_messages(self) -> bool {
        matches!(
            self,
            Operation::Append | Operation::Deliver | Operation::WriteFsync
        )
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
            Workload::Deliver => vec![(Operation::Deliver, 100)],
            Workload::FsyncFloor => vec![(Operation::WriteFsync, 100)],
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
        self.weights.iter().any(|(o, _)| {
            matches!(
                o,
                Operation::Store | Operation::ReadLocal | Operation::ReadLinearizable
            )
        })
    }

    /// Whether the workers deliver bodies (their groups need log encoding 3 first).
    pub fn delivers(&self) -> bool {
        self.weights.iter().any(|(o, _)| *o == Operation::Deliver)
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
    /// `Some(body)`: POST with a JSON body.
    pub body: Option<String>,
    /// `Some(message)`: POST with a `message/rfc822` body (a delivery). GET when neither is set.
    pub message: Option<Bytes>,
    pub path: String,
}

/// The media type of a delivery's body (the API's `message/rfc822`).
pub const MESSAGE_CONTENT_TYPE: &str = "message/rfc822";

/// The smallest `--size`: room for the header line that makes every body distinct.
pub const MESSAGE_BYTES_MIN: u64 = 64;

/// Random bytes a delivery's body is cut from, beyond the body's own size: each request starts
/// at another offset in it.
const POOL_SPAN_BYTES: usize = 1 << 20;

/// The bodies of deliveries: one buffer of random bytes generated once, so making a body costs
/// one copy. Every body starts with a header line naming (run, worker, request), so no two
/// bodies of a run are the same (a node stores identical bodies once), and continues from an
/// offset into the buffer that moves with the request number.
#[derive(Debug, Clone)]
pub struct MessagePool {
    size: usize,
    random: Bytes,
}

impl MessagePool {
    /// A pool for bodies of `size` bytes (at least [`MESSAGE_BYTES_MIN`]), its random bytes
    /// from `seed`.
    pub fn new(size: u64, seed: u64) -> MessagePool {
        assert!(
            size >= MESSAGE_BYTES_MIN,
            "bodies of at least {MESSAGE_BYTES_MIN} bytes"
        );
        let size = usize::try_from(size).expect("a body fits in memory");
        let mut rng = Rng(seed);
        let mut random = Vec::with_capacity(size + POOL_SPAN_BYTES + 8);
        while random.len() < size + POOL_SPAN_BYTES {
            random.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        MessagePool {
            size,
            random: Bytes::from(random),
        }
    }

    pub fn size(&self) -> u64 {
        self.size as u64
    }

    /// The body of request `seq` of `sender`: exactly `size` bytes.
    pub fn message(&self, sender: Sender, seq: u64) -> Bytes {
        let head = format!(
            "X-Dovetail-Bench: {:08x} {:08x} {seq:016x}\r\n",
            sender.run_id, sender.worker
        );
        let head = &head.as_bytes()[..head.len().min(self.size)];
        let rest = self.size - head.len();
        // An odd multiplier walks every offset of the span before repeating.
        let offset = (seq.wrapping_mul(0x9E37_79B9) % POOL_SPAN_BYTES as u64) as usize;
        let mut body = Vec::with_capacity(self.size);
        body.extend_from_slice(head);
        body.extend_from_slice(&self.random[offset..offset + rest]);
        debug_assert_eq!(body.len(), self.size);
        Bytes::from(body)
    }
}

/// A byte size as `--size` takes it: `4096`, `4k`, `100k`, `1m`, `1MiB` (k and m are 1,024
/// and 1,048,576 bytes; case does not matter).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: a size such as 4096, 4k, 100k or 1m"))?;
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?}: the unit is k, m or g (or none: bytes)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?}: too large"))
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
            message: None,
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
            message: None,
            path: format!("/v1/users/{}/mailboxes/INBOX/messages", self.user()),
        }
    }

    /// A delivery of one message, the body of request `seq` from `pool`, into the INBOX.
    pub fn deliver(self, seq: u64, pool: &MessagePool) -> RequestSpec {
        RequestSpec {
            body: None,
            message: Some(pool.message(self, seq)),
            path: format!("/v1/users/{}/mailboxes/INBOX/messages", self.user()),
        }
    }

    /// The request of operation `operation`, number `seq` (from 1) of this worker; deliveries
    /// cut their bodies from `pool`.
    pub fn request(
        self,
        operation: Operation,
        seq: u64,
        batch: u64,
        pool: Option<&MessagePool>,
    ) -> RequestSpec {
        let mailbox = format!("/v1/users/{}/mailboxes/INBOX", self.user());
        match operation {
            Operation::Append => self.append(seq, batch),
            Operation::Deliver => self.deliver(seq, pool.expect("a delivery workload has a pool")),
            Operation::WriteFsync => unreachable!("write-fsync sends no request"),
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
                    message: None,
                    path: format!("{mailbox}/store"),
                }
            }
            Operation::ReadLocal => RequestSpec {
                body: None,
                message: None,
                path: format!("{mailbox}?consistency=local"),
            },
            Operation::ReadLinearizable => RequestSpec {
                body: None,
                message: None,
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
        let mut counts = [0u32; Operation::COUNT];
        for r in 0..100 {
            counts[mix.pick(r).index()] += 1;
        }
        assert_eq!(counts, [50, 25, 0, 25, 0, 0]);
        // Close over random draws (fixed seed: deterministic).
        let mut rng = Rng(42);
        let mut counts = [0u32; Operation::COUNT];
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
            (Workload::Deliver, Operation::Deliver),
            (Workload::FsyncFloor, Operation::WriteFsync),
        ] {
            let mix = Mix::of(workload);
            assert!((0..1000).all(|r| mix.pick(r * 7919) == operation));
            assert_eq!(mix.needs_messages(), !operation.carries_messages());
            assert_eq!(mix.delivers(), operation == Operation::Deliver);
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
        let store = sender.request(Operation::Store, 1, 1, None);
        let body: serde_json::Value = serde_json::from_str(store.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["uids"], "2");
        assert_eq!(body["mode"], "add");
        assert_eq!(body["flags"][0], r"\Flagged");
        let store = sender.request(Operation::Store, SETUP_MESSAGES + 5, 1, None);
        let body: serde_json::Value = serde_json::from_str(store.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            (body["uids"].as_str(), body["mode"].as_str()),
            (Some("6"), Some("remove"))
        );
        let read = sender.request(Operation::ReadLinearizable, 1, 1, None);
        assert_eq!(read.body, None);
        assert!(read.path.ends_with("/INBOX?consistency=linearizable"));
        assert!(sender
            .request(Operation::ReadLocal, 1, 1, None)
            .path
            .ends_with("?consistency=local"));
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("100K"), Ok(102_400));
        assert_eq!(parse_size("1m"), Ok(1_048_576));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        for bad in ["", "k", "4x", "-1", "1.5m", "99999999999999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    /// Every body has exactly the size asked for and no two are equal, across requests and
    /// workers, including a size smaller than the span of offsets and one barely above the
    /// minimum; a delivery is a POST of the body and nothing else.
    #[test]
    fn delivery_bodies_have_the_size_and_are_all_distinct() {
        for size in [MESSAGE_BYTES_MIN, 4096, 1 << 20] {
            let pool = MessagePool::new(size, 7);
            assert_eq!(pool.size(), size);
            let mut seen = std::collections::HashSet::new();
            for worker in 0..3 {
                let sender = Sender { run_id: 1, worker };
                for seq in 0..200 {
                    let body = pool.message(sender, seq);
                    assert_eq!(body.len() as u64, size);
                    assert!(
                        seen.insert(body),
                        "size {size}: worker {worker} seq {seq} repeats"
                    );
                }
            }
        }
        let pool = MessagePool::new(4096, 7);
        let sender = Sender {
            run_id: 0xabc,
            worker: 2,
        };
        let deliver = sender.request(Operation::Deliver, 5, 1, Some(&pool));
        assert_eq!(
            deliver.path,
            "/v1/users/bench-00000abc-2/mailboxes/INBOX/messages"
        );
        assert_eq!(deliver.body, None);
        let message = deliver.message.unwrap();
        assert!(message.starts_with(b"X-Dovetail-Bench: 00000abc 00000002 0000000000000005\r\n"));
        // The random part differs between requests, not just the header line.
        let other = pool.message(sender, 6);
        assert_ne!(message[60..], other[60..]);
    }
}
