//! A run's report: `results.json`, `history.jsonl`, `nemesis.jsonl`, `final.json`, a
//! self-contained `timeline.html` (operations per process, fault windows shaded), latency and
//! throughput plots (`latency.svg`, `rate.svg`, drawn by plotters), a summary (operations per
//! `f`, each checker's verdict, the bodies checker's figures), and the verdict line,
//! "Everything looks good!" or "Analysis invalid!".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::{json, Value};

use crate::checker::{CheckResult, Validity};
use crate::history::{Event, EventType};
use crate::schema::{FaultWindow, Finals};

/// One operation on the timeline: process, invoke time, completion (time, outcome), `f`.
type Span = (u64, u64, Option<(u64, EventType)>, String);

pub const GOOD: &str = "Everything looks good!";
pub const INVALID: &str = "Analysis invalid!";

/// Why a report's files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// plotters could not draw a plot.
    #[error("{}: drawing: {reason}", path.display())]
    Plot { path: PathBuf, reason: String },
}

pub struct Report {
    pub config: Value,
    pub events: Vec<Event>,
    pub finals: Finals,
    pub windows: Vec<FaultWindow>,
    pub checks: Vec<CheckResult>,
    /// Problems of the run itself (the cluster did not recover, ...); any makes it invalid.
    pub run_errors: Vec<String>,
    pub valid: bool,
}

impl Report {
    /// Analyzes a run: its configuration (`config.json`), history, final reads, fault windows
    /// and the problems of the run itself; from the runner, or from a stored run (`check`).
    pub fn new(
        config: Value,
        events: Vec<Event>,
        finals: Finals,
        windows: Vec<FaultWindow>,
        run_errors: Vec<String>,
    ) -> Report {
        let workload = config["workload"].as_str().unwrap_or("").to_string();
        let finals_json = serde_json::to_value(&finals).unwrap_or(Value::Null);
        let checks = crate::analysis::analyze(&workload, &events, &finals_json);
        let valid = run_errors.is_empty() && checks.iter().all(|c| c.valid == Validity::True);
        Report {
            config,
            events,
            finals,
            windows,
            checks,
            run_errors,
            valid,
        }
    }

