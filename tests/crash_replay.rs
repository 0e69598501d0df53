//! Crash safety of `GroupStateMachine`: a replica killed at any instant — while it applies,
//! flushes, checkpoints, recovers or installs a snapshot — and whose unsynced pages are then torn,
//! reopens, replays the same log and ends with `live/` files byte-identical to those of a replica
//! that never crashed (ARCHITECTURE.md §8, invariant 7).
//!
//! How it is provoked: the test binary re-executes itself as a child (the `child_process` test,
//! a no-op unless `DOVETAIL_CRASH_DIR` is set; libtest and nextest both accept `--exact <name>`).
//! The child opens a group directory and applies a seeded log of realistic transactions, calling
//! `flush` every F and `checkpoint` every C entries (F and C random per run), or installs a series
//! of ever newer snapshots. It reports each step on a pipe, first announcing how many steps remain.
//! The parent picks a random step, waits a random fraction of that step's measured duration after
//! the child reports it, and SIGKILLs the child — so kills land mid-apply, mid-flush,
//! mid-checkpoint, mid-install, during start-up and recovery, and after the end, whatever the
//! machine's speed. Up to three kills hit the same directory, so recovery itself is interrupted.
//! After each kill the parent tears random 4 KiB pages (zeroes, garbage, truncation, loss) of
//! every file the protocol never trusts: all of `live/` while `live/DIRTY` exists, `*.tmp` files,
//! `retired/` and an `incoming/` that is not the complete half of a switch. A clean `live/` and
//! `checkpoint.snap` are left alone: damaging them is media corruption, a different test.
//!
//! What is checked, per directory: `open` succeeds and leaves no `incoming/`, `retired/`, `*.tmp`
//! or marker behind; the recovered state equals an uncrashed replica at the same applied position
//! (digest, every index passes `verify`); it is never older than the last completed checkpoint or
//! snapshot install; no checkpoint is left ahead of it, and a state installed from a snapshot is
//! also the checkpoint (a follower has no log before the snapshot); replaying the whole log
//! applies exactly the entries after it, with the same outcomes as the uncrashed replica
//! (exactly-once sessions included); after `flush` the applied position, the digest and every
//! file in `live/` equal the uncrashed replica's, whose digest equals that of an in-memory replica
//! fed the same log.
//!
//! Every test prints its seed (`tests/support/rng.rs`);
//! `DOVETAIL_SEED=<seed> cargo test --test crash_replay <test>` replays the same log, F, C, kill
//! steps and damage (where exactly a kill lands within its step still depends on timing).

#[path = "support/rng.rs"]
mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dovetail::index::LogPosition;
use dovetail::state_machine::{GroupState, GroupStateMachine, MemoryFiles, Recovery, SnapshotReader};
use dovetail::txn::{Guid, NewMessage, Op, Outcome, StoreMode, Txn, UidSet};
use rng::{seed, Rng};

/// Entries in the log of the apply test, and directories crashed.
const APPLY_ENTRIES: usize = 500;
const APPLY_ITERATIONS: usize = 20;
/// Entries in the log of the snapshot-install test, snapshots per series, directories crashed.
const INSTALL_ENTRIES: usize = 300;
const INSTALL_SNAPSHOTS: usize = 5;
const INSTALL_ITERATIONS: usize = 12;
/// Most kills per directory before the final recovery.
const MAX_KILLS_PER_DIR: u64 = 3;
/// Page size of the simulated torn writes.
const PAGE: u64 = 4096;
/// Marks the child's progress lines on its stderr.
const PROGRESS: &str = "progress: ";

const ENV_DIR: &str = "DOVETAIL_CRASH_DIR";
const ENV_MODE: &str = "DOVETAIL_CRASH_MODE";
const ENV_LOG_SEED: &str = "DOVETAIL_CRASH_LOG_SEED";
const ENV_ENTRIES: &str = "DOVETAIL_CRASH_ENTRIES";
const ENV_FLUSH_EVERY: &str = "DOVETAIL_CRASH_FLUSH_EVERY";
const ENV_CHECKPOINT_EVERY: &str = "DOVETAIL_CRASH_CHECKPOINT_EVERY";
const ENV_SNAPSHOTS: &str = "DOVETAIL_CRASH_SNAPSHOTS";

#[test]
fn kill_during_apply_flush_checkpoint_and_recovery_then_replay_matches_uncrashed_replica() {
    let seed = seed("kill_during_apply_flush_checkpoint_and_recovery");
    let mut rng = Rng::new(seed);
    let log_seed = rng.next_u64();
    let entries = generate_log(log_seed, APPLY_ENTRIES);
    let reference = Reference::build(&entries);
    let work = tempfile::tempdir().expect("temp dir");
    let mut stats = Stats::default();
    for iteration in 0..APPLY_ITERATIONS {
        let dir = work.path().join(format!("iteration-{iteration}"));
        let group = dir.join("group");
        let mut bounds = Bounds::new(0, entries.len() as u64);
        let mut finished = false;
        for round in 0..rng.range(1, MAX_KILLS_PER_DIR) {
            // Flushes cost an fsync per changed file: F stays large enough to keep runs short.
            let flush_every = rng.range(12, 64);
            let checkpoint_every = rng.range(30, 200);
            let envs = [
                (ENV_MODE, "apply".to_string()),
                (ENV_LOG_SEED, log_seed.to_string()),
                (ENV_ENTRIES, entries.len().to_string()),
                (ENV_FLUSH_EVERY, flush_every.to_string()),
                (ENV_CHECKPOINT_EVERY, checkpoint_every.to_string()),
            ];
            // The first child of a test runs to the end: it proves that re-execution works.
            let kill = (iteration > 0).then(|| KillPlan::draw(&mut rng));
            let run = run_child(&dir, &group, round, &envs, kill, &mut stats);
            bounds.lowest = bounds.lowest.max(run.last_checkpoint.unwrap_or(0));
            finished = run.finished;
            stats.torn_files += tear(&group, &mut rng);
        }
        let context = format!("seed {seed}, iteration {iteration}");
        let recovered = check_recovery(&group, &reference, &bounds, finished, &context);
        stats.recoveries.push(recovered);
    }
    stats.report("apply");
    assert!(
        stats.interrupted > 0,
        "no kill interrupted a child: the test proved nothing (seed {seed})"
    );
}

