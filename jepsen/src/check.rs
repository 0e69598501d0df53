//! `dovetail-jepsen check <run-dir>`: re-runs every checker on a stored run.

use std::path::{Path, PathBuf};

use crate::history::HistoryError;
use crate::report::Report;
use crate::schema::{FaultWindow, Finals};

/// Why a stored run could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A file of the run is missing or unreadable.
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A file of the run is not the JSON it should be.
    #[error("{file}: {source}")]
    Parse {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("history.jsonl: {0}")]
    History(#[from] HistoryError),
    /// The new `results.json` or `timeline.html` could not be written.
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Loads a run directory, analyzes it again, rewrites `results.json` and `timeline.html`, and
/// prints the summary and the verdict.
pub fn check_dir(dir: &Path) -> Result<Report, CheckError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| CheckError::Read { path, source })
    };
    let json = |file: &'static str| -> Result<serde_json::Value, CheckError> {
        serde_json::from_slice(&read(file)?).map_err(|source| CheckError::Parse { file, source })
    };
    let config = json("config.json")?;
    let events = crate::history::read_jsonl(std::io::BufReader::new(&read("history.jsonl")?[..]))?;
    let mut finals: Finals =
        serde_json::from_slice(&read("final.json")?).map_err(|source| CheckError::Parse {
            file: "final.json",
            source,
        })?;
    let windows: Vec<FaultWindow> = String::from_utf8_lossy(&read("nemesis.jsonl")?)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|source| CheckError::Parse {
            file: "nemesis.jsonl",
            source,
        })?;
    let previous: serde_json::Value = read("results.json")
        .ok()
        .and_then(|r| serde_json::from_slice(&r).ok())
        .unwrap_or_default();
    let run_errors: Vec<String> = previous["run_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(String::from))
        .collect();
    let mut logs = std::collections::BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("logs")) {
        for entry in entries.flatten() {
            let name = entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".log")
                .to_string();
            logs.insert(name, std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    finals.logs = Some(logs);
    let report = Report::new(config, events, finals, windows, run_errors);
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| CheckError::Write { path, source })
    };
    write(
        "results.json",
        &serde_json::to_vec_pretty(&report.results_json()).unwrap_or_default(),
    )?;
    write("timeline.html", report.timeline_html().as_bytes())?;
    report.print_summary();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::history::{write_jsonl, Event, EventType};

    fn event(time_ns: u64, process: u64, kind: EventType, f: &str, value: serde_json::Value) -> Event {
        Event {
            time_ns,
            process,
            node: "n1".into(),
            kind,
            f: f.into(),
            value,
        }
    }

    /// A stored `set` run: two acknowledged appends, the final reads on both nodes hold
    /// `final_guids`.
    fn stored_run(final_guids: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let append = |t, p, guid: &str, uid| {
            [
                event(
                    t,
                    p,
                    EventType::Invoke,
                    "append",
                    json!({"mailbox": "u1/INBOX", "messages": [{"guid": guid}]}),
                ),
                event(
                    t + 10,
                    p,
                    EventType::Ok,
                    "append",
                    json!({"uid_validity": 7, "first_uid": uid, "last_uid": uid, "modseq": uid + 1}),
                ),
            ]
        };
        let mut events: Vec<Event> = append(100, 0, "aa", 1).into();
        events.extend(append(200, 1, "bb", 2));
        let mut history = Vec::new();
        write_jsonl(&events, &mut history).unwrap();
        std::fs::write(dir.path().join("history.jsonl"), history).unwrap();
        let messages: Vec<_> = final_guids
            .iter()
            .enumerate()
            .map(|(i, g)| json!({"uid": i + 1, "guid": g, "flags": [], "modseq": i + 2}))
            .collect();
        let mailbox = json!({"uid_validity": 7, "uid_next": final_guids.len() + 1, "highest_modseq": 3, "messages": messages});
        let finals = json!({"nodes": {"n1": {"mailboxes": {"u1/INBOX": mailbox}}, "n2": {"mailboxes": {"u1/INBOX": mailbox}}},
            "verify": {"clean": true, "divergences": [], "unverified": [], "unreachable": []}});
        std::fs::write(dir.path().join("final.json"), finals.to_string()).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            json!({"workload": "set"}).to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("nemesis.jsonl"),
            json!({"start_ns": 150, "end_ns": 180, "label": "kill [2] (one node)", "fault": {"fault": "kill"}}).to_string() + "\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("logs/n1.log"), "INFO serving\n").unwrap();
        dir
    }

    #[test]
    fn check_accepts_a_good_run_and_rejects_a_lost_write_and_a_panic() {
        let good = stored_run(&["aa", "bb"]);
        let report = check_dir(good.path()).unwrap();
        assert!(report.valid, "{}", report.results_json());
        let timeline = std::fs::read_to_string(good.path().join("timeline.html")).unwrap();
        assert!(timeline.contains("kill [2] (one node)") && timeline.contains("Everything looks good!"));

        let lost = stored_run(&["aa"]);
        let report = check_dir(lost.path()).unwrap();
        assert!(!report.valid);
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(lost.path().join("results.json")).unwrap()).unwrap();
        assert_eq!(results["valid"], false);

        let panicked = stored_run(&["aa", "bb"]);
        std::fs::write(
            panicked.path().join("logs/n1.log"),
            "thread 'tokio-runtime-worker' panicked at src/x.rs:1:1:\nboom\n",
        )
        .unwrap();
        assert!(!check_dir(panicked.path()).unwrap().valid);
    }

    #[test]
    fn a_report_draws_its_plots() {
        let dir = stored_run(&["aa", "bb"]);
        let report = check_dir(dir.path()).unwrap();
        report.write(dir.path()).unwrap();
        for file in [
            "latency.svg",
            "rate.svg",
            "results.json",
            "history.jsonl",
            "final.json",
        ] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap();
            assert!(!bytes.is_empty(), "{file} is empty");
        }
        assert!(std::fs::read_to_string(dir.path().join("latency.svg"))
            .unwrap()
            .contains("<svg"));
    }
}
