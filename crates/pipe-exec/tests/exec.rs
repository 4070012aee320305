//! The `exec` stage through the library API: placeholders, caching on the
//! command line, inputs and files, and failures that leave nothing behind.

use std::path::Path;

use pipe_core::{run, Cache, NullSink, Pipeline, RecordingSink, RunOptions, StageOutcome};
use pipe_exec::{CommandLine, Exec, ExecConfig};
use pipe_toy as _;

fn pipeline(dir: &Path, yaml: &str) -> Result<Pipeline, String> {
    Pipeline::from_yaml_str(&dir.join("p.yaml").display().to_string(), yaml, &[])
        .map_err(|e| e.to_string())
}

fn two_steps(dir: &Path, command: &str) -> String {
    let script = dir.join("shout.sh");
    std::fs::write(&script, "tr a-z A-Z < \"$1\" > \"$2\"\n").unwrap();
    format!(
        r#"
stages:
  write:
    kind: exec
    command: "printf 'hello %s\n' {command} > {{out.greeting}}"
    outputs: {{ greeting: greeting.txt }}
  shout:
    kind: exec
    command: ["sh", "{script}", "{{in.text}}/greeting.txt", "{{out.loud}}"]
    files: ["{script}"]
    outputs: {{ loud: loud.txt }}
    inputs: {{ text: write.greeting }}
"#,
        script = script.display()
    )
}

#[test]
fn runs_chains_and_caches_commands() {
    let dir = tempfile::tempdir().unwrap();
    // Spaces and quotes in the paths the placeholders expand to.
    let cache = Cache::open(dir.path().join("my 'cache' $HOME")).unwrap();
    let p = pipeline(dir.path(), &two_steps(dir.path(), "world")).unwrap();
    let report = run(&p, &cache, &RunOptions::default(), &NullSink).unwrap();
    assert_eq!(report.ran(), ["write", "shout"]);
    let loud = report.stage("shout").unwrap().outputs["loud"].join("loud.txt");
    assert_eq!(std::fs::read_to_string(loud).unwrap(), "HELLO WORLD\n");

    // Same command line, same inputs: cached.
    let again = run(&p, &cache, &RunOptions::default(), &NullSink).unwrap();
    assert!(again.ran().is_empty());
    assert!(again
        .stages
        .iter()
        .all(|s| s.outcome == StageOutcome::Cached));

    // The command line is part of the key, and the change flows downstream.
    let changed = pipeline(dir.path(), &two_steps(dir.path(), "there")).unwrap();
    let report = run(&changed, &cache, &RunOptions::default(), &NullSink).unwrap();
    assert_eq!(report.ran(), ["write", "shout"]);

    // A declared file's contents are part of the key.
    std::fs::write(
        dir.path().join("shout.sh"),
        "tr a-z A-Z < \"$1\" | rev > \"$2\"\n",
    )
    .unwrap();
    let report = run(&changed, &cache, &RunOptions::default(), &NullSink).unwrap();
    assert_eq!(report.ran(), ["shout"]);
    let loud = report.stage("shout").unwrap().outputs["loud"].join("loud.txt");
    assert_eq!(std::fs::read_to_string(loud).unwrap(), "EREHT OLLEH\n");
}

#[test]
fn any_artifact_can_feed_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let p = pipeline(
        dir.path(),
        r#"
stages:
  data:
    kind: toy_numbers
    count: 5
  count:
    kind: exec
    command: "ls {in.numbers} > {out.listing}"
    outputs: { listing: listing.txt }
    inputs: { numbers: data.values }
"#,
    )
    .unwrap();
    let report = run(&p, &cache, &RunOptions::default(), &NullSink).unwrap();
    let listing = std::fs::read_to_string(
        report.stage("count").unwrap().outputs["listing"].join("listing.txt"),
    )
    .unwrap();
    assert!(
        !listing.trim().is_empty(),
        "the input directory holds the upstream artifact's files"
    );
}

