//! Hostile files, bad settings, interruptions and a long-lived cache, each
//! driven through the real `pipe` binary with a time limit: every case ends
//! quickly with a clear error (or a clean exit), bounded memory, and a cache
//! that never lies. The crafted files are made here, by the tests.

use std::io::Write;
use std::time::{Duration, Instant};

use pipe_test_support::{npy_file, Limited, Scratch};

mod interrupts;
mod scoring;

/// Well under a second of work; the limit leaves room for a loaded machine.
const QUICK: Duration = Duration::from_secs(20);

/// The notebook's pipeline on tiny data with one artifact replaced.
fn tiny_with(file: &str, bytes: &[u8]) -> Scratch {
    let s = Scratch::tiny().lab();
    std::fs::write(s.path("data").join(file), bytes).unwrap();
    s
}

/// What `pipe` holds before doing anything (libtorch and its CUDA libraries
/// loaded: several hundred MB): memory bounds are measured above it.
fn baseline_mb() -> f64 {
    static BASELINE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *BASELINE.get_or_init(|| {
        Scratch::new()
            .lab()
            .pipe_limited(&["--version"], QUICK)
            .peak_mb
    })
}

fn assert_extra_memory_below(run: &Limited, mb: f64) {
    let extra = run.peak_mb - baseline_mb();
    assert!(
        extra < mb,
        "peak memory {:.0} MB, {extra:.0} MB above the binary's {:.0} MB (limit {mb} MB)",
        run.peak_mb,
        baseline_mb()
    );
}

fn assert_fails_naming(run: &Limited, code: i32, needles: &[&str]) {
    assert!(
        !run.timed_out,
        "still running after {:.0} s\nstderr:\n{}",
        run.seconds, run.stderr
    );
    assert_eq!(run.code, Some(code), "stderr:\n{}", run.stderr);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "`{needle}` missing from stderr:\n{}",
            run.stderr
        );
    }
}

// ---- pickles ----

/// 60 tuples, each holding the previous one twice: 126 bytes, 2^60 paths.
/// Walking it path by path never ends; each node must be visited once.
#[test]
fn a_pickle_of_tuples_sharing_halves_fails_fast() {
    let mut pickle = b"\x80\x02]N".to_vec();
    for _ in 0..60 {
        pickle.extend(b"2\x86");
    }
    pickle.extend(b"a.");
    assert_eq!(pickle.len(), 126);
    let run = tiny_with("vocab_stoi.pkl", &pickle).pipe_limited(&["run", "tiny.yaml"], QUICK);
    assert_fails_naming(&run, 1, &["vocab_stoi.pkl", "expected a dict"]);
    assert!(run.seconds < 10.0, "took {:.1} s", run.seconds);
}

/// The shape of a fuzzing finding (`pickle_ops`): hundreds of thousands of
/// values each kept on the stack and in the memo (EMPTY_SET, MEMOIZE, over
/// and over). Memory grows with the file, a few dozen bytes per value, and
/// the error names what was found.
#[test]
fn a_pickle_of_many_memoized_values_stays_small() {
    let mut pickle = b"\x80\x04".to_vec();
    for _ in 0..333_000 {
        pickle.extend(b"\x8f\x94");
    }
    pickle.push(b'.');
    let run = tiny_with("vocab_stoi.pkl", &pickle).pipe_limited(&["run", "tiny.yaml"], QUICK);
    assert_fails_naming(&run, 1, &["vocab_stoi.pkl", "expected a dict"]);
    assert_extra_memory_below(&run, 100.0);
}

/// A million nested 1-tuples: refused by depth, and torn down without
/// recursion (dropping it recursively overflowed the stack: exit 134).
#[test]
fn a_deeply_nested_pickle_is_refused_by_depth() {
    let mut pickle = b"\x80\x02N".to_vec();
    pickle.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    pickle.push(b'.');
    let run = tiny_with("vocab_stoi.pkl", &pickle).pipe_limited(&["run", "tiny.yaml"], QUICK);
    assert_fails_naming(
        &run,
        1,
        &["vocab_stoi.pkl", "nests deeper than 1000 levels"],
    );
}

