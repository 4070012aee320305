//! How a run looks: progress bars on a terminal, plain lines elsewhere, JSON lines with `--json`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use crate::core::{
    default_config, registered_stages, Event, EventSink, Level, RunReport, StageOutcome,
};
use indicatif::{ProgressBar, ProgressStyle};

pub struct Renderer {
    json: bool,
    quiet: bool,
    terminal: bool,
    bars: RefCell<HashMap<String, ProgressBar>>,
    /// Last percentage printed per stage, so plain logs get a line per 10%, not per step.
    last_logged: RefCell<HashMap<String, u64>>,
}

impl Renderer {
    pub fn new(json: bool, quiet: bool) -> Renderer {
        Renderer {
            json,
            quiet,
            terminal: std::io::stderr().is_terminal(),
            bars: RefCell::new(HashMap::new()),
            last_logged: RefCell::new(HashMap::new()),
        }
    }

    pub fn finish(&self) {
        for (_, bar) in self.bars.borrow_mut().drain() {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        match self.bars.borrow().values().next() {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn progress(&self, stage: &str, done: u64, total: u64, message: &str) {
        if self.terminal {
            let mut bars = self.bars.borrow_mut();
            let bar = bars.entry(stage.to_string()).or_insert_with(|| {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(stage.to_string());
                bar
            });
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(message.to_string());
        } else if let Some(pct) = (done * 100).checked_div(total) {
            let mut last = self.last_logged.borrow_mut();
            let prev = last.entry(stage.to_string()).or_insert(u64::MAX);
            if *prev == u64::MAX || pct / 10 > *prev / 10 || done == total {
                *prev = pct;
                drop(last);
                self.line(format!("  {stage}: {done}/{total} {message}"));
            }
        }
    }
}

impl EventSink for Renderer {
    fn emit(&self, event: &Event) {
        if self.json {
            print_json_line(&serde_json::to_value(event).unwrap_or_default());
            return;
        }
        match event {
            Event::StageStarted { stage, kind, .. } => self.line(format!("▶ {stage} ({kind})")),
            Event::StageCached { stage, .. } => self.line(format!("✓ {stage}: cached")),
            Event::StageRestored { stage, .. } => {
                self.line(format!("✓ {stage}: restored from cache"))
            }
            Event::StageFinished { stage, seconds, .. } => {
                if let Some(bar) = self.bars.borrow_mut().remove(stage) {
                    bar.finish_and_clear();
                }
                self.line(format!("✓ {stage}: ran in {seconds:.2}s"));
            }
            Event::StageFailed { stage, error } => {
                if let Some(bar) = self.bars.borrow_mut().remove(stage) {
                    bar.abandon();
                }
                eprintln!("✗ {stage}: {error}");
            }
            Event::CacheCorrupt { stage, detail, .. } => {
                eprintln!("! {stage}: cache entry is corrupt ({detail}); recomputing");
            }
            Event::Progress {
                stage,
                done,
                total,
                message,
            } => self.progress(stage, *done, *total, message),
            Event::Metrics { .. } => {}
            Event::Message {
                stage,
                level: Level::Info,
                text,
            } => self.line(format!("  {stage}: {text}")),
            Event::Message {
                stage,
                level: Level::Warn,
                text,
            } => eprintln!("  warning: {stage}: {text}"),
            Event::WaitingForLock { path, holder } => {
                eprintln!("waiting for the cache lock {path} (held by {holder})…")
            }
        }
    }
}

pub fn print_json_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

pub fn print_summary(report: &RunReport) {
    println!("{:<16} {:<9} {:>9}", "stage", "status", "seconds");
    for s in &report.stages {
        let status = match s.outcome {
            StageOutcome::Ran => "ran",
            StageOutcome::Cached => "cached",
            StageOutcome::Restored => "restored",
        };
        println!("{:<16} {:<9} {:>9.2}", s.name, status, s.seconds);
    }
}

pub fn print_stages(kind: Option<&str>, json: bool) -> anyhow::Result<()> {
    let stages: Vec<_> = registered_stages()
        .into_iter()
        .filter(|s| kind.is_none_or(|k| s.kind == k))
        .collect();
    if stages.is_empty() {
        let known: Vec<_> = registered_stages().iter().map(|s| s.kind).collect();
        anyhow::bail!(
            "no stage kind `{}`{}; known kinds: {}",
            kind.unwrap_or_default(),
            crate::core::did_you_mean(kind.unwrap_or_default(), known.iter().copied()),
            known.join(", ")
        );
    }
    let mut rows = Vec::new();
    for info in stages {
        let stage = (info.default)();
        let ports = |ports: Vec<crate::core::Port>| -> Vec<serde_json::Value> {
            ports.iter().map(|p| serde_json::json!({ "name": p.name, "type": p.type_name, "required": p.required, "doc": p.doc })).collect()
        };
        rows.push(serde_json::json!({
            "kind": info.kind,
            "summary": info.summary,
            "inputs": ports(stage.inputs()),
            "outputs": ports(stage.outputs()),
            "config": default_config(info),
            "code_version": stage.code_version(),
            "defined_at": info.defined_at,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for row in rows {
        println!(
            "{} — {}",
            row["kind"].as_str().unwrap_or_default(),
            row["summary"].as_str().unwrap_or_default()
        );
        println!(
            "  defined at {}",
            row["defined_at"].as_str().unwrap_or_default()
        );
        for (title, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
            let ports = row[key].as_array().cloned().unwrap_or_default();
            if !ports.is_empty() {
                println!("  {title}:");
                for p in ports {
                    let optional = if p["required"].as_bool() == Some(false) {
                        " (optional)"
                    } else {
                        ""
                    };
                    println!(
                        "    {:<14} {:<14} {}{optional}",
                        p["name"].as_str().unwrap_or_default(),
                        p["type"].as_str().unwrap_or_default(),
                        p["doc"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        if let Some(config) = row["config"].as_object().filter(|c| !c.is_empty()) {
            println!("  config (defaults):");
            for (field, value) in config {
                println!("    {field}: {value}");
            }
        }
        println!();
    }
    Ok(())
}
