//! The crash/interrupt matrix: a real pipeline run (the notebook's pipeline
//! on tiny data) is killed at each of several points, by SIGKILL (a crash or
//! power cut: no clean-up at all) and by SIGINT (Ctrl-C), and then:
//! `pipe status` says exactly which stages the next run will reuse, the next
//! run reuses at least every stage that had finished before the signal and
//! recomputes the rest, its submission is byte for byte the uninterrupted
//! run's, and no half-written entry is left in the cache.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipe_test_support::{pipe_bin, Scratch};

/// Where the signal is sent: when this `--json` event is read.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// Right after a stage's entry was committed (the next stage is starting).
    After(&'static str),
    /// After the first epoch's metrics: inside the train stage, torch busy.
    MidTraining,
    /// As a stage that writes files begins to write them.
    Writing(&'static str),
}

impl Point {
    fn reached(self, event: &serde_json::Value) -> bool {
        let (kind, stage) = (
            event["event"].as_str().unwrap_or(""),
            event["stage"].as_str().unwrap_or(""),
        );
        match self {
            Point::After(s) => kind == "stage_finished" && stage == s,
            Point::MidTraining => kind == "metrics" && stage == "train",
            Point::Writing(s) => kind == "stage_started" && stage == s,
        }
    }
}

const POINTS: &[Point] = &[
    Point::After("load"),
    Point::After("test_tensors"),
    Point::After("model"),
    Point::MidTraining,
    Point::After("train"),
    Point::After("predict"),
    Point::Writing("submission"),
    Point::Writing("export_training"),
];

const RUN: &[&str] = &[
    "--cache-dir",
    ".pipe",
    "run",
    "tiny.yaml",
    "--json",
    "--set",
    "train.epochs=4",
];

/// Runs the pipeline, sends `signal` at `point`; returns the stages whose
/// entries were complete (finished or cached) before the signal was sent,
/// and the exit status.
fn interrupted_run(
    s: &Scratch,
    point: Point,
    signal: i32,
) -> (BTreeSet<String>, std::process::ExitStatus) {
    let mut child = Command::new(pipe_bin())
        .args(RUN)
        .current_dir(s.dir.path())
        .env("PIPE_THREADS", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pipe");
    let mut complete = BTreeSet::new();
    let mut signalled = false;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line.expect("stdout")) else {
            continue;
        };
        if signalled {
            continue;
        }
        if matches!(
            event["event"].as_str(),
            Some("stage_finished" | "stage_cached")
        ) {
            complete.insert(event["stage"].as_str().unwrap_or_default().to_string());
        }
        if point.reached(&event) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, signal) };
            signalled = true;
        }
    }
    assert!(signalled, "{point:?} never came");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pipe did not exit after signal {signal} at {point:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    (complete, status)
}

/// `pipe status --json`: the stages it calls fresh.
fn fresh_stages(s: &Scratch) -> BTreeSet<String> {
    let out = s
        .pipe(&[
            "--cache-dir",
            ".pipe",
            "status",
            "tiny.yaml",
            "--json",
            "--set",
            "train.epochs=4",
        ])
        .ok()
        .stdout();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("status --json");
    rows.iter()
        .filter(|r| r["freshness"]["state"] == "fresh")
        .map(|r| r["stage"].as_str().unwrap().to_string())
        .collect()
}

/// Stages the run took from the cache, and those it ran.
fn outcomes(stdout: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut cached, mut ran) = (BTreeSet::new(), BTreeSet::new());
    for event in stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let stage = event["stage"].as_str().unwrap_or_default().to_string();
        match event["event"].as_str() {
            Some("stage_cached") => cached.insert(stage),
            Some("stage_started") => ran.insert(stage),
            _ => false,
        };
    }
    (cached, ran)
}

#[test]
#[ignore = "slow: a run killed at eight points, twice each (CONTRIBUTING.md)"]
fn a_run_killed_or_interrupted_anywhere_resumes_to_the_same_submission() {
    let reference = Scratch::tiny().lab();
    reference.pipe(RUN).ok();
    let expected =
        std::fs::read(reference.path("out/submission.csv")).expect("reference submission");
    let all_stages = outcomes(&reference.pipe(RUN).ok().stdout()).0;
    assert_eq!(
        all_stages.len(),
        10,
        "the second uninterrupted run reuses every stage: {all_stages:?}"
    );

    for &point in POINTS {
        for (signal, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGINT, "SIGINT")] {
            let case = format!("{name} at {point:?}");
            let s = Scratch::tiny().lab();
            let (complete, status) = interrupted_run(&s, point, signal);
            match signal {
                libc::SIGKILL => assert_eq!(
                    std::os::unix::process::ExitStatusExt::signal(&status),
                    Some(libc::SIGKILL),
                    "{case}"
                ),
                _ => assert_eq!(status.code(), Some(130), "{case}"),
            }
            assert!(
                complete.len() < all_stages.len(),
                "{case}: the run finished before the signal"
            );

            let fresh = fresh_stages(&s);
            assert!(
                complete.is_subset(&fresh),
                "{case}: finished before the signal {complete:?}, fresh {fresh:?}"
            );

            let rerun = s.pipe(RUN).ok();
            let (cached, ran) = outcomes(&rerun.stdout());
            eprintln!(
                "{case}: {} complete before the signal, {} reused, {} recomputed",
                complete.len(),
                cached.len(),
                ran.len()
            );
            assert_eq!(
                cached, fresh,
                "{case}: status promised {fresh:?}, the run reused {cached:?}"
            );
            assert_eq!(
                cached.union(&ran).count(),
                all_stages.len(),
                "{case}: every stage reused or run once"
            );
            assert!(cached.is_disjoint(&ran), "{case}");
            let got = std::fs::read(s.path("out/submission.csv")).expect("submission");
            assert!(
                got == expected,
                "{case}: the resumed run's submission differs from the uninterrupted run's"
            );
            let leftovers: Vec<_> = std::fs::read_dir(s.path(".pipe/tmp"))
                .map(|d| d.flatten().collect())
                .unwrap_or_default();
            assert!(
                leftovers.is_empty(),
                "{case}: half-written entries left in the cache: {leftovers:?}"
            );
        }
    }
}