#[test]
fn kill_during_snapshot_install_recovers_old_or_new_state_then_replay_converges() {
    let seed = seed("kill_during_snapshot_install");
    let mut rng = Rng::new(seed ^ 0x5eed_1057_a11d_0000);
    let entries = generate_log(rng.next_u64(), INSTALL_ENTRIES);
    let reference = Reference::build(&entries);
    let work = tempfile::tempdir().expect("temp dir");
    let mut stats = Stats::default();
    for iteration in 0..INSTALL_ITERATIONS {
        let dir = work.path().join(format!("iteration-{iteration}"));
        let group = dir.join("group");
        // The old state: a clean replica at `old`, with a checkpoint at or before it, or none.
        let old = rng.below(60) as usize;
        let checkpoint_at = rng.chance(0.50).then(|| rng.below(old as u64 + 1) as usize);
        prepare_old_state(&group, &entries, old, checkpoint_at);
        // A follower that keeps falling behind installs ever newer snapshots of the same log.
        let mut positions: BTreeSet<usize> = BTreeSet::new();
        while positions.len() < INSTALL_SNAPSHOTS {
            positions.insert(rng.range(old as u64 + 1, entries.len() as u64) as usize);
        }
        let snapshots = export_snapshots(&entries, &positions, &dir);
        let mut bounds = Bounds::new(old as u64, old as u64);
        let mut allowed: BTreeSet<u64> = positions.iter().map(|&p| p as u64).collect();
        allowed.insert(old as u64);
        bounds.allowed = Some(allowed);
        bounds.installed_above = Some(old as u64);
        let mut finished = false;
        for round in 0..rng.range(1, MAX_KILLS_PER_DIR) {
            let envs = [
                (ENV_MODE, "install".to_string()),
                (ENV_SNAPSHOTS, snapshots.clone()),
            ];
            let kill = (iteration > 0).then(|| KillPlan::draw(&mut rng));
            let run = run_child(&dir, &group, round, &envs, kill, &mut stats);
            bounds.lowest = bounds.lowest.max(run.last_installed.unwrap_or(0));
            let newest = run.installing.or(run.last_installed).unwrap_or(0);
            bounds.highest = bounds.highest.max(newest);
            finished = run.finished;
            stats.torn_files += tear(&group, &mut rng);
        }
        let context = format!("seed {seed}, iteration {iteration}, old state at {old}");
        let recovered = check_recovery(&group, &reference, &bounds, finished, &context);
        stats.recoveries.push(recovered);
    }
    stats.report("install");
    assert!(
        stats.interrupted > 0,
        "no kill interrupted a child: the test proved nothing (seed {seed})"
    );
}

/// Regression: a switch of `incoming/` into `live/` interrupted after its renames, before its
/// `COMPLETE` marker was removed, left a group that `open` refused ("unexpected file COMPLETE").
/// Both states the kill can leave are built by hand: `live/` already retired with `incoming/`
/// complete, and `live/` switched in with the marker still inside.
#[test]
fn open_finishes_a_switch_interrupted_before_its_marker_is_removed() {
    let entries = generate_log(7, 120);
    let expected = in_memory_replica(&entries);
    for state in [
        "live retired, incoming complete",
        "live switched in, marker inside",
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let group = dir.path().join("group");
        prepare_old_state(&group, &entries, entries.len(), Some(entries.len()));
        let (live, incoming) = (group.join("live"), group.join("incoming"));
        if state.starts_with("live retired") {
            fs::rename(&live, &incoming).expect("retiring live/");
            File::create(incoming.join("COMPLETE")).expect("marker");
        } else {
            File::create(live.join("COMPLETE")).expect("marker");
        }
        let machine = GroupStateMachine::open(&group).unwrap_or_else(|e| panic!("{state}: open: {e}"));
        assert_eq!(machine.applied(), expected.applied(), "{state}: applied");
        assert_eq!(machine.state().digest(), expected.digest(), "{state}: digest");
        assert!(!live.join("COMPLETE").exists(), "{state}: marker left in live/");
        assert!(!incoming.exists(), "{state}: incoming/ left");
    }
}

/// The child side of both tests; a no-op in an ordinary test run.
#[test]
fn child_process() {
    let Some(group) = env::var_os(ENV_DIR) else {
        return;
    };
    note("open-start");
    let mut machine = GroupStateMachine::open(Path::new(&group)).expect("child: open");
    note(&format!("opened {}", applied_index(machine.applied())));
    match env_var(ENV_MODE).as_str() {
        "apply" => child_apply(&mut machine),
        "install" => child_install(&mut machine),
        other => panic!("unknown {ENV_MODE} {other:?}"),
    }
    note("done");
}

