//! `dovetail-jepsen`: a Jepsen-style test harness for Dovetail, in Rust.
//!
//! Jepsen's method: clients run operations against a real cluster while a nemesis injects
//! faults; every invocation and completion is recorded in a history; checkers then decide
//! whether the history is explainable by the guarantees the system promises. This crate talks to
//! nodes only as a user would (HTTP and signals) and never links the server's internals.
//!
//! # Layout
//! - [`history`]: events (`invoke` / `ok` / `fail` / `info`), JSON-lines storage, pairing of
//!   invocations with completions; its docs hold the table of `f` names and values per workload.
//! - [`schema`]: the typed JSON of event values and of `final.json`: the runner writes them,
//!   the checkers read them.
//! - [`checker`]: one module per property, pure functions from a history (and final reads) to a
//!   [`checker::CheckResult`]; each is tested against hand-made bad histories.
//!   - [`checker::uid`], [`checker::set`], [`checker::flags`], [`checker::list`],
//!     [`checker::bodies`]: the workloads' properties; [`checker::replicas`], [`checker::logs`],
//!     [`checker::wellformed`]: common ones.
//!   - [`checker::order`] (real-time regressions) and [`checker::wgl`] (linearizability search):
//!     the shared machinery.
//! - [`analysis`]: which checkers judge which workload; the run's verdict.
//! - [`run`]: the runner (cluster control through `scripts/`, workloads, nemeses, HTTP client;
//!   [`run::bodies`]: the deliveries and final body reads of the bodies workload).
//! - [`rng`]: the seeded generator of the runner's schedule: `tests/support/rng.rs`, the one every
//!   randomized test of the workspace uses, included.
//! - [`report`]: a run's files (results, timeline, plots) and verdict; [`check`] re-checks a
//!   stored run.
//! - [`proxy`]: the TCP proxy between peers that the `latency` and `drop` nemeses steer.
//!
//! Reading order for the checkers: `history`, `schema`, `checker` (the result type), `order`,
//! `uid`, `set`, `list`, `wgl`, `flags`, `bodies`, then `analysis`.

pub mod analysis;
pub mod check;
pub mod checker;
pub mod history;
pub mod proxy;
pub mod report;
#[path = "../../tests/support/rng.rs"]
pub mod rng;
pub mod run;
pub mod schema;
