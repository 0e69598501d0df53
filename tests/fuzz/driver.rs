//! The stable fuzz driver: runs a target (`fn(&[u8])`, `targets/`) over its checked-in corpus,
//! then over mutations of it for a bounded time, and fails with the input written to a file.
//!
//! No coverage guidance (that is what the cargo-fuzz harnesses under `cargo-fuzz/` add on a
//! nightly-capable toolchain): the driver mutates the corpus seeds — bit and byte flips,
//! inserted, deleted and duplicated ranges, two inputs spliced, interesting integers and huge
//! length fields (bincode varints included) at random offsets, tokens of the formats — from the
//! workspace's one seeded generator (`tests/support/rng.rs`), so `DOVETAIL_SEED=<seed>` replays a
//! run input for input.
//!
//! What counts as a failure, each named in the panic message with the input's file under
//! `target/fuzz-failures/<target>/`:
//! - a panic, in the target's thread or in any other thread while it runs (tokio tasks);
//! - one allocation above `4 MiB + 8 × input length` made on the target's thread (an
//!   allocation sized by a length field that was not checked against the input);
//! - an execution running longer than the hang limit (20 s): the watchdog prints the input's
//!   file and aborts the process;
//! - a process abort (a failed allocation, a stack overflow): every input is copied into a
//!   memory-mapped `in-flight` file before it runs, a SIGABRT handler names that file, and the
//!   next run of the target saves it as a failure.
//!
//! Settings: `DOVETAIL_FUZZ_SECONDS` (mutation time per target, default 3), `DOVETAIL_SEED`,
//! `DOVETAIL_FUZZ_INPUT=<file>` (run that one input, to replay a failure).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::rng::{seed, Rng};

use super::targets::Target;

/// Mutation time per target when `DOVETAIL_FUZZ_SECONDS` is not set: what CI runs.
const DEFAULT_SECONDS: f64 = 3.0;
/// An execution running this long is a hang.
const HANG_LIMIT: Duration = Duration::from_secs(20);
/// Inputs are cut to this length.
const MAX_INPUT: usize = 1 << 20;
/// One allocation may be this large plus `ALLOCATION_PER_INPUT_BYTE` times the input length.
const ALLOCATION_BASE: usize = 4 << 20;
const ALLOCATION_PER_INPUT_BYTE: usize = 8;

// ---------------------------------------------------------------------------------------------
// Allocation tracking.