#[test]
fn a_failing_command_shows_its_stderr_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = Cache::open(&cache_dir).unwrap();
    let p = pipeline(
        dir.path(),
        r#"
stages:
  fail:
    kind: exec
    command: "echo partial > {out.result}; echo 'bad row 7: expected 3 fields' >&2; exit 3"
    outputs: { result: result.txt }
"#,
    )
    .unwrap();
    let events = RecordingSink::default();
    let err = run(&p, &cache, &RunOptions::default(), &events).unwrap_err();
    let text = pipe_core::error_chain(&err);
    assert!(
        text.contains("exited with status 3") && text.contains("bad row 7: expected 3 fields"),
        "{text}"
    );
    // Nothing cached: the next run runs it again (and fails again).
    assert!(run(&p, &cache, &RunOptions::default(), &NullSink).is_err());
    let leftovers: Vec<_> = walk(&cache_dir)
        .into_iter()
        .filter(|p| p.ends_with("result.txt"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "partial output left behind: {leftovers:?}"
    );

    let p = pipeline(
        dir.path(),
        r#"
stages:
  forgetful:
    kind: exec
    command: "true {out.result}"
    outputs: { result: result.txt }
"#,
    )
    .unwrap();
    let text =
        pipe_core::error_chain(&run(&p, &cache, &RunOptions::default(), &NullSink).unwrap_err());
    assert!(text.contains("did not write output `result`"), "{text}");

    let p = pipeline(
        dir.path(),
        r#"
stages:
  slow:
    kind: exec
    command: "sleep 5; touch {out.result}"
    outputs: { result: result.txt }
    timeout_s: 0.2
"#,
    )
    .unwrap();
    let text =
        pipe_core::error_chain(&run(&p, &cache, &RunOptions::default(), &NullSink).unwrap_err());
    assert!(text.contains("timeout_s"), "{text}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn config_mistakes_are_caught_when_the_pipeline_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "command: \"cat {out.missing}\"\n    outputs: { result: r.txt }",
            "does not declare `missing`",
        ),
        (
            "command: \"echo hi\"\n    outputs: { result: r.txt }",
            "never given to the command",
        ),
        ("command: []", "`command` is empty"),
        (
            "command: \"cp x {out.r}\"\n    outputs: { r: ../escape.txt }",
            "plain name",
        ),
        (
            "command: \"cp x {out.r}\"\n    outputs: { r: .. }",
            "plain name",
        ),
        (
            "command: \"echo\"\n    output: {}",
            "unknown field `output`",
        ),
    ];
    for (body, expected) in cases {
        let yaml = format!("stages:\n  step:\n    kind: exec\n    {body}\n");
        let err = pipeline(dir.path(), &yaml).unwrap_err();
        assert!(
            err.contains(expected) && err.contains("p.yaml"),
            "{body}: {err}"
        );
    }
    // An input named by a placeholder must be wired.
    let err = pipeline(dir.path(), "stages:\n  step:\n    kind: exec\n    command: \"cat {in.data}/x > {out.r}\"\n    outputs: { r: r.txt }\n")
        .unwrap_err();
    assert!(err.contains("required input `data`"), "{err}");
}

#[test]
fn timeout_s_is_bounded_when_the_pipeline_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let with_timeout = |timeout: &str| {
        pipeline(
            dir.path(),
            &format!("stages:\n  slow:\n    kind: exec\n    command: \"touch {{out.result}}\"\n    outputs: {{ result: result.txt }}\n    timeout_s: {timeout}\n"),
        )
    };
    assert!(with_timeout("0.5").is_ok());
    assert!(with_timeout(&pipe_exec::MAX_TIMEOUT_S.to_string()).is_ok());
    for bad in ["0", "-1", "1e300", "2592001"] {
        let err = with_timeout(bad).unwrap_err();
        assert!(
            err.contains(
                "stage `slow` (exec): timeout_s must be positive and at most 2592000 (30 days)"
            ),
            "{bad}: {err}"
        );
    }
    // Values YAML has and JSON lacks, checked on the config itself.
    for bad in [f64::NAN, f64::INFINITY] {
        let config = ExecConfig {
            command: CommandLine::Shell("true".into()),
            timeout_s: Some(bad),
            ..ExecConfig::default()
        };
        let err = pipe_core::Stage::validate(&Exec::new(config).unwrap()).unwrap_err();
        assert_eq!(err.setting, "timeout_s", "{bad}");
    }
}