/// One 1 MiB string, named 300 times through the memo (2 bytes each): the VM
/// shares it, and the vocabulary refuses to copy 300 MiB of tokens.
#[test]
fn a_memo_reference_to_a_large_string_costs_nothing_to_repeat() {
    let big = vec![b'x'; 1 << 20];
    let mut pickle = b"\x80\x02}q\x00(X".to_vec();
    pickle.extend((big.len() as u32).to_le_bytes());
    pickle.extend(&big);
    pickle.extend(b"q\x01K\x00");
    for id in 1..300u16 {
        pickle.extend(b"h\x01M");
        pickle.extend(id.to_le_bytes());
    }
    pickle.extend(b"u.");
    let run = tiny_with("vocab_stoi.pkl", &pickle).pipe_limited(&["run", "tiny.yaml"], QUICK);
    assert_fails_naming(&run, 1, &["vocab_stoi.pkl", "tokens hold more than"]);
    // The 64 MiB of tokens it copies before refusing, and the file.
    assert_extra_memory_below(&run, 150.0);
}

/// 300 MB of zeros in a pickle, zlib-compressed to a few hundred kB: the
/// decompression stops at the limit, with the limit in the message.
#[test]
fn a_zlib_bomb_stops_at_the_limit_while_inflating() {
    let payload = 300usize << 20;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(b"\x80\x02B").unwrap();
    encoder.write_all(&(payload as u32).to_le_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..payload >> 20 {
        encoder.write_all(&zeros).unwrap();
    }
    encoder.write_all(b".").unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let run = tiny_with("vocab_stoi.pkl", &bomb).pipe_limited(&["run", "tiny.yaml"], QUICK);
    assert_fails_naming(
        &run,
        1,
        &["vocab_stoi.pkl", "decompresses to more than 64 MiB"],
    );
    // The 64 MiB limit, and the buffer's growth to reach it.
    assert_extra_memory_below(&run, 250.0);
}

// ---- .npy ----

/// Four billion zero-width strings and no data: nothing to check the size
/// against, so the dtype must be refused before anything is decoded.
#[test]
fn a_zero_width_npy_of_four_billion_elements_is_refused() {
    let npy = npy_file(
        "{'descr': '<U0', 'fortran_order': False, 'shape': (4000000000,), }",
        b"",
    );
    let run = tiny_with("X_train_seq.npy", &npy).pipe_limited(&["run", "tiny.yaml"], QUICK);
    assert_fails_naming(
        &run,
        1,
        &["X_train_seq.npy", "dtype <U0 is not an integer array"],
    );
}

// ---- settings ----

#[test]
fn out_of_range_training_settings_are_an_invalid_pipeline() {
    let s = Scratch::tiny().lab();
    for (set, needle) in [
        ("train.betas=[1.0,0.999]", "betas must each be in [0, 1)"),
        ("train.lr=1e30", "lr must be in (0, 1]"),
        ("train.eps=0", "eps must be positive"),
    ] {
        let run = s.pipe_limited(&["run", "tiny.yaml", "--set", set], QUICK);
        assert_fails_naming(&run, 2, &["tiny.yaml", needle]);
    }
    assert!(
        !s.path(".pipe/entries").exists()
            || std::fs::read_dir(s.path(".pipe/entries"))
                .unwrap()
                .next()
                .is_none(),
        "nothing ran"
    );
}

#[test]
fn output_names_that_leave_their_directory_are_refused_at_load() {
    let s = Scratch::tiny().lab();
    for name in ["../escape.json", "/tmp/escape.json", "a/b.json", ".."] {
        let set = format!("export_evaluation.json_name={name}");
        let run = s.pipe_limited(&["run", "tiny.yaml", "--set", &set], QUICK);
        assert_fails_naming(&run, 2, &["json_name", "not a plain file name"]);
    }
}

// ---- stage failures ----

/// A panic inside a stage is that stage's failure: exit 1, a `stage_failed`
/// event, nothing cached.
#[test]
fn a_panicking_stage_is_reported_as_a_stage_failure() {
    let s = Scratch::new().lab();
    s.write(
        "p.yaml",
        "stages:\n  boom:\n    kind: toy_fail\n    panic: true\n    message: kaboom\n",
    );
    let run = s.pipe_limited(&["run", "p.yaml", "--json"], QUICK);
    assert_fails_naming(&run, 1, &["the stage panicked: kaboom"]);
    assert!(run.stdout.contains("\"stage_failed\""), "{}", run.stdout);
    assert!(
        std::fs::read_dir(s.path(".pipe/entries"))
            .unwrap()
            .next()
            .is_none(),
        "nothing cached"
    );
}

// ---- exec ----

const EXEC: &str = "
stages:
  slow:
    kind: exec
    command: \"echo $$ > started; CMD; echo done > {out.result}\"
    outputs: { result: result.txt }
";

fn exec_pipeline(command: &str) -> Scratch {
    let s = Scratch::new().lab();
    s.write("p.yaml", &EXEC.replace("CMD", command));
    s
}

fn wait_for(path: &std::path::Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < QUICK, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; a zombie is not running any more.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    exists
        && !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z"))
}

/// Ctrl-C or SIGTERM while an exec stage runs `sleep`: `pipe` exits 130 or
/// 143, the shell and its `sleep` die with it, no scratch is left, the lock
/// is free, and the next run computes the stage from scratch.
#[test]
fn an_interrupted_exec_stage_leaves_nothing_running_and_nothing_cached() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let s = exec_pipeline("sleep 300 & echo $! > sleeper; wait");
        interrupt_when_started(&s, signal, code, &["started", "sleeper"]);
        // The lock is free and nothing was cached: a quick command reruns the stage.
        s.write("p.yaml", &EXEC.replace("CMD", "true"));
        assert_reruns(&s);
    }
}