thread_local! {
    /// Whether allocations of this thread are tracked (the thread running a target).
    static TRACKED: Cell<bool> = const { Cell::new(false) };
    /// The largest single allocation of this thread since tracking started.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, recording the largest allocation of the thread that runs a target.
/// Install it with `#[global_allocator]` in the test binary.
pub struct TrackingAllocator;

fn note(size: usize) {
    // `try_with`: a thread being torn down has no thread-locals left; nothing to track then.
    let _ = TRACKED.try_with(|tracked| {
        if tracked.get() && !super::targets::setting_up() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call is passed on to `System` unchanged; the bookkeeping touches only
// const-initialized thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

// ---------------------------------------------------------------------------------------------
// Panics anywhere in the process while a target runs.

/// Panics seen since the process started, and the last one's message and place.
static PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            *lock(&LAST_PANIC) = format!("thread {:?}: {info}", thread.name().unwrap_or("<unnamed>"));
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The input in flight, for aborts and hangs.

/// The memory-mapped file every input is copied into before it runs: byte 0 is 1 while an
/// input runs, bytes 1..9 its length (LE), then the input. Written through the page cache, so
/// it survives the process's abort.
struct InFlight {
    path: PathBuf,
    map: memmap2::MmapMut,
}

impl InFlight {
    fn open(dir: &Path) -> InFlight {
        let path = dir.join("in-flight");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        file.set_len((9 + MAX_INPUT) as u64).unwrap();
        // SAFETY: the file is this process's (the driver runs one target at a time and the
        // file is per target); nothing truncates it while mapped.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
        InFlight { path, map }
    }

    /// The input a previous run died in the middle of, if any.
    fn left_over(&self) -> Option<Vec<u8>> {
        if self.map[0] != 1 {
            return None;
        }
        let len = u64::from_le_bytes(self.map[1..9].try_into().unwrap()) as usize;
        Some(self.map[9..9 + len.min(MAX_INPUT)].to_vec())
    }

    fn begin(&mut self, input: &[u8]) {
        self.map[1..9].copy_from_slice(&(input.len() as u64).to_le_bytes());
        self.map[9..9 + input.len()].copy_from_slice(input);
        self.map[0] = 1;
    }

    fn end(&mut self) {
        self.map[0] = 0;
    }
}

/// What the SIGABRT handler prints (set before the first input runs).
static ABORT_MESSAGE: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
static ABORT_MESSAGE_PTR: AtomicUsize = AtomicUsize::new(0);
static ABORT_MESSAGE_LEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_abort(_: libc::c_int) {
    let (ptr, len) = (
        ABORT_MESSAGE_PTR.load(Ordering::SeqCst),
        ABORT_MESSAGE_LEN.load(Ordering::SeqCst),
    );
    if ptr != 0 {
        // SAFETY: the message lives in a static that is never freed while set; write(2) is
        // async-signal-safe.
        unsafe { libc::write(2, ptr as *const libc::c_void, len) };
    }
}

fn set_abort_message(message: String) {
    let cell = ABORT_MESSAGE.get_or_init(|| Mutex::new(Vec::new()));
    let mut bytes = lock(cell);
    ABORT_MESSAGE_PTR.store(0, Ordering::SeqCst);
    *bytes = message.into_bytes();
    ABORT_MESSAGE_LEN.store(bytes.len(), Ordering::SeqCst);
    ABORT_MESSAGE_PTR.store(bytes.as_ptr() as usize, Ordering::SeqCst);
    static HANDLER: OnceLock<()> = OnceLock::new();
    HANDLER.get_or_init(|| {
        // SAFETY: installs a handler that only calls write(2); the default action (abort)
        // follows when it returns.
        unsafe { libc::signal(libc::SIGABRT, on_abort as *const () as libc::sighandler_t) };
    });
}

// ---------------------------------------------------------------------------------------------
// The run.

/// One target at a time per process: the panic counter and the abort message are global.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Where failing inputs of `target` are written.
pub fn failure_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("fuzz-failures")
        .join(target)
}

/// The checked-in corpus of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// The corpus of `target`, in name order.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut inputs: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
    inputs
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes a failing input; returns its path.
fn save_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = failure_dir(target);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:016x}.bin", fnv64(input)));
    fs::write(&path, input).unwrap();
    path
}

/// The state of one target's run, shared with the watchdog.
struct Watch {
    /// When the running input started (ms since `origin`), or 0 between inputs.
    started_ms: AtomicU64,
    origin: Instant,
    done: AtomicBool,
}

/// Runs `target` over its corpus, then over mutations for the configured time (or over the
/// one input `DOVETAIL_FUZZ_INPUT` names); panics naming the input on the first failure.
pub fn run(name: &str, target: Target) {
    let _one = lock(&ONE_AT_A_TIME);
    install_panic_hook();
    let dir = failure_dir(name);
    fs::create_dir_all(&dir).unwrap();
    let mut in_flight = InFlight::open(&dir);
    if let Some(input) = in_flight.left_over() {
        let path = save_failure(name, &input);
        in_flight.end();
        panic!(
            "fuzz {name}: the previous run died while running the input now in {} (an abort or a hang); \
             replay it with DOVETAIL_FUZZ_INPUT={}",
            path.display(),
            path.display()
        );
    }
    set_abort_message(format!(
        "\nfuzz {name}: the process aborted while running the input in {} (the next run saves it)\n",
        in_flight.path.display()
    ));
    let watch = Arc::new(Watch {
        started_ms: AtomicU64::new(0),
        origin: Instant::now(),
        done: AtomicBool::new(false),
    });
    let watchdog = {
        let watch = watch.clone();
        let (name, path) = (name.to_string(), in_flight.path.clone());
        std::thread::spawn(move || {
            while !watch.done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let started = watch.started_ms.load(Ordering::SeqCst);
                let now = watch.origin.elapsed().as_millis() as u64;
                if started != 0 && now.saturating_sub(started) > HANG_LIMIT.as_millis() as u64 {
                    eprintln!(
                        "fuzz {name}: one execution has run for over {HANG_LIMIT:?} (a hang); its input is in {} \
                         (the next run saves it)",
                        path.display()
                    );
                    std::process::abort();
                }
            }
        })
    };
    let mut runner = Runner {
        name,
        target,
        in_flight,
        watch: watch.clone(),
        executions: 0,
        tracking: true,
    };
    if let Ok(path) = std::env::var("DOVETAIL_FUZZ_INPUT") {
        let input = fs::read(&path).unwrap_or_else(|e| panic!("DOVETAIL_FUZZ_INPUT={path}: {e}"));
        runner.execute(&input, &format!("the input {path}"));
        eprintln!("fuzz {name}: {path} ran cleanly");
    } else {
        let corpus = corpus(name);
        // A warm-up pass, allocations not counted: one-time initializations (lazy statics of
        // the libraries) happen here, not in the first input that reaches them.
        runner.tracking = false;
        for (file, input) in &corpus {
            runner.execute(input, &format!("corpus file {file} (warm-up)"));
        }
        runner.tracking = true;
        for (file, input) in &corpus {
            runner.execute(input, &format!("corpus file {file}"));
        }
        let seconds: f64 = std::env::var("DOVETAIL_FUZZ_SECONDS")
            .ok()
            .map(|s| s.parse().expect("DOVETAIL_FUZZ_SECONDS is a number of seconds"))
            .unwrap_or(DEFAULT_SECONDS);
        let seed = seed(&format!("fuzz {name}"));
        let mut rng = Rng::new(seed);
        let pool: Vec<Vec<u8>> = corpus.into_iter().map(|(_, input)| input).collect();
        let started = Instant::now();
        let mut mutated = 0u64;
        while started.elapsed().as_secs_f64() < seconds {
            let input = mutate(&mut rng, &pool);
            runner.execute(&input, &format!("mutation {mutated} of seed {seed}"));
            mutated += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "fuzz {name}: {} corpus inputs, then {mutated} mutations in {elapsed:.1} s ({:.0}/s), seed {seed}",
            pool.len(),
            mutated as f64 / elapsed.max(1e-9)
        );
    }
    watch.done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
}

