//! `pipe report` through the binary on what goes wrong: a pipeline never
//! run, a run that failed half-way, a cache entry corrupted. The page in a
//! real browser is scripts/check-report's (the whole suite runs it).

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
fn a_run_that_failed_half_way_and_a_corrupt_entry_still_give_a_page() {
    let s = Scratch::tiny_raw();
    let yaml = std::fs::read_to_string(s.path("tiny_raw.yaml")).unwrap();
    s.write(
        "tiny_raw.yaml",
        &yaml.replace(
            "wc -l < {in.csv}/submission.csv > {out.count}",
            "cat {in.csv}/submission.csv > {out.count}; exit 3",
        ),
    );
    let failed = s.pipe(&["run", "tiny_raw.yaml", "--set", "train.epochs=1"]);
    assert_eq!(failed.code(), Some(1));
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
    assert!(
        page.contains(r#"data-stage="count_rows" data-status="never""#),
        "{page}"
    );
    assert!(page.contains(r#"data-stage="train" data-status="fresh""#));
    assert!(page.contains("no result: never run, or its run failed"));
    // What --set changed against the YAML is shown for the stage it changed.
    assert!(
        page.contains("<tr><td>epochs</td><td>2</td><td>1</td></tr>"),
        "{page}"
    );

    // A corrupt entry: the page says so by status, and still renders the rest.
    let metrics = walk(&s.path(".pipe/entries"))
        .into_iter()
        .find(|p| {
            p.ends_with("outputs/metrics/doc.json")
                && std::fs::read_to_string(p).unwrap().contains("per_class")
        })
        .expect("evaluate's metrics");
    std::fs::write(&metrics, b"{ not json").unwrap();
    s.pipe(&[
        "report",
        "tiny_raw.yaml",
        "--set",
        "train.epochs=1",
        "-o",
        "page.html",
    ])
    .ok();
    let page = std::fs::read_to_string(s.path("page.html")).unwrap();
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
