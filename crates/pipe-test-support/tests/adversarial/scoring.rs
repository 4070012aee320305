//! `pipe score` and `pipe bundle` as an unattended batch job meets them:
//! hostile files, ordinary mistakes, links, signals and several processes
//! sharing one output directory. Exit 0 must mean every input row was
//! scored exactly once by one model; anything else is a named error, with
//! nothing half-written left behind and nobody else's files touched.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pipe::polars::prelude::*;
use pipe_test_support::{test_records, Limited, Scratch};
use polars_parquet_format::thrift::protocol::{TCompactInputProtocol, TCompactOutputProtocol};
use polars_parquet_format::{FileMetaData, PageHeader, SchemaElement};

use super::assert_extra_memory_below;

/// Loading libtorch and a tiny model, then a few thousand rows: seconds.
const LIMIT: Duration = Duration::from_secs(60);

/// tests/pipelines/tiny_raw.yaml trained once for this test binary, as two
/// bundles of different models: `bundle` (seed 5) and `bundle2` (seed 6).
fn trained() -> &'static Scratch {
    static TRAINED: OnceLock<Scratch> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let s = Scratch::tiny_raw();
        s.pipe(&["bundle", "tiny_raw.yaml", "bundle", "-q"]).ok();
        s.pipe(&["bundle", "tiny_raw.yaml", "bundle2", "--seed", "6", "-q"])
            .ok();
        s
    })
}

/// A scratch directory with copies of both bundles and the 150 test
/// records `copies` times over (fresh ids) as `in/records.parquet`.
fn scratch(copies: usize) -> Scratch {
    let s = Scratch::new();
    for bundle in ["bundle", "bundle2"] {
        copy_dir(&trained().path(bundle), &s.path(bundle));
    }
    std::fs::create_dir_all(s.path("in")).unwrap();
    let mut frame = test_records(copies);
    ParquetWriter::new(std::fs::File::create(s.path("in/records.parquet")).unwrap())
        .with_row_group_size(Some(1000))
        .finish(&mut frame)
        .unwrap();
    s
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn write_csv(path: &Path, frame: &DataFrame) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    CsvWriter::new(std::fs::File::create(path).unwrap())
        .finish(&mut frame.clone())
        .unwrap();
}

/// `pipe score MODEL --input INPUT --output OUTPUT --id-column Id` and `extra`.
fn score<'a>(model: &'a str, input: &'a str, output: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "score",
        model,
        "--input",
        input,
        "--output",
        output,
        "--id-column",
        "Id",
    ];
    args.extend_from_slice(extra);
    args
}

fn assert_fails(run: &Limited, code: i32, needles: &[&str]) {
    assert!(
        !run.timed_out,
        "still running after {:.0} s\nstderr:\n{}",
        run.seconds, run.stderr
    );
    assert_eq!(
        run.code,
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "`{needle}` missing from stderr:\n{}",
            run.stderr
        );
    }
}

