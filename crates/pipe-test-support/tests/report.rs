//! `pipe report` through the binary: a pipeline never run, a run that
//! failed, runs compared, a cache entry corrupted. The pages in a real
//! browser are scripts/check-report's (the whole suite runs it).

use pipe_test_support::Scratch;

#[test]
fn a_pipeline_never_run_has_nothing_to_report() {
    let s = Scratch::tiny_raw();
    let out = s.pipe(&["report", "tiny_raw.yaml", "-o", "page.html"]);
    // The cache has nothing for it, as for `--only` without upstream outputs.
    assert_eq!(out.code(), Some(3), "{}", out.stderr());
    assert!(
        out.stderr().contains("nothing to report"),
        "{}",
        out.stderr()
    );
    assert!(!s.path("page.html").exists());
}

#[test]
fn failed_runs_compared_runs_and_a_corrupt_entry_all_give_a_page() {
    let s = Scratch::tiny_raw();
    let yaml = std::fs::read_to_string(s.path("tiny_raw.yaml")).unwrap();
    s.write(
        "tiny_raw.yaml",
        &yaml.replace(
            "wc -l < {in.csv}/submission.csv > {out.count}",
            "cat {in.csv}/submission.csv > {out.count}; exit 3",
        ),
    );
    // `run --report` writes the page even when the run fails, and exits 1.
    let failed = s.pipe(&[
        "run",
        "tiny_raw.yaml",
        "--set",
        "train.epochs=1",
        "--report",
        "failed.html",
    ]);
    assert_eq!(failed.code(), Some(1), "{}", failed.stderr());
    let page = std::fs::read_to_string(s.path("failed.html")).unwrap();
    assert!(
        page.contains(r#"data-stage="count_rows" data-status="failed""#),
        "{page}"
    );
    assert!(page.contains(r##"failed at <a href="#stage-count_rows">count_rows</a>"##));
    // The error as the run printed it: the command's exit status.
    let error = page
        .split(r#"<pre class="error">"#)
        .nth(1)
        .expect("the error")
        .split("</pre>")
        .next()
        .unwrap();
    assert!(
        error.contains("count_rows") && error.contains("exited with status 3"),
        "{error}"
    );
    assert!(page.contains(r#"data-stage="train" data-status="fresh""#));
    assert!(
        page.contains("<title>train (train): fresh (ran)</title>"),
        "the last run computed train"
    );
    let report = s
        .pipe(&[
            "report",
            "tiny_raw.yaml",
            "--set",
            "train.epochs=1",
            "-o",
            "page.html",
        ])
        .ok();
    assert!(
        report.stderr().contains("report: page.html"),
        "{}",
        report.stderr()
    );
    let page = std::fs::read_to_string(s.path("page.html")).unwrap();
    // What --set changed against the YAML is shown for the stage it changed.
    assert!(
        page.contains("<tr><td>epochs</td><td>2</td><td>1</td></tr>"),
        "{page}"
    );

    // The page of the last run with the epochs it ran with.
    let last_run_page = || {
        let args = [
            "report",
            "tiny_raw.yaml",
            "--set",
            "train.epochs=1",
            "-o",
            "page.html",
        ];
        s.pipe(&args).ok();
        std::fs::read_to_string(s.path("page.html")).unwrap()
    };

    // Fixed and run again, then once more with another seed: three runs to compare.
    s.write("tiny_raw.yaml", &yaml);
    s.pipe(&["run", "tiny_raw.yaml", "--set", "train.epochs=1"])
        .ok();
    let page = last_run_page();
    assert!(
        page.contains(r#"data-stage="count_rows" data-status="fresh""#),
        "a success clears the failure"
    );
    assert!(
        page.contains("<title>train (train): fresh (cached)</title>"),
        "the second run reused train"
    );
    s.pipe(&[
        "run",
        "tiny_raw.yaml",
        "--set",
        "train.epochs=1",
        "--seed",
        "9",
    ])
    .ok();
    s.pipe(&["report", "tiny_raw.yaml", "--runs", "-o", "runs.html"])
        .ok();
    let page = std::fs::read_to_string(s.path("runs.html")).unwrap();
    let runs = page.matches(r#"<tr data-run="tiny_raw #"#).count();
    assert_eq!(runs, 3, "{page}");
    let first = page
        .split(r#"<tr data-run="tiny_raw #1">"#)
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(first.contains("failed at count_rows"), "{first}");
    for setting in ["count_rows.command", "env.seed"] {
        assert!(
            page.contains(&format!(r#"<tr data-setting="{setting}">"#)),
            "{setting} differs: {page}"
        );
    }
    assert!(
        !page.contains(r#"<tr data-setting="train.epochs">"#),
        "epochs are the same in every run"
    );
    // Runs 2 and 3 differ only in their seed: one group, mean ± sd.
    let groups = page
        .split(r#"<table id="seed-groups">"#)
        .nth(1)
        .expect("a seed group");
    assert!(
        groups.contains("tiny_raw #2, tiny_raw #3") && groups.contains(" ± "),
        "{groups}"
    );
    assert!(page.contains(r#"<figure class="chart" id="overlaid-curves">"#));

    // Two pipelines: their last runs side by side.
    std::fs::copy(s.path("tiny_raw.yaml"), s.path("other.yaml")).unwrap();
    s.pipe(&[
        "run",
        "other.yaml",
        "--set",
        "train.epochs=1",
        "--set",
        "train.lr=0.02",
    ])
    .ok();
    s.pipe(&["report", "tiny_raw.yaml", "other.yaml", "-o", "two.html"])
        .ok();
    let page = std::fs::read_to_string(s.path("two.html")).unwrap();
    assert!(
        page.contains(r#"<tr data-run="tiny_raw">"#) && page.contains(r#"<tr data-run="other">"#)
    );
    assert!(page.contains(r#"<tr data-setting="train.lr">"#), "{page}");

    // A corrupt entry: the page says so by status, and still renders the rest.
    let evaluations: Vec<_> = walk(&s.path(".pipe/entries"))
        .into_iter()
        .filter(|p| {
            p.ends_with("outputs/metrics/doc.json")
                && std::fs::read_to_string(p).unwrap().contains("per_class")
        })
        .collect();
    assert!(!evaluations.is_empty(), "evaluate's metrics");
    for metrics in evaluations {
        std::fs::write(&metrics, b"{ not json").unwrap();
    }
    let page = last_run_page();
    assert!(
        !page.contains(r#"data-stage="evaluate" data-status="fresh""#),
        "{page}"
    );
    assert!(page.contains(r#"data-stage="train" data-status="fresh""#));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
