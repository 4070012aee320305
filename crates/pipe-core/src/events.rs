//! Events a run emits, for progress bars, logs and `--json` consumers.

use std::cell::RefCell;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
}

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    StageStarted {
        stage: String,
        kind: String,
        key: String,
    },
    StageCached {
        stage: String,
        key: String,
    },
    /// Outputs read from the cache without running, for a stage not selected by `--only`/`--from`.
    StageRestored {
        stage: String,
        key: String,
    },
    StageFinished {
        stage: String,
        key: String,
        seconds: f64,
    },
    StageFailed {
        stage: String,
        error: String,
    },
    /// A cache entry failed verification and will be recomputed.
    CacheCorrupt {
        stage: String,
        key: String,
        detail: String,
    },
    Progress {
        stage: String,
        done: u64,
        total: u64,
        message: String,
    },
    Metrics {
        stage: String,
        values: serde_json::Value,
    },
    Message {
        stage: String,
        level: Level,
        text: String,
    },
    WaitingForLock {
        path: String,
        holder: String,
    },
}

/// Receives events; implemented by the CLI's renderers and by library users.
pub trait EventSink {
    fn emit(&self, event: &Event);
}

/// Ignores every event.
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: &Event) {}
}

/// Keeps every event, for tests and for callers that inspect a run afterwards.
#[derive(Default)]
pub struct RecordingSink {
    pub events: RefCell<Vec<Event>>,
}

impl EventSink for RecordingSink {
    fn emit(&self, event: &Event) {
        self.events.borrow_mut().push(event.clone());
    }
}

/// Passes every event on, keeping the text of the warnings: what a stage
/// warned of is saved with its cache entry, for `pipe report`.
pub struct WarningSink<'a> {
    inner: &'a dyn EventSink,
    pub warnings: RefCell<Vec<String>>,
}

impl<'a> WarningSink<'a> {
    pub fn new(inner: &'a dyn EventSink) -> WarningSink<'a> {
        WarningSink {
            inner,
            warnings: RefCell::new(Vec::new()),
        }
    }
}

impl EventSink for WarningSink<'_> {
    fn emit(&self, event: &Event) {
        if let Event::Message {
            level: Level::Warn,
            text,
            ..
        } = event
        {
            self.warnings.borrow_mut().push(text.clone());
        }
        self.inner.emit(event);
    }
}

impl<F: Fn(&Event)> EventSink for F {
    fn emit(&self, event: &Event) {
        self(event)
    }
}