    fn counts(&self) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
        let mut counts: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
        for e in &self.events {
            let kind = match e.kind {
                EventType::Invoke => "invoke",
                EventType::Ok => "ok",
                EventType::Fail => "fail",
                EventType::Info => "info",
            };
            *counts.entry(e.f.clone()).or_default().entry(kind).or_default() += 1;
        }
        counts
    }

    pub fn results_json(&self) -> Value {
        json!({
            "valid": self.valid,
            "config": self.config,
            "operations": self.counts(),
            "faults": self.windows,
            "run_errors": self.run_errors,
            "checkers": self.checks,
        })
    }

    /// Writes every file of the report into `dir` and prints the summary; the last line printed
    /// is the verdict.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| ReportError::Write { path, source })
        };
        let mut history = Vec::new();
        crate::history::write_jsonl(&self.events, &mut history).map_err(|source| ReportError::Write {
            path: dir.join("history.jsonl"),
            source,
        })?;
        write("history.jsonl", &history)?;
        let mut nemesis = String::new();
        for w in &self.windows {
            let _ = writeln!(nemesis, "{}", serde_json::to_string(w).unwrap_or_default());
        }
        write("nemesis.jsonl", nemesis.as_bytes())?;
        let mut finals = self.finals.clone();
        finals.logs = None; // the logs are in logs/
        write(
            "final.json",
            &serde_json::to_vec_pretty(&finals).unwrap_or_default(),
        )?;
        write(
            "results.json",
            &serde_json::to_vec_pretty(&self.results_json()).unwrap_or_default(),
        )?;
        write("timeline.html", self.timeline_html().as_bytes())?;
        self.plots(dir)?;
        self.print_summary();
        Ok(())
    }

    pub fn print_summary(&self) {
        for (f, counts) in self.counts() {
            println!(
                "  {f:<8} {:>6} invoked  {:>6} ok  {:>5} fail  {:>5} info",
                counts.get("invoke").unwrap_or(&0),
                counts.get("ok").unwrap_or(&0),
                counts.get("fail").unwrap_or(&0),
                counts.get("info").unwrap_or(&0)
            );
        }
        println!("  faults: {}", self.windows.len());
        for check in &self.checks {
            let verdict = match check.valid {
                Validity::True => "valid".to_string(),
                Validity::False => format!("INVALID {:?}", check.anomaly_counts),
                Validity::Unknown => format!("unknown: {}", check.unknown.join("; ")),
            };
            println!("  {:<11} {verdict}{}", check.checker, figures(check));
        }
        for e in &self.run_errors {
            println!("  run error: {e}");
        }
        println!("{}", if self.valid { GOOD } else { INVALID });
    }

    /// Paired operations: (process, invoke time, completion time and outcome, f).
    fn spans(&self) -> Vec<Span> {
        let mut open: BTreeMap<u64, (u64, String)> = BTreeMap::new();
        let mut spans = Vec::new();
        for e in &self.events {
            match e.kind {
                EventType::Invoke => {
                    open.insert(e.process, (e.time_ns, e.f.clone()));
                }
                kind => {
                    if let Some((start, f)) = open.remove(&e.process) {
                        spans.push((e.process, start, Some((e.time_ns, kind)), f));
                    }
                }
            }
        }
        for (process, (start, f)) in open {
            spans.push((process, start, None, f));
        }
        spans
    }

    fn end_ns(&self) -> u64 {
        self.events.last().map_or(1, |e| e.time_ns.max(1))
    }

    /// One SVG, no scripts or external assets: a row per process, a bar per operation (green ok,
    /// red fail, orange info, grey never completed), fault windows shaded with their labels.
    pub fn timeline_html(&self) -> String {
        let spans = self.spans();
        let processes: std::collections::BTreeSet<u64> = spans.iter().map(|s| s.0).collect();
        let row: BTreeMap<u64, usize> = processes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let (width, left, row_h) = (1600.0f64, 60.0f64, 14.0f64);
        let height = 40.0 + row_h * processes.len().max(1) as f64;
        let end = self.end_ns() as f64;
        let x = |t: u64| left + (width - left - 10.0) * t as f64 / end;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">"#
        );
        for w in &self.windows {
            let (a, b) = (x(w.start_ns), x(w.end_ns.unwrap_or(self.end_ns())));
            let _ = write!(
                svg,
                r##"<rect x="{a:.1}" y="0" width="{:.1}" height="{height}" fill="#f4c7c3" opacity="0.5"><title>{}</title></rect><text x="{:.1}" y="12" fill="#a33">{}</text>"##,
                (b - a).max(1.0),
                escape(&w.label),
                a + 2.0,
                escape(&w.label)
            );
        }
        for (p, i) in &row {
            let _ = write!(
                svg,
                r#"<text x="2" y="{:.1}">p{p}</text>"#,
                30.0 + row_h * *i as f64 + 10.0
            );
        }
        for (process, start, done, f) in &spans {
            let (stop, color, outcome) = match done {
                Some((t, EventType::Ok)) => (*t, "#3a3", "ok"),
                Some((t, EventType::Fail)) => (*t, "#d33", "fail"),
                Some((t, _)) => (*t, "#f90", "info"),
                None => (self.end_ns(), "#999", "open"),
            };
            let y = 30.0 + row_h * row[process] as f64 + 2.0;
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>p{process} {f} {outcome} {:.3}s–{:.3}s</title></rect>"##,
                x(*start),
                (x(stop) - x(*start)).max(1.0),
                row_h - 4.0,
                *start as f64 / 1e9,
                stop as f64 / 1e9
            );
        }
        svg.push_str("</svg>");
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Dovetail Jepsen timeline</title>\
             <style>body{{font-family:sans-serif;margin:1em}}</style></head><body>\
             <h1>{}</h1><p>{} operations, {} faults (shaded). Green ok, red fail, orange info, grey unfinished; hover for details.</p>\
             <div style=\"overflow-x:auto\">{svg}</div></body></html>",
            if self.valid { GOOD } else { INVALID },
            spans.len(),
            self.windows.len()
        )
    }

    /// `latency.svg` (each operation's latency over time, by outcome) and `rate.svg` (completed
    /// operations per second, by outcome).
    fn plots(&self, dir: &Path) -> Result<(), ReportError> {
        let spans = self.spans();
        let end_s = self.end_ns() as f64 / 1e9;
        let outcomes: [(EventType, RGBColor, &str); 3] = [
            (EventType::Ok, RGBColor(0x33, 0xaa, 0x33), "ok"),
            (EventType::Fail, RGBColor(0xdd, 0x33, 0x33), "fail"),
            (EventType::Info, RGBColor(0xff, 0x99, 0x00), "info"),
        ];
        let max_latency = spans
            .iter()
            .filter_map(|(_, start, done, _)| done.map(|(t, _)| (t - start) as f64 / 1e6))
            .fold(1.0f64, f64::max);
        let path = dir.join("latency.svg");
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |e: plotters::drawing::DrawingAreaErrorKind<std::io::Error>| ReportError::Plot {
                path,
                reason: e.to_string(),
            }
        };
        {
            let root = SVGBackend::new(&path, (1200, 500)).into_drawing_area();
            root.fill(&WHITE).map_err(failed(&path))?;
            let mut chart = ChartBuilder::on(&root)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..end_s.max(1.0), (0.1f64..max_latency * 1.2).log_scale())
                .map_err(failed(&path))?;
            chart
                .configure_mesh()
                .x_desc("time (s)")
                .y_desc("latency (ms)")
                .draw()
                .map_err(failed(&path))?;
            for window in &self.windows {
                let (a, b) = (
                    window.start_ns as f64 / 1e9,
                    window.end_ns.unwrap_or(self.end_ns()) as f64 / 1e9,
                );
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(a, 0.1), (b, max_latency * 1.2)],
                        RGBColor(0xf4, 0xc7, 0xc3).mix(0.4).filled(),
                    )))
                    .map_err(failed(&path))?;
            }
            for (kind, color, _) in outcomes {
                chart
                    .draw_series(spans.iter().filter_map(|(_, start, done, _)| match done {
                        Some((t, k)) if *k == kind => Some(Circle::new(
                            (*start as f64 / 1e9, ((t - start) as f64 / 1e6).max(0.1)),
                            2,
                            color.filled(),
                        )),
                        _ => None,
                    }))
                    .map_err(failed(&path))?;
            }
            root.present().map_err(failed(&path))?;
        }
        let seconds = end_s.ceil().max(1.0) as usize;
        let mut per_second: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (_, _, done, _) in &spans {
            if let Some((t, kind)) = done {
                let name = outcomes.iter().find(|o| o.0 == *kind).map_or("info", |o| o.2);
                let bucket = ((*t as f64 / 1e9) as usize).min(seconds - 1);
                per_second.entry(name).or_insert_with(|| vec![0; seconds])[bucket] += 1;
            }
        }
        let max_rate = per_second.values().flatten().copied().max().unwrap_or(1).max(1);
        let path = dir.join("rate.svg");
        let root = SVGBackend::new(&path, (1200, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(failed(&path))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..seconds as f64, 0u32..max_rate + 1)
            .map_err(failed(&path))?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("completions per second")
            .draw()
            .map_err(failed(&path))?;
        for (_, color, name) in outcomes {
            if let Some(series) = per_second.get(name) {
                chart
                    .draw_series(LineSeries::new(
                        series.iter().enumerate().map(|(s, n)| (s as f64 + 0.5, *n)),
                        color.stroke_width(2),
                    ))
                    .map_err(failed(&path))?;
            }
        }
        root.present().map_err(failed(&path))?;
        Ok(())
    }
}

/// The figures a checker's verdict line shows: what the bodies checker read back.
fn figures(check: &CheckResult) -> String {
    if check.checker != crate::checker::bodies::NAME {
        return String::new();
    }
    let stat = |name: &str| check.stats.get(name).copied().unwrap_or(0);
    format!(
        " ({} acknowledged, {:.1} MB; {} indeterminate, {} landed; {} reads, {} byte-equal, {} read again)",
        stat("deliveries_ok"),
        stat("bytes_acknowledged") as f64 / 1e6,
        stat("deliveries_info"),
        stat("info_landed"),
        stat("reads_checked"),
        stat("reads_equal"),
        stat("reads_retried")
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
