//! Hand-made histories for the checkers' tests: each operation gets its own process, and
//! `ops()` pairs the events in time order as a real history would be.

use serde_json::Value;

use crate::history::{pair, Event, EventType, Operation};

#[derive(Default)]
pub(crate) struct History {
    events: Vec<Event>,
    next_process: u64,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// An operation invoked at `start` and completed at `end` with `kind` and `result`.
    pub fn op(
        &mut self,
        f: &str,
        start: u64,
        args: Value,
        end: u64,
        kind: EventType,
        result: Value,
    ) -> &mut History {
        let process = self.next_process;
        self.next_process += 1;
        let event = |time_ns, kind, value| Event {
            time_ns,
            process,
            node: format!("n{}", 1 + process % 3),
            kind,
            f: f.into(),
            value,
        };
        self.insert(event(start, EventType::Invoke, args));
        self.insert(event(end, kind, result));
        self
    }

    /// Keeps the events in time order, later insertions after earlier ones at equal times.
    fn insert(&mut self, event: Event) {
        let at = self.events.partition_point(|e| e.time_ns <= event.time_ns);
        self.events.insert(at, event);
    }

    pub fn ok(&mut self, f: &str, start: u64, end: u64, args: Value, result: Value) -> &mut History {
        self.op(f, start, args, end, EventType::Ok, result)
    }

    /// Timed out at `end`: may take effect at any time after `start`.
    pub fn info(&mut self, f: &str, start: u64, end: u64, args: Value) -> &mut History {
        self.op(
            f,
            start,
            args,
            end,
            EventType::Info,
            serde_json::json!({"error": "timeout"}),
        )
    }

    pub fn fail(&mut self, f: &str, start: u64, end: u64, args: Value, error: &str) -> &mut History {
        self.op(
            f,
            start,
            args,
            end,
            EventType::Fail,
            serde_json::json!({ "error": error }),
        )
    }

    pub fn ops(&self) -> Vec<Operation<'_>> {
        pair(&self.events).expect("test histories pair")
    }
}