/// The same for a Python stage whose function started a subprocess: the
/// worker and its child die with `pipe`, and nothing is cached.
#[test]
fn an_interrupted_python_stage_leaves_nothing_running_and_nothing_cached() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let s = Scratch::new().lab();
        s.write(
            "p.yaml",
            "stages:\n  slow:\n    kind: python\n    function: slow:wait\n    outputs: { result: json }\n",
        );
        s.write(
            "slow.py",
            "import os, subprocess, time\n\
             def wait():\n    \
                 child = subprocess.Popen(['sleep', '300'])\n    \
                 open('started', 'w').write(str(os.getpid()))\n    \
                 open('sleeper.tmp', 'w').write(str(child.pid))\n    \
                 os.rename('sleeper.tmp', 'sleeper')\n    \
                 time.sleep(300)\n",
        );
        interrupt_when_started(&s, signal, code, &["started", "sleeper"]);
        s.write("slow.py", "def wait():\n    return {'ok': 1}\n");
        assert_reruns(&s);
    }
}

/// Runs `p.yaml` with `pipe-testing`, waits until the last of `pid_files`
/// exists (each holds a pid the stage started), sends `signal`, and checks
/// that `pipe` exits with `code` saying so, that every one of those
/// processes is gone, and that no scratch is left.
fn interrupt_when_started(s: &Scratch, signal: i32, code: i32, pid_files: &[&str]) {
    let mut child = std::process::Command::new(pipe_test_support::lab_bin())
        .args(["run", "p.yaml"])
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&s.path(pid_files.last().expect("a pid file")));
    let pids: Vec<i32> = pid_files
        .iter()
        .map(|f| {
            std::fs::read_to_string(s.path(f))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    // SAFETY: kill(2) on the child we spawned; no memory is involved.
    unsafe { libc::kill(child.id() as i32, signal) };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < QUICK,
            "pipe did not exit after signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(code));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    for (file, pid) in pid_files.iter().zip(&pids) {
        assert!(!alive(*pid), "{file} ({pid}) outlived pipe");
    }
    let tmp: Vec<_> = std::fs::read_dir(s.path(".pipe/tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "scratch left behind: {tmp:?}");
}

/// The lock is free and nothing was cached: the next run runs `slow` again.
fn assert_reruns(s: &Scratch) {
    let rerun = s.pipe_limited(&["run", "p.yaml", "--lock-timeout", "1"], QUICK);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(
        rerun
            .stdout
            .lines()
            .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["slow", "ran"]),
        "{}",
        rerun.stdout
    );
}

/// A command that leaves a background process holding its stdout ends when
/// the command does (its group is killed), and a timeout holds.
#[test]
fn background_processes_do_not_hold_an_exec_stage_open() {
    let s = exec_pipeline("sleep 300 & true");
    let run = s.pipe_limited(&["run", "p.yaml"], QUICK);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.seconds < 10.0, "took {:.1} s", run.seconds);
    // Even one that left the group (setsid) only holds it for a grace period.
    let s = exec_pipeline("setsid sleep 300 & true");
    let run = s.pipe_limited(&["run", "p.yaml"], QUICK);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.seconds < 10.0, "took {:.1} s", run.seconds);
    let s = Scratch::new().lab();
    s.write(
        "p.yaml",
        &EXEC
            .replace("CMD", "sleep 300")
            .replace("outputs:", "timeout_s: 1\n    outputs:"),
    );
    let run = s.pipe_limited(&["run", "p.yaml"], QUICK);
    assert_fails_naming(&run, 1, &["ran past timeout_s = 1"]);
}