fn child_apply(machine: &mut GroupStateMachine) {
    let log_seed: u64 = env_var(ENV_LOG_SEED).parse().expect("log seed");
    let count: usize = env_var(ENV_ENTRIES).parse().expect("entry count");
    let flush_every: usize = env_var(ENV_FLUSH_EVERY).parse().expect("flush interval");
    let checkpoint_every: usize = env_var(ENV_CHECKPOINT_EVERY)
        .parse()
        .expect("checkpoint interval");
    let entries = generate_log(log_seed, count);
    let start = applied_index(machine.applied()) as usize;
    let ahead = start + 1..=count;
    let steps = 2 * ahead.clone().filter(|n| n % flush_every == 0).count()
        + 2 * ahead.filter(|n| n % checkpoint_every == 0).count()
        + 3;
    note(&format!("plan {steps}"));
    for (i, txn) in entries.iter().enumerate().skip(start) {
        machine.apply(position(i), txn).expect("child: apply");
        if (i + 1) % flush_every == 0 {
            note("flush-start");
            machine.flush().expect("child: flush");
            note("flush-end");
        }
        if (i + 1) % checkpoint_every == 0 {
            note("checkpoint-start");
            let info = machine.checkpoint().expect("child: checkpoint");
            note(&format!("checkpoint {}", applied_index(info.applied)));
        }
    }
    note("flush-start");
    machine.flush().expect("child: final flush");
    note("flush-end");
}

fn child_install(machine: &mut GroupStateMachine) {
    let applied = applied_index(machine.applied());
    let list = env_var(ENV_SNAPSHOTS);
    // A follower only ever installs a snapshot newer than what it has.
    let newer: Vec<(u64, &str)> = list
        .split(';')
        .map(|spec| {
            let (index, path) = spec.split_once('=').expect("index=path");
            (index.parse().expect("snapshot index"), path)
        })
        .filter(|(index, _)| *index > applied)
        .collect();
    note(&format!("plan {}", 2 * newer.len() + 1));
    for (index, path) in newer {
        note(&format!("install-start {index}"));
        let file = File::open(path).expect("child: opening a snapshot");
        let installed = machine
            .install_snapshot(BufReader::new(file))
            .expect("child: install_snapshot");
        assert_eq!(applied_index(installed), index, "installed position");
        note(&format!("installed {index}"));
    }
}

/// Reports a step to the parent: one `write` of a short line to a pipe, so it is atomic and
/// survives the child's death.
fn note(step: &str) {
    std::io::stderr()
        .write_all(format!("{PROGRESS}{step}\n").as_bytes())
        .expect("reporting progress");
}

/// When the parent kills a child; drawn before the child starts, so a seed replays it.
#[derive(Debug, Clone, Copy)]
struct KillPlan {
    /// Kill during start-up or recovery (before the child announces its steps).
    early: bool,
    /// After which step, as a fraction of the steps the child announces.
    step: f64,
    /// How long after the step's line arrives, as a multiple (below 1.5) of that step's duration.
    stretch: f64,
}

impl KillPlan {
    fn draw(rng: &mut Rng) -> KillPlan {
        KillPlan {
            early: rng.chance(0.15),
            step: rng.unit(),
            // A quarter land just after the line, where the protocol changes state (the first
            // apply after a flush marks `live/` dirty).
            stretch: if rng.chance(0.25) { 0.05 } else { 1.5 } * rng.unit(),
        }
    }
}

/// What the parent learned from one child run.
#[derive(Debug, Default)]
struct ChildRun {
    /// The child exited by itself, successfully.
    finished: bool,
    /// The step the child was in when the kill landed (`finished` if it had exited).
    phase: &'static str,
    last_checkpoint: Option<u64>,
    last_installed: Option<u64>,
    /// A snapshot install started and not completed.
    installing: Option<u64>,
}