fn assert_ok(run: &Limited) {
    assert!(
        !run.timed_out,
        "still running after {:.0} s\nstderr:\n{}",
        run.seconds, run.stderr
    );
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What an output directory holds, checked whole: every part is named by a
/// manifest of the directory's one job, nothing temporary is left, and the
/// ids are returned in part order.
struct Output {
    ids: Vec<i64>,
    models: BTreeSet<String>,
    shard_counts: BTreeSet<u64>,
    complete_shards: usize,
}

fn read_output(dir: &Path) -> Output {
    let mut out = Output {
        ids: Vec::new(),
        models: BTreeSet::new(),
        shard_counts: BTreeSet::new(),
        complete_shards: 0,
    };
    let mut named_parts = BTreeSet::new();
    for name in names(dir) {
        assert!(
            !name.starts_with('.'),
            "a temp left in {}: {name}",
            dir.display()
        );
        if !(name.starts_with("_part-") && name.ends_with(".json")) {
            continue;
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(&name)).unwrap()).unwrap();
        out.models
            .insert(manifest["model"].as_str().unwrap().to_string());
        out.shard_counts
            .insert(manifest["shard"]["count"].as_u64().unwrap());
        out.complete_shards += 1;
        if let Some(part) = manifest["part"].as_str() {
            named_parts.insert(part.to_string());
            let frame = ParquetReader::new(std::fs::File::open(dir.join(part)).unwrap())
                .finish()
                .unwrap();
            assert_eq!(
                frame.height() as u64,
                manifest["rows"].as_u64().unwrap(),
                "{part}"
            );
            // CSV carries the id as text.
            let ids = frame.column("Id").unwrap().cast(&DataType::Int64).unwrap();
            out.ids.extend(ids.i64().unwrap().into_no_null_iter());
        }
    }
    let parts: BTreeSet<String> = names(dir)
        .into_iter()
        .filter(|n| n.starts_with("part-"))
        .collect();
    assert_eq!(
        parts,
        named_parts,
        "every part in {} is named by a manifest",
        dir.display()
    );
    out
}

fn unique(ids: &[i64]) -> bool {
    ids.iter().collect::<BTreeSet<_>>().len() == ids.len()
}

// ---- pipe bundle ----

#[test]
fn bundle_replaces_only_a_bundle_it_wrote_and_deletes_nothing_else() {
    let s = trained();
    let refused = |dir: &str| {
        let run = s.pipe_limited(&["bundle", "tiny_raw.yaml", dir], LIMIT);
        assert_fails(&run, 1, &["is not a bundle", "nothing was removed"]);
    };
    // A directory holding a `bundle.json` beside the user's own files.
    std::fs::create_dir_all(s.path("proj/src")).unwrap();
    std::fs::write(s.path("proj/bundle.json"), "{}").unwrap();
    std::fs::write(s.path("proj/notes.txt"), "mine").unwrap();
    refused("proj");
    assert_eq!(
        std::fs::read_to_string(s.path("proj/notes.txt")).unwrap(),
        "mine"
    );
    assert!(s.path("proj/src").is_dir() && s.path("proj/bundle.json").is_file());
    // The working directory itself, holding the pipeline, its data and cache.
    let here = s.dir.path().to_str().unwrap().to_string();
    refused(&here);
    refused(".");
    assert!(
        s.path("tiny_raw.yaml").is_file()
            && s.path("data/raw/train.json").is_file()
            && s.path(".pipe").is_dir()
    );

    // New, empty, or exactly a bundle: written, and replaced.
    std::fs::create_dir_all(s.path("empty")).unwrap();
    for dir in ["fresh", "fresh", "empty"] {
        assert_ok(&s.pipe_limited(&["bundle", "tiny_raw.yaml", dir], LIMIT));
    }
    // A bundle with one file more, at any depth, is no longer only ours.
    std::fs::write(s.path("fresh/model/README.txt"), "notes").unwrap();
    let run = s.pipe_limited(&["bundle", "tiny_raw.yaml", "fresh"], LIMIT);
    assert_fails(
        &run,
        1,
        &["fresh", "model/README.txt", "nothing was removed"],
    );
    assert!(s.path("fresh/model/README.txt").is_file());
    assert!(
        names(s.dir.path())
            .iter()
            .all(|n| !n.contains(".tmp-") && !n.contains(".old-")),
        "{:?}",
        names(s.dir.path())
    );
}