struct Runner<'a> {
    name: &'a str,
    target: Target,
    in_flight: InFlight,
    watch: Arc<Watch>,
    executions: u64,
    /// Whether allocations are checked (not in the warm-up pass).
    tracking: bool,
}

impl Runner<'_> {
    fn execute(&mut self, input: &[u8], what: &str) {
        self.in_flight.begin(input);
        let panics_before = PANICS.load(Ordering::SeqCst);
        let started = (self.watch.origin.elapsed().as_millis() as u64).max(1);
        self.watch.started_ms.store(started, Ordering::SeqCst);
        LARGEST.with(|l| l.set(0));
        TRACKED.with(|t| t.set(self.tracking));
        let target = self.target;
        let result = panic::catch_unwind(AssertUnwindSafe(|| target(input)));
        TRACKED.with(|t| t.set(false));
        self.watch.started_ms.store(0, Ordering::SeqCst);
        self.executions += 1;
        let largest = LARGEST.with(Cell::get);
        let bound = ALLOCATION_BASE + ALLOCATION_PER_INPUT_BYTE * input.len();
        let failure = if result.is_err() || PANICS.load(Ordering::SeqCst) != panics_before {
            Some(format!("panicked: {}", lock(&LAST_PANIC)))
        } else if largest > bound {
            Some(format!(
                "made one allocation of {largest} bytes for an input of {} bytes (bound {bound}): \
                 a size taken from the input without checking it against the input",
                input.len()
            ))
        } else {
            None
        };
        self.in_flight.end();
        if let Some(failure) = failure {
            let path = save_failure(self.name, input);
            panic!(
                "fuzz {}: {what} {failure}\n  input: {} ({} bytes); replay with DOVETAIL_FUZZ_INPUT={} cargo test \
                 --test fuzz_stable {}",
                self.name,
                path.display(),
                input.len(),
                path.display(),
                self.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Integers worth trying anywhere: boundaries of every width, and lengths no input holds.
const INTERESTING: [u64; 18] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

/// Tokens of the formats under test: JSON and query syntax, HTTP, IMAP and LMTP syntax (literals,
/// line ends, DATA's end), names the formats give meaning to.
const TOKENS: [&[u8]; 42] = [
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"4294967295",
    b"\\u0000",
    b"\\ud800",
    b"%2F",
    b"%00",
    b"%FF",
    b"&",
    b"=",
    b"?",
    b"/",
    b"..",
    b"*",
    b"1:*",
    b"INBOX",
    b"\\Seen",
    b"manifest",
    b"DVTLIDX\0",
    b"DVTLSNAP",
    b"DVTLEND\0",
    b"\r\n",
    b"\n",
    b"{4294967295}\r\n",
    b"{0}\r\n",
    b"{3+}\r\nabc",
    b"\r\nDONE\r\n",
    b" BODY[1.2.HEADER]<0.5>",
    b"\r\n.\r\n",
    b"\r\n..",
    b"<>",
];

/// One new input from the pool: 1 to 8 stacked mutations of one input, now and then spliced
/// with another, or (rarely) random bytes.
pub fn mutate(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    if rng.chance(0.02) {
        let len = rng.below(256) as usize;
        return (0..len).map(|_| rng.next_u64() as u8).collect();
    }
    let mut input = rng.pick(pool).clone();
    let rounds = if rng.chance(0.7) {
        1 + rng.below(2)
    } else {
        1 + rng.below(8)
    };
    for _ in 0..rounds {
        mutate_once(rng, pool, &mut input);
    }
    input.truncate(MAX_INPUT);
    input
}

fn mutate_once(rng: &mut Rng, pool: &[Vec<u8>], input: &mut Vec<u8>) {
    let len = input.len();
    let at = |rng: &mut Rng| rng.below(len as u64 + 1) as usize;
    match rng.below(12) {
        // One bit.
        0 if len > 0 => {
            let i = rng.below(len as u64) as usize;
            input[i] ^= 1 << rng.below(8);
        }
        // One byte, any value.
        1 if len > 0 => {
            let i = rng.below(len as u64) as usize;
            input[i] = rng.next_u64() as u8;
        }
        // Random bytes inserted.
        2 => {
            let i = at(rng);
            let n = 1 + rng.below(16) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            input.splice(i..i, bytes);
        }
        // A range deleted.
        3 if len > 0 => {
            let i = rng.below(len as u64) as usize;
            let n = 1 + rng.below((len - i).min(64) as u64) as usize;
            input.drain(i..i + n);
        }
        // A range duplicated elsewhere.
        4 if len > 0 => {
            let i = rng.below(len as u64) as usize;
            let n = 1 + rng.below((len - i).min(256) as u64) as usize;
            let range = input[i..i + n].to_vec();
            let j = at(rng);
            input.splice(j..j, range);
        }
        // Spliced with another input of the pool: a prefix of this, a suffix of that.
        5 => {
            let other = rng.pick(pool);
            let i = at(rng);
            let j = rng.below(other.len() as u64 + 1) as usize;
            input.truncate(i);
            input.extend_from_slice(&other[j..]);
        }
        // An interesting integer written over, little- or big-endian, of any width.
        6 | 7 => {
            let value = *rng.pick(&INTERESTING);
            let width = *rng.pick(&[1usize, 2, 4, 8]);
            let bytes = if rng.chance(0.8) {
                value.to_le_bytes()[..width].to_vec()
            } else {
                value.to_be_bytes()[8 - width..].to_vec()
            };
            overwrite(input, at(rng), &bytes);
        }
        // A huge length field: a bincode varint (253 = u64 follows, 252 = u32) or a fixed one.
        8 => {
            let value = *rng.pick(&[1u64 << 31, 1 << 32, 1 << 40, 1 << 48, u64::MAX / 2, u64::MAX]);
            let mut bytes = match rng.below(3) {
                0 => vec![253],
                1 => vec![252],
                _ => vec![],
            };
            if bytes == [252] {
                bytes.extend_from_slice(&(value as u32 | 0x8000_0000).to_le_bytes());
            } else {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            let i = at(rng);
            if rng.chance(0.5) {
                overwrite(input, i, &bytes);
            } else {
                input.splice(i..i, bytes);
            }
        }
        // A token of the formats inserted or written over.
        9 | 10 => {
            let token = *rng.pick(&TOKENS);
            let i = at(rng);
            if rng.chance(0.5) {
                overwrite(input, i, token);
            } else {
                input.splice(i..i, token.iter().copied());
            }
        }
        // A decimal number in text replaced by another (JSON values, query strings).
        _ => {
            let digits: Vec<usize> = (0..len).filter(|&i| input[i].is_ascii_digit()).collect();
            if digits.is_empty() {
                return;
            }
            let start = *rng.pick(&digits);
            let end = (start..len).find(|&i| !input[i].is_ascii_digit()).unwrap_or(len);
            let value = *rng.pick(&INTERESTING);
            let text = if rng.chance(0.2) {
                format!("-{value}")
            } else {
                value.to_string()
            };
            input.splice(start..end, text.into_bytes());
        }
    }
}

/// Writes `bytes` at `at`, extending the input when they run past its end.
fn overwrite(input: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let end = at + bytes.len();
    if end > input.len() {
        input.resize(end, 0);
    }
    input[at..end].copy_from_slice(bytes);
}