/// Runs a child on `group`, killing it as `kill` says; reads its progress until it is gone.
fn run_child(
    dir: &Path,
    group: &Path,
    round: u64,
    envs: &[(&str, String)],
    kill: Option<KillPlan>,
    stats: &mut Stats,
) -> ChildRun {
    fs::create_dir_all(dir).expect("iteration dir");
    let log_path = dir.join(format!("child-{round}.log"));
    let exe = env::current_exe().expect("path of the test binary");
    let spawned = Instant::now();
    let mut child = Command::new(exe)
        .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env(ENV_DIR, group)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(File::create(&log_path).expect("child log"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-executing the test binary as a child");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut steps: Vec<String> = Vec::new();
    let mut other_output = String::new();
    let mut read_line = |steps: &mut Vec<String>| -> bool {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("reading the child's stderr") == 0 {
            return false;
        }
        match line.strip_prefix(PROGRESS) {
            Some(step) if line.ends_with('\n') => steps.push(step.trim_end().to_string()),
            _ => other_output.push_str(&line),
        }
        true
    };
    // Kill after the `target`-th step line (0: the spawn), waiting a fraction of how long the
    // step that line starts took last time. Early kills target start-up or `open`; the others a
    // step picked once the child announces how many it will take.
    let mut target = kill.filter(|k| k.early).map(|k| usize::from(k.step >= 0.5));
    let mut last_step_at = spawned;
    let mut alive = true;
    while alive {
        if target.is_some_and(|t| steps.len() >= t) {
            let started = steps.last().map_or("spawn", |s| step_kind(s));
            let duration = stats.step_durations.get(started).copied().unwrap_or_default();
            std::thread::sleep(duration.mul_f64(kill.expect("a target implies a plan").stretch));
            // The child may have exited already; then there is nothing to kill.
            let _ = child.kill();
            break;
        }
        let before = steps.len();
        alive = read_line(&mut steps);
        if steps.len() > before {
            let now = Instant::now();
            let ended = if before == 0 {
                "spawn"
            } else {
                step_kind(&steps[before - 1])
            };
            stats.step_durations.insert(ended.to_string(), now - last_step_at);
            last_step_at = now;
            if let (Some(plan), Some(announced)) = (kill, steps.last().and_then(|s| s.strip_prefix("plan ")))
            {
                let announced: usize = announced.parse().expect("plan");
                // A step before `done`: runs left to finish cover the end.
                let pick = (announced as f64 * plan.step) as usize;
                target = target.or(Some(steps.len() + pick));
            }
        }
    }
    while read_line(&mut steps) {}
    let status = child.wait().expect("waiting for the child");
    let log = || {
        format!(
            "{other_output}{}",
            fs::read_to_string(&log_path).unwrap_or_default()
        )
    };
    let killed = status.signal() == Some(SIGKILL);
    assert!(
        killed || status.success(),
        "child failed ({status}); its output:\n{}",
        log()
    );
    let mut run = ChildRun {
        finished: !killed,
        phase: "starting",
        ..ChildRun::default()
    };
    for line in &steps {
        let step = step_kind(line);
        let value = line.split_once(' ').and_then(|(_, v)| v.parse::<u64>().ok());
        run.phase = match step {
            "open-start" => "recovering",
            "opened" | "plan" => "opened",
            "flush-end" | "checkpoint" => "applying",
            "flush-start" => "flushing",
            "checkpoint-start" => "checkpointing",
            "install-start" => "installing",
            "installed" => "between installs",
            "done" => "exiting",
            other => panic!("unexpected progress line {other:?}"),
        };
        match step {
            "checkpoint" => run.last_checkpoint = value,
            "install-start" => run.installing = value,
            "installed" => {
                run.last_installed = value;
                run.installing = None;
            }
            _ => {}
        }
    }
    if run.finished {
        assert_eq!(
            run.phase,
            "exiting",
            "the child exited without finishing: was `child_process` run? Its output:\n{}",
            log()
        );
        run.phase = "finished";
    }
    stats.record(&run);
    run
}

/// A progress line's first word: the step it starts.
fn step_kind(line: &str) -> &str {
    line.split(' ').next().unwrap_or(line)
}

/// The signal number of SIGKILL (without a libc dependency).
const SIGKILL: i32 = 9;

/// Simulates the torn page writes of a power loss in everything the recovery protocol never
/// trusts. Returns how many files were damaged.
fn tear(group: &Path, rng: &mut Rng) -> usize {
    let live = group.join("live");
    let incoming = group.join("incoming");
    let mut untrusted = Vec::new();
    if live.join("DIRTY").exists() {
        untrusted.extend(files_in(&live));
    }
    // `incoming/` is trusted only as the complete half of an interrupted switch.
    if incoming.exists() && (live.exists() || !incoming.join("COMPLETE").exists()) {
        untrusted.extend(files_in(&incoming));
    }
    untrusted.extend(files_in(&group.join("retired")));
    untrusted.extend(
        [group.join("checkpoint.snap.tmp"), live.join("manifest.tmp")]
            .into_iter()
            .filter(|p| p.exists()),
    );
    untrusted.sort();
    untrusted.dedup();
    // Markers are synced before anything depends on them; only their existence matters.
    untrusted.retain(|p| !p.ends_with("DIRTY") && !p.ends_with("COMPLETE"));
    let mut damaged = 0;
    for path in untrusted {
        if rng.chance(0.60) {
            damage(&path, rng);
            damaged += 1;
        }
    }
    damaged
}

fn damage(path: &Path, rng: &mut Rng) {
    let len = fs::metadata(path).expect("metadata").len();
    let pages = len.div_ceil(PAGE);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("opening to damage");
    match rng.below(10) {
        // A file created since the last sync is lost.
        0 => fs::remove_file(path).expect("removing"),
        // A size change was not synced.
        1 | 2 if pages > 0 => file.set_len(rng.below(pages) * PAGE).expect("truncating"),
        _ => {
            for _ in 0..rng.range(1, 3) {
                let page = rng.below(pages.max(1));
                let page_len = (len.saturating_sub(page * PAGE)).clamp(1, PAGE) as usize;
                let bytes: Vec<u8> = if rng.chance(0.50) {
                    vec![0; page_len]
                } else {
                    (0..page_len).map(|_| rng.next_u64() as u8).collect()
                };
                file.write_at(&bytes, page * PAGE).expect("tearing a page");
            }
        }
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.expect("listing").path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// What the recovered state may be.
struct Bounds {
    /// Never older than this (a completed checkpoint or install, or the old state).
    lowest: u64,
    /// Never newer than this.
    highest: u64,
    /// If set, the applied index is one of these.
    allowed: Option<BTreeSet<u64>>,
    /// If set, a state newer than this came from a snapshot, and the checkpoint must be that
    /// snapshot: a follower has no log before it, so recovery must never need that log.
    installed_above: Option<u64>,
}

impl Bounds {
    fn new(lowest: u64, highest: u64) -> Bounds {
        Bounds {
            lowest,
            highest,
            allowed: None,
            installed_above: None,
        }
    }
}

/// Reopens a crashed group, checks what it recovered, replays the whole log and compares the
/// result with the uncrashed reference. Returns what `open` did, for the statistics.
fn check_recovery(
    group: &Path,
    reference: &Reference,
    bounds: &Bounds,
    finished: bool,
    context: &str,
) -> String {
    let mut machine =
        GroupStateMachine::open(group).unwrap_or_else(|e| panic!("{context}: open after the crash: {e}"));
    let recovery = machine.recovery().clone();
    let context = format!("{context}, recovery {recovery:?}");
    for leftover in [
        "incoming",
        "retired",
        "checkpoint.snap.tmp",
        "live/DIRTY",
        "live/COMPLETE",
        "live/manifest.tmp",
    ] {
        assert!(
            !group.join(leftover).exists(),
            "{context}: {leftover} left after open"
        );
    }
    let applied = applied_index(machine.applied());
    assert!(
        (bounds.lowest..=bounds.highest).contains(&applied),
        "{context}: recovered to {applied}, outside {}..={}",
        bounds.lowest,
        bounds.highest
    );
    if let Some(allowed) = &bounds.allowed {
        assert!(
            allowed.contains(&applied),
            "{context}: recovered to {applied}, not one of {allowed:?}"
        );
    }
    if finished {
        assert_eq!(
            recovery,
            Recovery::Clean,
            "{context}: a finished child left an unclean group"
        );
    }
    let checkpoint = machine.checkpoint_path().map(|path| {
        let file = BufReader::new(File::open(&path).expect("opening the checkpoint"));
        let reader = SnapshotReader::new(file).unwrap_or_else(|e| panic!("{context}: checkpoint: {e}"));
        applied_index(reader.header().applied)
    });
    // `open` restores a checkpoint newer than `live/`, so none is left ahead of it.
    assert!(
        checkpoint.is_none_or(|c| c <= applied),
        "{context}: checkpoint at {checkpoint:?} is ahead of the recovered {applied}"
    );
    if bounds.installed_above.is_some_and(|old| applied > old) {
        assert_eq!(
            checkpoint,
            Some(applied),
            "{context}: live/ holds the snapshot at {applied} but the checkpoint does not"
        );
    }
    let expected = in_memory_replica(&reference.entries[..applied as usize]);
    assert_eq!(
        machine.applied(),
        expected.applied(),
        "{context}: applied position"
    );
    assert_eq!(
        machine.state().digest(),
        expected.digest(),
        "{context}: the recovered state differs from an uncrashed replica at {applied}"
    );
    verify_all(machine.state(), &context);
    for (i, txn) in reference.entries.iter().enumerate() {
        let outcome = machine
            .apply(position(i), txn)
            .unwrap_or_else(|e| panic!("{context}: replaying entry {}: {e}", i + 1));
        match outcome {
            None => assert!((i as u64) < applied, "{context}: entry {} skipped", i + 1),
            Some(outcome) => {
                assert!((i as u64) >= applied, "{context}: entry {} applied twice", i + 1);
                assert_eq!(
                    outcome,
                    reference.outcomes[i],
                    "{context}: outcome of entry {}",
                    i + 1
                );
            }
        }
    }
    machine
        .flush()
        .unwrap_or_else(|e| panic!("{context}: flush: {e}"));
    assert_eq!(
        machine.applied(),
        reference.applied,
        "{context}: final applied position"
    );
    assert_eq!(
        machine.state().digest(),
        reference.digest,
        "{context}: final digest"
    );
    verify_all(machine.state(), &context);
    drop(machine);
    compare_files(&live_files(group), &reference.files, &context);
    match recovery {
        Recovery::Fresh => "fresh".into(),
        Recovery::Clean => "clean".into(),
        Recovery::Restored { reason, .. } => format!("restored ({reason})"),
    }
}

fn verify_all<F: dovetail::state_machine::MailboxFiles>(state: &GroupState<F>, context: &str) {
    for (guid, index) in state.mailboxes() {
        index
            .verify()
            .unwrap_or_else(|e| panic!("{context}: mailbox {guid:02x?} fails verify: {e}"));
    }
}

fn live_files(group: &Path) -> BTreeMap<String, Vec<u8>> {
    files_in(&group.join("live"))
        .into_iter()
        .map(|path| {
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            (name, fs::read(&path).expect("reading a live file"))
        })
        .collect()
}

fn compare_files(actual: &BTreeMap<String, Vec<u8>>, expected: &BTreeMap<String, Vec<u8>>, context: &str) {
    let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(actual), names(expected), "{context}: files in live/");
    for (name, bytes) in actual {
        let want = &expected[name];
        if bytes != want {
            let offset = bytes.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{context}: live/{name} differs from the uncrashed replica's: {} vs {} bytes, \
                 first difference at {offset:?}",
                bytes.len(),
                want.len()
            );
        }
    }
}

/// A replica that never crashed, on disk, checked against one in memory.
struct Reference {
    entries: Vec<Txn>,
    outcomes: Vec<Outcome>,
    applied: Option<LogPosition>,
    digest: u64,
    files: BTreeMap<String, Vec<u8>>,
}

impl Reference {
    fn build(entries: &[Txn]) -> Reference {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut machine = GroupStateMachine::open(dir.path()).expect("reference: open");
        let outcomes: Vec<Outcome> = entries
            .iter()
            .enumerate()
            .map(|(i, txn)| {
                machine
                    .apply(position(i), txn)
                    .expect("reference: apply")
                    .expect("reference: a fresh entry is applied")
            })
            .collect();
        machine.flush().expect("reference: flush");
        verify_all(machine.state(), "reference");
        let applied = machine.applied();
        let digest = machine.state().digest();
        drop(machine);
        let mut memory = GroupState::in_memory();
        for (i, txn) in entries.iter().enumerate() {
            let outcome = memory.apply(position(i), txn).expect("in memory: apply");
            assert_eq!(
                outcome.as_ref(),
                Some(&outcomes[i]),
                "in-memory outcome of entry {}",
                i + 1
            );
        }
        assert_eq!(memory.digest(), digest, "on-disk and in-memory replicas differ");
        assert!(
            outcomes.iter().filter(|o| !o.is_rejected()).count() > entries.len() / 2,
            "the generated log is mostly rejected: it would not exercise much"
        );
        Reference {
            entries: entries.to_vec(),
            outcomes,
            applied,
            digest,
            files: live_files(dir.path()),
        }
    }
}

fn in_memory_replica(entries: &[Txn]) -> GroupState<MemoryFiles> {
    let mut state = GroupState::in_memory();
    for (i, txn) in entries.iter().enumerate() {
        state.apply(position(i), txn).expect("in memory: apply");
    }
    state
}

/// Leaves a clean group at `old` entries, with a checkpoint at `checkpoint_at` if given.
fn prepare_old_state(group: &Path, entries: &[Txn], old: usize, checkpoint_at: Option<usize>) {
    let mut machine = GroupStateMachine::open(group).expect("old state: open");
    for (i, txn) in entries[..old].iter().enumerate() {
        if checkpoint_at == Some(i) {
            machine.checkpoint().expect("old state: checkpoint");
        }
        machine.apply(position(i), txn).expect("old state: apply");
    }
    if checkpoint_at == Some(old) {
        machine.checkpoint().expect("old state: checkpoint");
    }
    machine.flush().expect("old state: flush");
}

/// Writes snapshots of the log's prefixes at `positions` into `dir`; returns them as the child's
/// `index=path;...` list.
fn export_snapshots(entries: &[Txn], positions: &BTreeSet<usize>, dir: &Path) -> String {
    fs::create_dir_all(dir).expect("iteration dir");
    let mut state = GroupState::in_memory();
    let mut specs = Vec::new();
    for (i, txn) in entries.iter().enumerate() {
        state.apply(position(i), txn).expect("in memory: apply");
        if positions.contains(&(i + 1)) {
            let path = dir.join(format!("snapshot-{}", i + 1));
            let file = std::io::BufWriter::new(File::create(&path).expect("snapshot file"));
            state.export_snapshot(file).expect("exporting a snapshot");
            specs.push(format!("{}={}", i + 1, path.display()));
        }
    }
    specs.join(";")
}

/// Where each kill landed and what recovery did, printed at the end of a test.
#[derive(Default)]
struct Stats {
    phases: BTreeMap<&'static str, usize>,
    interrupted: usize,
    torn_files: usize,
    recoveries: Vec<String>,
    /// How long the step started by each kind of progress line (or by the spawn) last took.
    step_durations: BTreeMap<String, Duration>,
}

impl Stats {
    fn record(&mut self, run: &ChildRun) {
        *self.phases.entry(run.phase).or_default() += 1;
        if !run.finished && run.phase != "exiting" {
            self.interrupted += 1;
        }
    }

    fn report(&self, test: &str) {
        let mut recoveries: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.recoveries {
            *recoveries.entry(r).or_default() += 1;
        }
        println!(
            "{test}: kills landed {:?}; {} files torn; recoveries {recoveries:?}",
            self.phases, self.torn_files
        );
    }
}

/// Entry `i` (0-based) of the log: terms change every 500 entries, indexes start at 1.
fn position(i: usize) -> LogPosition {
    LogPosition::new(1 + i as u64 / 500, i as u64 + 1)
}

fn applied_index(applied: Option<LogPosition>) -> u64 {
    applied.map_or(0, |p| p.index)
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("child: {name} is not set"))
}

const USERS: [&str; 3] = ["alice", "bob", "carol@example.org"];
const MAILBOX_NAMES: [&str; 12] = [
    "INBOX",
    "Sent",
    "Drafts",
    "Trash",
    "Archive",
    "Archive/2023",
    "Archive/2024",
    "Archive/2024/Q1",
    "Lists",
    "Lists/rust",
    "Lists/rust/announce",
    "Projects/Dovetail",
];
const RENAME_TARGETS: [&str; 6] = [
    "Old",
    "Archive/Old",
    "Archive/2024/Moved",
    "Lists/rust-lang",
    "Sent",
    "Attic/2022",
];
const FLAGS: [&str; 10] = [
    "\\Seen",
    "\\Answered",
    "\\Flagged",
    "\\Deleted",
    "\\Draft",
    "$Junk",
    "$NotJunk",
    "$Forwarded",
    "work",
    "personal",
];
const CLIENTS: u64 = 4;

/// The generator's belief about a mailbox. Approximate by design (it does not track rejections
/// exactly): the replicas decide what happens; the belief only aims most ops at real mailboxes
/// and messages.
#[derive(Debug)]
struct MailboxBelief {
    uid_next: u32,
    modseq: u64,
    messages: BTreeMap<u32, Guid>,
}

/// A deterministic log of realistic transactions: see `generate_log`.
struct LogGenerator {
    rng: Rng,
    mailboxes: BTreeMap<(String, String), MailboxBelief>,
    guids_issued: u64,
    /// Per client: the last request_seq and transaction.
    clients: Vec<(u64, Option<Txn>)>,
}

/// `count` transactions from `seed`: creates (nested names, a few users), appends of 1..50
/// messages with flags and keywords, stores (add/remove/replace, sometimes UNCHANGEDSINCE),
/// expunges (sometimes guarded by GUIDs), renames and deletes; about 4% retries of a client's
/// last request, 1% stale requests, 3% invalid ops and some ops on missing mailboxes.
fn generate_log(seed: u64, count: usize) -> Vec<Txn> {
    let mut generator = LogGenerator {
        rng: Rng::new(seed),
        mailboxes: BTreeMap::new(),
        guids_issued: 0,
        clients: vec![(0, None); CLIENTS as usize],
    };
    (0..count).map(|i| generator.next_txn(i)).collect()
}

impl LogGenerator {
    fn next_txn(&mut self, i: usize) -> Txn {
        let client = self.rng.below(CLIENTS) as usize;
        let client_id = format!("client-{client}");
        let roll = self.rng.below(100);
        if let Some(last) = self.clients[client].1.clone() {
            if roll < 4 {
                return last;
            }
            if roll < 5 && last.request_seq > 1 {
                return Txn {
                    request_seq: last.request_seq - 1,
                    ..last
                };
            }
        }
        let op = self.next_op(i);
        let (seq, last) = &mut self.clients[client];
        *seq += 1;
        let txn = Txn {
            client_id,
            request_seq: *seq,
            op,
        };
        *last = Some(txn.clone());
        txn
    }

    fn next_op(&mut self, i: usize) -> Op {
        if self.rng.chance(0.03) {
            return self.invalid_op(i);
        }
        if self.mailboxes.is_empty() || self.rng.chance(0.08) {
            return self.create(i);
        }
        match self.rng.below(100) {
            0..40 => self.append(i),
            40..68 => self.store(),
            68..84 => self.expunge(),
            84..90 => self.rename(),
            90..96 => self.delete(),
            _ => Op::Append {
                user: self.rng.pick(&USERS).to_string(),
                mailbox: "Nonexistent/Box".into(),
                messages: vec![self.message(i, 0)],
            },
        }
    }

    fn fresh_guid(&mut self) -> Guid {
        self.guids_issued += 1;
        let mut guid = [0u8; 16];
        guid[..8].copy_from_slice(&self.guids_issued.to_le_bytes());
        guid[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        guid
    }

    fn pick_mailbox(&mut self, except_inbox: bool) -> Option<(String, String)> {
        let candidates: Vec<&(String, String)> = self
            .mailboxes
            .keys()
            .filter(|(_, name)| !except_inbox || name != "INBOX")
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some((*self.rng.pick(&candidates)).clone())
    }

    fn flags(&mut self, max: u64) -> Vec<String> {
        (0..self.rng.range(0, max))
            .map(|_| self.rng.pick(&FLAGS).to_string())
            .collect()
    }

    fn message(&mut self, i: usize, k: usize) -> NewMessage {
        NewMessage {
            guid: self.fresh_guid(),
            size: self.rng.range(200, 5_000_000),
            internal_date: 1_700_000_000 + i as i64 * 60 + k as i64,
            flags: self.flags(3),
        }
    }

    fn create(&mut self, i: usize) -> Op {
        let user = self.rng.pick(&USERS).to_string();
        let mailbox = self.rng.pick(&MAILBOX_NAMES).to_string();
        self.mailboxes
            .entry((user.clone(), mailbox.clone()))
            .or_insert(MailboxBelief {
                uid_next: 1,
                modseq: 0,
                messages: BTreeMap::new(),
            });
        Op::CreateMailbox {
            user,
            mailbox,
            mailbox_guid: self.fresh_guid(),
            uid_validity: 1_700_000_000 + i as u32,
        }
    }

    fn append(&mut self, i: usize) -> Op {
        let key = self.pick_mailbox(false).expect("a mailbox exists");
        let count = if self.rng.chance(0.70) {
            self.rng.range(1, 5)
        } else {
            self.rng.range(1, 50)
        };
        let messages: Vec<NewMessage> = (0..count as usize).map(|k| self.message(i, k)).collect();
        let belief = self.mailboxes.get_mut(&key).expect("picked");
        for message in &messages {
            belief.messages.insert(belief.uid_next, message.guid);
            belief.uid_next += 1;
        }
        belief.modseq += 1;
        Op::Append {
            user: key.0,
            mailbox: key.1,
            messages,
        }
    }

    /// Some UIDs of the mailbox: mostly existing ones, sometimes beyond `uid_next`.
    fn uids(&mut self, key: &(String, String)) -> UidSet {
        let uid_next = self.mailboxes[key].uid_next;
        if uid_next <= 1 {
            return UidSet::parse("1:5").expect("valid");
        }
        let ranges: Vec<(u32, u32)> = (0..self.rng.range(1, 4))
            .map(|_| {
                let first = self.rng.range(1, u64::from(uid_next) - 1) as u32;
                let last = if self.rng.chance(0.50) {
                    first
                } else {
                    first + self.rng.range(0, 20) as u32
                };
                (first, last)
            })
            .collect();
        UidSet::from_ranges(ranges).expect("valid ranges")
    }

    fn store(&mut self) -> Op {
        let key = self.pick_mailbox(false).expect("a mailbox exists");
        let uids = self.uids(&key);
        let mode = *self
            .rng
            .pick(&[StoreMode::Add, StoreMode::Remove, StoreMode::Replace]);
        let flags = self.flags(3);
        let modseq = self.mailboxes[&key].modseq;
        let unchanged_since = self
            .rng
            .chance(0.25)
            .then(|| modseq.saturating_sub(self.rng.below(4)));
        self.mailboxes.get_mut(&key).expect("picked").modseq += 1;
        Op::Store {
            user: key.0,
            mailbox: key.1,
            uids,
            mode,
            flags,
            unchanged_since,
        }
    }

    fn expunge(&mut self) -> Op {
        let key = self.pick_mailbox(false).expect("a mailbox exists");
        let existing: Vec<u32> = self.mailboxes[&key].messages.keys().copied().collect();
        let uids = if existing.is_empty() || self.rng.chance(0.30) {
            self.uids(&key)
        } else {
            let chosen: Vec<u32> = (0..self.rng.range(1, 8))
                .map(|_| *self.rng.pick(&existing))
                .collect();
            UidSet::from_ranges(chosen.iter().map(|&u| (u, u))).expect("valid")
        };
        let mut expected_guids = Vec::new();
        if self.rng.chance(0.30) {
            for &(first, last) in uids.ranges() {
                for uid in first..=last {
                    let real = self.mailboxes[&key].messages.get(&uid).copied();
                    let guid = match real {
                        Some(guid) if self.rng.chance(0.80) => guid,
                        _ => self.fresh_guid(),
                    };
                    expected_guids.push((uid, guid));
                }
            }
        }
        let belief = self.mailboxes.get_mut(&key).expect("picked");
        for &(first, last) in uids.ranges() {
            for uid in first..=last {
                let guarded = expected_guids.iter().find(|(u, _)| *u == uid);
                if guarded.is_none_or(|(_, g)| belief.messages.get(&uid) == Some(g)) {
                    belief.messages.remove(&uid);
                }
            }
        }
        belief.modseq += 1;
        Op::Expunge {
            user: key.0,
            mailbox: key.1,
            uids,
            expected_guids,
        }
    }

    fn rename(&mut self) -> Op {
        let Some((user, from)) = self.pick_mailbox(true) else {
            return self.create(0);
        };
        let to = self.rng.pick(&RENAME_TARGETS).to_string();
        let prefix = format!("{from}/");
        let moves: Vec<(String, String)> = self
            .mailboxes
            .keys()
            .filter(|(u, name)| *u == user && (*name == from || name.starts_with(&prefix)))
            .map(|(_, name)| (name.clone(), format!("{to}{}", &name[from.len()..])))
            .collect();
        let blocked = to == from
            || to.starts_with(&prefix)
            || moves
                .iter()
                .any(|(_, target)| self.mailboxes.contains_key(&(user.clone(), target.clone())));
        if !blocked {
            let moved: Vec<_> = moves
                .iter()
                .map(|(source, target)| {
                    let belief = self
                        .mailboxes
                        .remove(&(user.clone(), source.clone()))
                        .expect("listed");
                    ((user.clone(), target.clone()), belief)
                })
                .collect();
            self.mailboxes.extend(moved);
        }
        Op::RenameMailbox { user, from, to }
    }

    fn delete(&mut self) -> Op {
        let Some((user, mailbox)) = self.pick_mailbox(true) else {
            return self.create(0);
        };
        let prefix = format!("{mailbox}/");
        let has_children = self
            .mailboxes
            .keys()
            .any(|(u, name)| *u == user && name.starts_with(&prefix));
        if !has_children {
            self.mailboxes.remove(&(user.clone(), mailbox.clone()));
        }
        Op::DeleteMailbox { user, mailbox }
    }

    /// An op that validation refuses; the state machine must reject it the same way everywhere.
    fn invalid_op(&mut self, i: usize) -> Op {
        let user = self.rng.pick(&USERS).to_string();
        let mailbox = "INBOX".to_string();
        let store = |uids: UidSet, flags: Vec<String>| Op::Store {
            user: user.clone(),
            mailbox: mailbox.clone(),
            uids,
            mode: StoreMode::Add,
            flags,
            unchanged_since: None,
        };
        match self.rng.below(8) {
            0 => {
                let mut message = self.message(i, 0);
                message.guid = [0; 16];
                Op::Append {
                    user,
                    mailbox,
                    messages: vec![message],
                }
            }
            1 => {
                let mut message = self.message(i, 0);
                message.internal_date = i64::MAX;
                Op::Append {
                    user,
                    mailbox,
                    messages: vec![message],
                }
            }
            2 => store(UidSet::new(), vec!["\\Seen".into()]),
            3 => store(UidSet::parse("1:3").expect("valid"), vec!["\\Recent".into()]),
            4 => store(UidSet::parse("1").expect("valid"), vec!["bad keyword".into()]),
            5 => Op::CreateMailbox {
                user,
                mailbox: "Bad//Name".into(),
                mailbox_guid: self.fresh_guid(),
                uid_validity: 1,
            },
            6 => Op::CreateMailbox {
                user,
                mailbox: "Zero".into(),
                mailbox_guid: [0; 16],
                uid_validity: 0,
            },
            _ => Op::RenameMailbox {
                user,
                from: "inbox".into(),
                to: "Elsewhere".into(),
            },
        }
    }
}