#[test]
fn a_bundle_is_loaded_only_from_the_regular_files_a_bundle_holds() {
    let s = scratch(1);
    // A link to a device inside the model: reading it would never end.
    copy_dir(&s.path("bundle"), &s.path("linked"));
    std::os::unix::fs::symlink("/dev/zero", s.path("linked/model/weights.extra")).unwrap();
    let run = s.pipe_limited(&score("linked", "in/records.parquet", "out/a", &[]), LIMIT);
    assert_fails(&run, 1, &["linked", "not a regular file or directory"]);
    // A width no batch can hold.
    copy_dir(&s.path("bundle"), &s.path("wide"));
    let options = s.path("wide/vectorizer/vectorizer.json");
    let text = std::fs::read_to_string(&options)
        .unwrap()
        .replace("\"max_len\":32", "\"max_len\":1e9");
    assert!(text.contains("1e9"), "{text}");
    std::fs::write(&options, text).unwrap();
    let run = s.pipe_limited(&score("wide", "in/records.parquet", "out/b", &[]), LIMIT);
    assert_fails(&run, 1, &["vectorizer.json"]);
    assert!(!s.path("out").exists(), "nothing was written");
}

// ---- what the input names ----

#[test]
fn a_file_reached_twice_is_read_once_and_links_do_not_loop() {
    let s = scratch(1);
    write_csv(&s.path("in/d/records.csv"), &test_records(1));
    std::fs::create_dir_all(s.path("in/d/sub")).unwrap();
    std::os::unix::fs::symlink(".", s.path("in/d/sub/self")).unwrap();
    std::os::unix::fs::symlink("..", s.path("in/d/sub/up")).unwrap();
    std::os::unix::fs::symlink("../records.csv", s.path("in/d/sub/again.csv")).unwrap();
    for (output, input, extra) in [
        ("out/dir", "in/d", &[][..]),
        ("out/glob", "in/d/**/*.csv", &[][..]),
        ("out/followed", "in/d", &["--follow-links"][..]),
        (
            "out/followed-glob",
            "in/d/**/*.csv",
            &["--follow-links"][..],
        ),
    ] {
        let run = s.pipe_limited(&score("bundle", input, output, extra), LIMIT);
        assert_ok(&run);
        let out = read_output(&s.path(output));
        assert_eq!(
            out.ids.len(),
            150,
            "{input} {extra:?}: each row once\n{}",
            run.stderr
        );
        assert!(unique(&out.ids));
    }
}

// ---- one output directory, one job ----