/// 200 MB on stdout and stderr: kept as a bounded tail, not in memory.
#[test]
fn a_chatty_command_costs_bounded_memory() {
    let s = exec_pipeline("head -c 200000000 /dev/zero | tr '\\\\0' x; head -c 200000000 /dev/zero | tr '\\\\0' y >&2");
    let run = s.pipe_limited(&["run", "p.yaml"], Duration::from_secs(60));
    assert_eq!(
        run.code,
        Some(0),
        "{}",
        &run.stderr[..run.stderr.len().min(2000)]
    );
    assert_extra_memory_below(&run, 50.0);
}

/// A file the stage reads that changes while it runs: the result is not
/// cached under the old contents' key.
#[test]
fn an_external_file_changed_during_its_stage_is_not_cached() {
    let s = Scratch::new().lab();
    s.write("input.txt", "one\n");
    s.write(
        "p.yaml",
        "stages:\n  read:\n    kind: exec\n    command: \"cat input.txt > {out.copy}; echo two >> input.txt\"\n    files: [input.txt]\n    outputs: { copy: copy.txt }\n",
    );
    let run = s.pipe_limited(&["run", "p.yaml"], QUICK);
    assert_fails_naming(&run, 1, &["input.txt changed while the stage ran"]);
    assert!(
        std::fs::read_dir(s.path(".pipe/entries"))
            .unwrap()
            .next()
            .is_none(),
        "nothing cached"
    );
}

// ---- the cache ----

const TOY: &str = "
stages:
  numbers:
    kind: toy_numbers
    count: 10
  total:
    kind: toy_sum
    inputs: { values: numbers.values }
";

/// `pipe --cache-dir ../.pipe gc` from a subfolder used to delete every entry
/// of pipelines that still exist (their relative paths did not resolve there).
#[test]
fn gc_from_a_subfolder_keeps_the_entries_of_existing_pipelines() {
    let s = Scratch::new().lab();
    s.write("pipelines/p.yaml", TOY);
    std::fs::create_dir(s.path("sub")).unwrap();
    s.pipe(&["run", "pipelines/p.yaml"]).ok();
    let gc = std::process::Command::new(pipe_test_support::lab_bin())
        .args(["--cache-dir", "../.pipe", "gc", "--dry-run"])
        .current_dir(s.path("sub"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains("would remove 0 cache entries"),
        "{gc:?}"
    );
    let gc = std::process::Command::new(pipe_test_support::lab_bin())
        .args(["--cache-dir", "../.pipe", "gc"])
        .current_dir(s.path("sub"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains("removed 0 cache entries"),
        "{gc:?}"
    );
    assert!(
        s.pipe(&["run", "pipelines/p.yaml"]).ok().ran().is_empty(),
        "gc removed live entries"
    );
    // Once the pipeline is gone, so are its entries.
    std::fs::remove_file(s.path("pipelines/p.yaml")).unwrap();
    let gc = s.pipe(&["gc"]).ok();
    assert!(
        gc.stdout().contains("removed 2 cache entries"),
        "{}",
        gc.stdout()
    );
}

/// `status` and `gc` say at once that they wait for the lock, and give up
/// after `--lock-timeout`.
#[test]
fn status_and_gc_say_they_wait_and_honour_the_lock_timeout() {
    let s = Scratch::new().lab();
    s.write("p.yaml", TOY);
    s.pipe(&["run", "p.yaml"]).ok();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(s.path(".pipe/lock"))
        .unwrap();
    lock.lock().unwrap();
    for args in [
        &["--lock-timeout", "1", "status", "p.yaml"][..],
        &["--lock-timeout", "1", "gc"],
    ] {
        let run = s.pipe_limited(args, QUICK);
        assert_fails_naming(
            &run,
            3,
            &["waiting for the cache lock", "gave up after 1 s"],
        );
    }
    lock.unlock().unwrap();
    s.pipe(&["--lock-timeout", "1", "status", "p.yaml"]).ok();
}

/// Two `pipe run` on one cache at once: both succeed, one after the other.
#[test]
fn two_concurrent_runs_both_succeed() {
    let s = exec_pipeline("sleep 1");
    let spawn = || {
        std::process::Command::new(pipe_test_support::lab_bin())
            .args(["run", "p.yaml"])
            .current_dir(s.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{a:?}\n{b:?}");
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(
        stderr.contains("waiting for the cache lock"),
        "neither waited: {stderr}"
    );
    let ran_slow = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["slow", "ran"])
    };
    assert_eq!(
        [&a, &b].into_iter().filter(|o| ran_slow(o)).count(),
        1,
        "the second reused the first's entry"
    );
}