/// Six processes started together over one output directory: shards 0/2 and
/// 1/2 of one bundle (each twice), shard 0/3 of it, and shard 0/2 of
/// another bundle. Whichever job comes first owns the directory; the others
/// are refused before they score anything, and duplicates of a running shard
/// are refused too. Repeated, since the order differs each time.
#[test]
#[ignore = "slow: six processes, three rounds (CONTRIBUTING.md)"]
fn one_output_directory_holds_one_jobs_rows_each_once() {
    let s = scratch(30);
    let all: BTreeSet<i64> = test_records(30)
        .column("Id")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    for round in 0..3 {
        let output = format!("out/round{round}");
        let jobs: [(&str, &str); 6] = [
            ("bundle", "0/2"),
            ("bundle", "1/2"),
            ("bundle", "0/2"),
            ("bundle", "1/2"),
            ("bundle", "0/3"),
            ("bundle2", "0/2"),
        ];
        let children: Vec<_> = jobs
            .iter()
            .map(|(model, shard)| {
                let args = score(
                    model,
                    "in/records.parquet",
                    &output,
                    &["--shard", shard, "--batch-rows", "100", "--json"],
                );
                s.spawn_env(&args, &[], Stdio::piped())
            })
            .collect();
        let mut scored = 0;
        for (child, job) in children.into_iter().zip(jobs) {
            let out = child.wait_with_output().unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            match out.status.code() {
                Some(0) => scored += 1,
                Some(1) => {
                    assert!(
                        stderr.contains("belongs to another job")
                            || stderr.contains("is being scored by another process"),
                        "round {round}, {job:?}: refused without saying why:\n{stderr}"
                    );
                    assert!(
                        !stdout.contains(r#""event":"batch""#),
                        "round {round}, {job:?}: refused after scoring:\n{stdout}"
                    );
                }
                other => panic!("round {round}, {job:?}: exit {other:?}\n{stderr}"),
            }
        }
        assert!(scored >= 1, "round {round}: some job won");
        let out = read_output(&s.path(&output));
        assert_eq!(out.models.len(), 1, "round {round}: one model's rows");
        assert_eq!(out.shard_counts.len(), 1, "round {round}: one split");
        assert!(unique(&out.ids), "round {round}: each row once");
        assert!(out.ids.iter().all(|id| all.contains(id)));
        let count = *out.shard_counts.iter().next().unwrap() as usize;
        if out.complete_shards == count {
            assert_eq!(
                out.ids.len(),
                all.len(),
                "round {round}: a complete job has every row"
            );
        }
        let left = names(&s.path(&output));
        assert!(
            left.iter()
                .all(|n| n == "_job.lock" || !n.ends_with(".lock") && !n.starts_with('.')),
            "shard locks go with their shards: {left:?}"
        );
    }
}

/// A crash after the part is in place but before its manifest: the part is
/// not taken as done, another job cannot mix its rows in, and the same job
/// run again completes it.
#[test]
fn a_part_without_its_manifest_is_never_counted_nor_mixed_with_another_jobs() {
    let s = scratch(2).lab();
    let crashed = s.pipe_limited_env(
        &score("bundle", "in/records.parquet", "out", &[]),
        &[("PIPE_FAULT", "score-before-manifest")],
        LIMIT,
    );
    assert_eq!(crashed.code, None, "aborted on purpose: {}", crashed.stderr);
    assert!(
        s.path("out/part-00000-of-00001.parquet").is_file()
            && !s.path("out/_part-00000-of-00001.json").exists()
    );
    for other in [&["--shard", "0/2"][..], &["--top-k", "2"][..]] {
        let run = s.pipe_limited(&score("bundle", "in/records.parquet", "out", other), LIMIT);
        assert_fails(&run, 1, &["belongs to another job"]);
    }
    let run = s.pipe_limited(&score("bundle2", "in/records.parquet", "out", &[]), LIMIT);
    assert_fails(&run, 1, &["belongs to another job", "different model"]);
    assert_ok(&s.pipe_limited(&score("bundle", "in/records.parquet", "out", &[]), LIMIT));
    let out = read_output(&s.path("out"));
    assert_eq!((out.ids.len(), out.complete_shards), (300, 1));
    assert!(unique(&out.ids));
}

/// A mistake found while scoring leaves the directory free for the
/// corrected run: no job record, part or lock stays behind.
#[test]
fn a_job_that_fails_with_nothing_committed_gives_the_directory_up() {
    let s = scratch(1);
    let run = s.pipe_limited(
        &score(
            "bundle",
            "in/records.parquet",
            "out",
            &["--text-column", "Id"],
        ),
        LIMIT,
    );
    assert_fails(&run, 1, &["column `Id` holds i64, not text"]);
    assert_eq!(
        names(&s.path("out")),
        BTreeSet::from(["_job.lock".to_string()]),
        "only the lock file, which is never removed"
    );
    assert_ok(&s.pipe_limited(&score("bundle2", "in/records.parquet", "out", &[]), LIMIT));
    assert_eq!(read_output(&s.path("out")).ids.len(), 150);
}

// ---- files that lie ----

/// The file's footer, decoded, for a test to change and write back.
fn footer(path: &Path) -> (Vec<u8>, FileMetaData) {
    let bytes = std::fs::read(path).unwrap();
    let len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let start = bytes.len() - 8 - len;
    let mut protocol = TCompactInputProtocol::new(&bytes[start..bytes.len() - 8], len);
    let meta = FileMetaData::read_from_in_protocol(&mut protocol).unwrap();
    (bytes[..start].to_vec(), meta)
}

fn write_with_footer(path: &Path, body: &[u8], meta: &FileMetaData) {
    let mut encoded = Vec::new();
    meta.write_to_out_protocol(&mut TCompactOutputProtocol::new(&mut encoded))
        .unwrap();
    let mut bytes = body.to_vec();
    bytes.extend(&encoded);
    bytes.extend((encoded.len() as u32).to_le_bytes());
    bytes.extend(b"PAR1");
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_parquet_footer_that_lies_about_its_rows_is_refused() {
    let s = scratch(1);
    let (body, meta) = footer(&s.path("in/records.parquet"));
    /// A footer's lie: the file's name, the change, what the error says.
    type Lie = (&'static str, fn(&mut FileMetaData), &'static str);
    let cases: [Lie; 3] = [
        (
            "too-many",
            |m| m.num_rows = 1_000_000_000_000_000,
            "row groups hold 150",
        ),
        (
            "too-many-everywhere",
            |m| {
                m.num_rows = 1_000_000_000_000_000;
                m.row_groups[0].num_rows = 1_000_000_000_000_000;
            },
            "holds 150 values",
        ),
        (
            "too-few",
            |m| {
                m.num_rows = 100;
                m.row_groups[0].num_rows = 100;
            },
            "holds 150 values",
        ),
    ];
    for (name, change, needle) in cases {
        let mut lying = meta.clone();
        change(&mut lying);
        let file = format!("in/{name}.parquet");
        write_with_footer(&s.path(&file), &body, &lying);
        let run = s.pipe_limited(&score("bundle", &file, &format!("out/{name}"), &[]), LIMIT);
        assert_fails(&run, 1, &[&file, needle]);
        assert!(!s.path(&format!("out/{name}")).exists());
    }
}

#[test]
fn a_parquet_page_with_a_negative_value_count_is_refused() {
    let s = scratch(1);
    let path = s.path("in/records.parquet");
    let (mut body, meta) = footer(&path);
    let chunk = meta.row_groups[0]
        .columns
        .iter()
        .filter_map(|c| c.meta_data.as_ref())
        .find(|c| c.path_in_schema == ["Text"])
        .unwrap();
    let at = chunk
        .dictionary_page_offset
        .unwrap_or(chunk.data_page_offset) as usize;
    let mut rest = &body[at..];
    let before = rest.len();
    let mut header =
        PageHeader::read_from_in_protocol(&mut TCompactInputProtocol::new(&mut rest, before))
            .unwrap();
    let header_len = before - rest.len();
    // The same varint length: 150 and -150 both take two bytes.
    if let Some(h) = header.dictionary_page_header.as_mut() {
        h.num_values = -h.num_values;
    } else if let Some(h) = header.data_page_header.as_mut() {
        h.num_values = -h.num_values;
    }
    let mut encoded = Vec::new();
    header
        .write_to_out_protocol(&mut TCompactOutputProtocol::new(&mut encoded))
        .unwrap();
    assert_eq!(encoded.len(), header_len);
    body[at..at + header_len].copy_from_slice(&encoded);
    write_with_footer(&path, &body, &meta);
    let run = s.pipe_limited(&score("bundle", "in/records.parquet", "out", &[]), LIMIT);
    assert_fails(
        &run,
        1,
        &["in/records.parquet", "column `Text`", "counts -"],
    );
    assert_extra_memory_below(&run, 300.0);
}

#[test]
fn a_parquet_schema_nested_twenty_thousand_levels_is_refused() {
    let s = scratch(1);
    let group =
        |name: String| SchemaElement::new(None, None, None, name, 1, None, None, None, None, None);
    let mut schema: Vec<SchemaElement> = (0..20_000)
        .map(|level| group(format!("g{level}")))
        .collect();
    schema.push(SchemaElement::new(
        polars_parquet_format::Type::BYTE_ARRAY,
        None,
        None,
        "Text".into(),
        None,
        None,
        None,
        None,
        None,
        None,
    ));
    let meta = FileMetaData::new(1, schema, 0, vec![], None, None, None, None, None);
    write_with_footer(&s.path("in/deep.parquet"), b"PAR1", &meta);
    let run = s.pipe_limited(&score("bundle", "in/deep.parquet", "out", &[]), LIMIT);
    assert_fails(&run, 1, &["in/deep.parquet", "nests deeper than 64 levels"]);
}

/// An Arrow schema embedded in the footer that disagrees with the Parquet
/// schema: 1,000 nested lists (polars decodes it recursively), and one
/// over the size limit.
#[test]
fn a_lying_embedded_arrow_schema_is_bounded() {
    let s = scratch(1);
    // pyarrow writes the nested schema's IPC bytes, as a writer would.
    python(
        &s.path("in"),
        "import base64, pyarrow as pa\nt = pa.int64()\nfor _ in range(1000): t = pa.list_(t)\n\
         schema = pa.schema([('Id', pa.int64()), ('Text', pa.string()), ('Deep', t)])\n\
         open('deep.b64', 'w').write(base64.b64encode(schema.serialize().to_pybytes()).decode())",
    );
    let deep = std::fs::read_to_string(s.path("in/deep.b64")).unwrap();
    let (body, meta) = footer(&s.path("in/records.parquet"));
    for (name, value, outcome) in [
        ("deep", deep, None),
        ("huge", "A".repeat(2 << 20), Some("over the 1024 KiB limit")),
    ] {
        let mut lying = meta.clone();
        let kv = lying.key_value_metadata.get_or_insert_with(Vec::new);
        kv.retain(|kv| kv.key != "ARROW:schema");
        kv.push(polars_parquet_format::KeyValue::new(
            "ARROW:schema".to_string(),
            value,
        ));
        let file = format!("in/{name}.parquet");
        write_with_footer(&s.path(&file), &body, &lying);
        let run = s.pipe_limited(&score("bundle", &file, &format!("out/{name}"), &[]), LIMIT);
        match outcome {
            // Decoded within bounds: scored, or refused by name; never a crash.
            None => assert!(
                matches!(run.code, Some(0) | Some(1)) && !run.timed_out,
                "{name}: {:?}\n{}",
                run.code,
                run.stderr
            ),
            Some(needle) => assert_fails(&run, 1, &[&file, needle]),
        }
        assert_extra_memory_below(&run, 400.0);
    }
}

// ---- records too large or too deep ----

#[test]
fn a_text_over_the_record_limit_is_refused_by_row_in_bounded_memory() {
    let s = scratch(1);
    let huge = "word ".repeat(20 << 20);
    std::fs::write(
        s.path("in/huge.csv"),
        format!("Id,Text\n1,a bird\n2,{huge}\n3,a tree\n"),
    )
    .unwrap();
    std::fs::write(
        s.path("in/huge.jsonl"),
        format!("{{\"Id\":1,\"Text\":\"a bird\"}}\n{{\"Id\":2,\"Text\":\"{huge}\"}}\n"),
    )
    .unwrap();
    for (file, needle) in [
        (
            "in/huge.csv",
            "row 2: a record longer than the 16 MiB limit",
        ),
        ("in/huge.jsonl", "line 2: longer than the 16 MiB limit"),
    ] {
        let run = s.pipe_limited(&score("bundle", file, "out", &[]), LIMIT);
        assert_fails(&run, 1, &[file, needle]);
        assert_extra_memory_below(&run, 400.0);
    }
}

#[test]
fn a_long_text_under_the_limit_costs_only_the_tokens_kept() {
    let s = scratch(1);
    let long = ". ".repeat(5 << 20);
    std::fs::write(
        s.path("in/long.csv"),
        format!("Id,Text\n1,a bird\n2,{long}\n"),
    )
    .unwrap();
    let run = s.pipe_limited(&score("bundle", "in/long.csv", "out", &[]), LIMIT);
    assert_ok(&run);
    assert_extra_memory_below(&run, 400.0);
    assert_eq!(read_output(&s.path("out")).ids, [1, 2]);
}

/// Runs `script` with the venv's python (pyarrow), in `dir`.
fn python(dir: &Path, script: &str) {
    let out = std::process::Command::new("python")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("python with pyarrow (scripts/setup/ensure-venv.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 20,000 rows whose text is one 1 MB dictionary entry: a file of a few
/// hundred bytes that decodes to 20 GB of text. Read as text (no Arrow
/// schema) and as a categorical column (with one).
#[test]
#[ignore = "slow: 20,000 rows of a 1 MB text, twice (CONTRIBUTING.md)"]
fn rows_sharing_one_large_dictionary_string_score_in_bounded_time_and_memory() {
    let s = scratch(1);
    python(
        &s.path("in"),
        "import pyarrow as pa, pyarrow.parquet as pq\n\
         text = pa.DictionaryArray.from_arrays(pa.array([0] * 20000, pa.int32()), pa.array(['a small songbird ' * 61680]))\n\
         table = pa.table({'Id': pa.array(range(20000), pa.int64()), 'Text': text})\n\
         pq.write_table(table, 'plain.parquet', compression='zstd', store_schema=False)\n\
         pq.write_table(table, 'categorical.parquet', compression='zstd')",
    );
    for name in ["plain", "categorical"] {
        let file = format!("in/{name}.parquet");
        assert!(
            std::fs::metadata(s.path(&file)).unwrap().len() < 100_000,
            "{name}: a small file"
        );
        let run = s.pipe_limited(&score("bundle", &file, &format!("out/{name}"), &[]), LIMIT);
        assert_ok(&run);
        assert_extra_memory_below(&run, 600.0);
        let out = read_output(&s.path(&format!("out/{name}")));
        assert_eq!(out.ids.len(), 20_000);
    }
}

#[test]
fn a_json_line_nested_deeper_than_the_limit_is_refused_before_parsing() {
    let s = scratch(1);
    for depth in [600, 2000] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let file = format!("in/nested{depth}.jsonl");
        std::fs::write(
            s.path(&file),
            format!(
                "{{\"Id\":1,\"Text\":\"a bird\"}}\n{{\"Id\":2,\"Text\":\"x\",\"Deep\":{nested}}}\n"
            ),
        )
        .unwrap();
        let run = s.pipe_limited(&score("bundle", &file, "out", &[]), LIMIT);
        assert_fails(&run, 1, &[&file, "line 2: nested deeper than 64 levels"]);
        assert!(run.seconds < 30.0, "{:.1} s", run.seconds);
        assert_extra_memory_below(&run, 200.0);
    }
}

// ---- small mistakes ----

#[test]
fn small_mistakes_are_named_with_the_right_exit_code() {
    let s = scratch(1).lab();
    // An unclosed quote would swallow every row after it.
    std::fs::write(
        s.path("in/quote.csv"),
        "Id,Text\n1,\"a bird\n2,a tree\n3,a fish\n",
    )
    .unwrap();
    let run = s.pipe_limited(&score("bundle", "in/quote.csv", "out/quote", &[]), LIMIT);
    assert_fails(&run, 1, &["in/quote.csv", "never closed"]);
    // An empty CSV still has its columns checked.
    std::fs::write(s.path("in/empty.csv"), "").unwrap();
    let run = s.pipe_limited(
        &score(
            "bundle",
            "in/empty.csv",
            "out/empty",
            &["--text-column", "Nope"],
        ),
        LIMIT,
    );
    assert_fails(
        &run,
        1,
        &["in/empty.csv", "has no column", "(its columns: )"],
    );
    // A header alone: nothing to score, and that is complete.
    std::fs::write(s.path("in/header.csv"), "Id,Text\n").unwrap();
    assert_ok(&s.pipe_limited(&score("bundle", "in/header.csv", "out/header", &[]), LIMIT));
    // Usage errors are exit 2.
    let run = s.pipe_limited(
        &score(
            "bundle",
            "in/records.parquet",
            "out/zero",
            &["--batch-rows", "0"],
        ),
        LIMIT,
    );
    assert_fails(&run, 2, &["--batch-rows"]);
    // A panic inside the reader keeps its message.
    let run = s.pipe_limited_env(
        &score("bundle", "in/records.parquet", "out/panic", &[]),
        &[("PIPE_FAULT", "panic:score-read-batch")],
        LIMIT,
    );
    assert_fails(&run, 1, &["a panic here on purpose"]);
    assert_eq!(
        names(&s.path("out/panic")),
        BTreeSet::from(["_job.lock".to_string()])
    );
    // A bare glob names files in the working directory.
    std::fs::copy(s.path("in/records.parquet"), s.path("here.parquet")).unwrap();
    assert_ok(&s.pipe_limited(&score("bundle", "*.parquet", "out/bare-glob", &[]), LIMIT));
    assert_eq!(read_output(&s.path("out/bare-glob")).ids.len(), 150);
}

#[test]
fn size_settings_are_bounded_when_a_pipeline_is_loaded() {
    let s = trained();
    let run = s.pipe_limited(
        &[
            "run",
            "tiny_raw.yaml",
            "--set",
            "vectorize.max_len=10000000000",
        ],
        LIMIT,
    );
    assert_fails(&run, 2, &["max_len must be between 1 and 65536"]);
}

// ---- signals and changing inputs ----

/// Starts a scoring job with `--json` and small batches, calls `act` at its
/// first batch event, and returns its exit code and stderr.
fn act_at_first_batch(s: &Scratch, args: &[&str], act: impl FnOnce(u32)) -> (Option<i32>, String) {
    let mut child = s.spawn_env(args, &[], Stdio::piped());
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = Instant::now();
    let mut act = Some(act);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.unwrap().contains(r#""event":"batch""#) {
            if let Some(act) = act.take() {
                act(child.id());
            }
        }
        assert!(started.elapsed() < LIMIT, "still scoring after {LIMIT:?}");
    }
    assert!(act.is_none(), "it ended before its first batch");
    (child.wait().unwrap().code(), stderr.join().unwrap())
}

#[test]
fn ctrl_c_leaves_no_temp_file_and_no_manifest() {
    let s = scratch(200);
    let args = score(
        "bundle",
        "in/records.parquet",
        "out",
        &["--batch-rows", "10", "--json"],
    );
    let (code, stderr) = act_at_first_batch(&s, &args, |pid| {
        // SAFETY: kill(2) reads no memory; pid is our own child, still running.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    });
    assert_eq!(code, Some(130), "{stderr}");
    let left = names(&s.path("out"));
    let half_written = |n: &&String| {
        n.starts_with('.')
            || n.starts_with("part-")
            || (n.starts_with("_part-") && n.ends_with(".json"))
    };
    assert_eq!(left.iter().filter(half_written).count(), 0, "{left:?}");
}

#[test]
#[ignore = "slow: 30,000 rows in batches of 10 (CONTRIBUTING.md)"]
fn an_input_changed_while_it_is_scored_is_not_committed() {
    let s = scratch(1);
    write_csv(&s.path("in/big.csv"), &test_records(200));
    let args = score(
        "bundle",
        "in/big.csv",
        "out",
        &["--batch-rows", "10", "--json"],
    );
    let input = s.path("in/big.csv");
    let (code, stderr) = act_at_first_batch(&s, &args, move |_| {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap();
        std::io::Write::write_all(&mut file, b"999999,one more row\n").unwrap();
    });
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("in/big.csv") && stderr.contains("changed while it was being scored"),
        "{stderr}"
    );
    let out = read_output(&s.path("out"));
    assert_eq!(out.complete_shards, 0);
}
