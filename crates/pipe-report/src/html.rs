//! The page: one HTML string, its style and its one small script inline.

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::collect::{Output, RunView, StageView, Status};

/// The page for `view`; `build` names the `pipe` that wrote it.
pub fn render(view: &RunView, build: &str) -> String {
    let mut page = String::new();
    let title = format!("pipe report: {}", view.pipeline);
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title><style>{STYLE}</style></head><body>
<h1>{}</h1>"#,
        esc(&title),
        esc(&view.pipeline)
    );
    if let Some(d) = &view.description {
        let _ = write!(page, "<p>{}</p>", esc(d));
    }
    let _ = write!(
        page,
        r#"<p class="meta">From the cache, by pipe {}. Fresh: the result for the current config, inputs and code. Stale: what the cache holds is from an older run; the next run recomputes it.</p>"#,
        esc(build)
    );
    page.push_str("<h2>Stages</h2>");
    page.push_str(&dag(view));
    page.push_str(&stage_table(view));
    for stage in &view.stages {
        page.push_str(&stage_section(stage));
    }
    let _ = writeln!(page, "<script>{SCRIPT}</script></body></html>");
    page
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}\
h2{border-bottom:1px solid #ccc;margin-top:2em}section.stage{margin:1.5em 0;padding-top:.5em;border-top:1px solid #eee}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}\
th{background:#f4f4f4}th.sortable{cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.fresh{color:#1a7f37}.stale{color:#b35900}.never{color:#777}.meta{color:#555;font-size:13px}\
pre{background:#f8f8f8;padding:.5em;overflow:auto;max-height:24em;font-size:12px}\
figure{margin:1em 0;overflow:auto}tr.kept td{background:#eef6ee}.bar{background:#4a78b5;height:10px;display:inline-block}";

/// Click a header to sort by that column (numbers as numbers); without
/// JavaScript the tables stay in their first order.
const SCRIPT: &str = "document.querySelectorAll('table.sortable').forEach(function(t){\
t.querySelectorAll('th').forEach(function(th,i){th.classList.add('sortable');th.title='sort';\
th.addEventListener('click',function(){var b=t.tBodies[0],rows=Array.from(b.rows),\
asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';rows.sort(function(x,y){\
var p=x.cells[i].textContent,q=y.cells[i].textContent,m=parseFloat(p),n=parseFloat(q);\
var c=(!isNaN(m)&&!isNaN(n))?m-n:p.localeCompare(q);return asc?c:-c;});\
rows.forEach(function(r){b.appendChild(r);});});});});";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn status_class(status: &Status) -> &'static str {
    match status {
        Status::Fresh => "fresh",
        Status::Stale(_) => "stale",
        Status::NeverRun => "never",
    }
}

fn status_text(stage: &StageView) -> String {
    match (&stage.status, &stage.entry) {
        (Status::Fresh, _) => "fresh".into(),
        (Status::Stale(_), Some(_)) => "stale (older result shown)".into(),
        (Status::Stale(_), None) => "stale (no result cached)".into(),
        (Status::NeverRun, _) => "no result: never run, or its run failed".into(),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The pipeline as an SVG graph: a column per depth, an arrow per wire,
/// each node coloured by status and linking to its section.
fn dag(view: &RunView) -> String {
    let index = |name: &str| view.stages.iter().position(|s| s.name == name);
    let mut depth = vec![0usize; view.stages.len()];
    for (i, stage) in view.stages.iter().enumerate() {
        depth[i] = stage
            .upstream
            .iter()
            .filter_map(|(_, up, _)| index(up))
            .map(|j| depth[j] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut row = vec![0usize; view.stages.len()];
    let mut filled = std::collections::BTreeMap::<usize, usize>::new();
    for (i, d) in depth.iter().enumerate() {
        let n = filled.entry(*d).or_default();
        row[i] = *n;
        *n += 1;
    }
    let (node_w, node_h, col_w, row_h) = (150.0, 40.0, 190.0, 56.0);
    let pos = |i: usize| (10.0 + col_w * depth[i] as f64, 10.0 + row_h * row[i] as f64);
    let width = 20.0 + col_w * (depth.iter().max().copied().unwrap_or(0) + 1) as f64;
    let height = 20.0 + row_h * filled.values().max().copied().unwrap_or(1) as f64;
    let mut svg = format!(
        r##"<figure><svg id="dag" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" style="max-width:100%;height:auto" font-family="sans-serif" font-size="12"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>"##
    );
    for (i, stage) in view.stages.iter().enumerate() {
        for (_, up, _) in &stage.upstream {
            if let Some(j) = index(up) {
                let ((x1, y1), (x2, y2)) = (pos(j), pos(i));
                let _ = write!(
                    svg,
                    r##"<line x1="{}" y1="{}" x2="{x2}" y2="{}" stroke="#888" marker-end="url(#arrow)"/>"##,
                    x1 + node_w,
                    y1 + node_h / 2.0,
                    y2 + node_h / 2.0
                );
            }
        }
    }
    for (i, stage) in view.stages.iter().enumerate() {
        let (x, y) = pos(i);
        let fill = match stage.status {
            Status::Fresh => "#dff3e3",
            Status::Stale(_) => "#fde8cf",
            Status::NeverRun => "#eeeeee",
        };
        let _ = write!(
            svg,
            r##"<a href="#stage-{id}"><g class="node" data-stage="{id}" data-status="{status}"><title>{id} ({kind}): {text}</title><rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="5" fill="{fill}" stroke="#666"/><text x="{}" y="{}" font-weight="bold">{id}</text><text x="{}" y="{}" fill="#555">{kind}</text></g></a>"##,
            x + 6.0,
            y + 16.0,
            x + 6.0,
            y + 32.0,
            id = esc(&stage.name),
            kind = esc(&stage.kind),
            status = status_class(&stage.status),
            text = esc(&status_text(stage)),
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn stage_table(view: &RunView) -> String {
    let mut t = String::from(
        r#"<table id="stages" class="sortable"><thead><tr><th>stage</th><th>kind</th><th>status</th><th>seconds</th><th>key</th><th>outputs</th></tr></thead><tbody>"#,
    );
    for s in &view.stages {
        let (seconds, key, outputs) = match &s.entry {
            Some(e) => (
                format!("{:.2}", e.seconds),
                e.key_hash.chars().take(12).collect::<String>(),
                e.outputs
                    .iter()
                    .map(|(port, o)| format!("{} {}", esc(port), bytes(o.bytes)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => ("—".into(), "—".into(), String::new()),
        };
        let _ = write!(
            t,
            r##"<tr><td><a href="#stage-{n}">{n}</a></td><td>{}</td><td class="{}">{}</td><td class="num">{seconds}</td><td><code>{key}</code></td><td>{outputs}</td></tr>"##,
            esc(&s.kind),
            status_class(&s.status),
            esc(&status_text(s)),
            n = esc(&s.name),
        );
    }
    t.push_str("</tbody></table>");
    t
}

fn stage_section(stage: &StageView) -> String {
    let mut s = format!(
        r#"<section class="stage" id="stage-{n}"><h3>{n} <small>({})</small></h3><p class="{}">{}</p>"#,
        esc(&stage.kind),
        status_class(&stage.status),
        esc(&status_text(stage)),
        n = esc(&stage.name)
    );
    if let Status::Stale(reasons) = &stage.status {
        s.push_str("<ul>");
        let mut seen = std::collections::BTreeSet::new();
        for r in reasons.iter().filter(|r| seen.insert(r.as_str())) {
            let _ = write!(s, "<li>{}</li>", esc(r));
        }
        s.push_str("</ul>");
    }
    if !stage.upstream.is_empty() {
        let wires: Vec<String> = stage
            .upstream
            .iter()
            .map(|(port, up, out)| {
                format!(
                    "{} ← <a href=\"#stage-{up}\">{up}</a>.{}",
                    esc(port),
                    esc(out),
                    up = esc(up)
                )
            })
            .collect();
        let _ = write!(s, "<p>inputs: {}</p>", wires.join(", "));
    }
    if !stage.changed.is_empty() {
        s.push_str(r#"<table class="changed"><thead><tr><th>changed by --set</th><th>in the YAML</th><th>used</th></tr></thead><tbody>"#);
        for (path, old, new) in &stage.changed {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(path),
                esc(old),
                esc(new)
            );
        }
        s.push_str("</tbody></table>");
    }
    let config = serde_json::to_string_pretty(&stage.config).unwrap_or_default();
    let _ = write!(
        s,
        "<details><summary>config</summary><pre>{}</pre></details>",
        esc(&config)
    );
    if let Some(entry) = &stage.entry {
        if !entry.env.is_empty() {
            s.push_str(r#"<table class="env"><thead><tr><th>depends on</th><th>value</th></tr></thead><tbody>"#);
            for (k, v) in &entry.env {
                let _ = write!(s, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
            }
            s.push_str("</tbody></table>");
        }
        for (port, output) in &entry.outputs {
            s.push_str(&output_view(port, output));
        }
    }
    s.push_str("</section>");
    s
}

/// What an output shows: training and evaluation reports, charts, the
/// head of a CSV, small JSON; anything else by size.
fn output_view(port: &str, output: &Output) -> String {
    match output.type_name.as_str() {
        "json" => match read_json(&output.dir.join("doc.json")) {
            Ok(doc) if doc.get("epochs").is_some_and(Value::is_array) => training(&doc),
            Ok(doc) if doc.get("per_class").is_some_and(Value::is_object) => evaluation(&doc),
            Ok(doc) => {
                let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
                let shown: String = text.chars().take(20_000).collect();
                format!(
                    "<details><summary>{} (JSON)</summary><pre>{}</pre></details>",
                    esc(port),
                    esc(&shown)
                )
            }
            Err(e) => format!("<p class=\"stale\">{}: {}</p>", esc(port), esc(&e)),
        },
        "files" => files(port, &output.dir),
        other => format!(
            "<p class=\"meta\">{}: {} ({})</p>",
            esc(port),
            esc(other),
            bytes(output.bytes)
        ),
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

fn num(v: Option<&Value>, decimals: usize) -> String {
    match v.and_then(Value::as_f64) {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "—".into(),
    }
}

fn training(doc: &Value) -> String {
    let epochs = doc["epochs"].as_array().cloned().unwrap_or_default();
    let best = doc.get("best_epoch").and_then(Value::as_u64);
    let mut s = String::from("<h4>Training</h4>");
    let facts: Vec<String> = ["device", "precision", "train_rows", "validation_rows", "lr"]
        .iter()
        .filter_map(|k| doc.get(*k).map(|v| format!("{k}: {}", esc(&v.to_string()))))
        .chain(
            doc.get("cpu")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("cpu {k}: {}", esc(&v.to_string()))),
        )
        .collect();
    let _ = write!(s, "<p class=\"meta\">{}</p>", facts.join(" · "));
    s.push_str(r#"<table class="sortable epochs"><thead><tr><th>epoch</th><th>loss</th><th>accuracy</th><th>val loss</th><th>val accuracy</th><th>val macro-F1</th><th>lr</th><th>seconds</th></tr></thead><tbody>"#);
    for e in &epochs {
        let kept = best.is_some()
            && e.get("epoch").and_then(Value::as_u64) == best
            && epochs
                .iter()
                .any(|e| e.get("val_loss").is_some_and(|v| !v.is_null()));
        let _ = write!(
            s,
            r#"<tr{}><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            if kept {
                r#" class="kept" title="the model was kept from this epoch""#
            } else {
                ""
            },
            num(e.get("epoch"), 0),
            num(e.get("loss"), 4),
            num(e.get("accuracy"), 4),
            num(e.get("val_loss"), 4),
            num(e.get("val_accuracy"), 4),
            num(e.get("val_macro_f1"), 4),
            num(e.get("lr"), 6),
            num(e.get("seconds"), 2),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn evaluation(doc: &Value) -> String {
    let mut s = format!(
        r#"<h4>Evaluation</h4><p>accuracy <b id="accuracy">{}</b> · macro-F1 <b id="macro-f1">{}</b></p>"#,
        num(doc.get("accuracy"), 4),
        num(doc.get("macro_f1"), 4)
    );
    s.push_str(r#"<table id="per-class" class="sortable"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>"#);
    if let Some(classes) = doc["per_class"].as_object() {
        for (class, m) in classes {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                esc(class),
                num(m.get("precision"), 4),
                num(m.get("recall"), 4),
                num(m.get("f1"), 4),
                num(m.get("support"), 0)
            );
        }
    }
    s.push_str("</tbody></table>");
    s
}

/// An SVG a stage wrote, inline, if it is the plain drawing pipe's charts
/// are (no script, no event handlers, no foreign content).
fn inline_svg(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    // An event handler: ` on` + letters + `=`.
    let handler = lower.match_indices(" on").any(|(i, _)| {
        let rest = &lower[i + 3..];
        let name = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        name > 0 && rest[name..].trim_start().starts_with('=')
    });
    let plain = lower.trim_start().starts_with("<svg")
        && !handler
        && ![
            "<script",
            "javascript:",
            "<foreignobject",
            "href=\"http",
            "href='http",
        ]
        .iter()
        .any(|bad| lower.contains(bad));
    plain.then_some(text)
}

fn files(port: &str, dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return format!(
            "<p class=\"stale\">{}: cannot read {}</p>",
            esc(port),
            esc(&dir.display().to_string())
        );
    };
    let mut names: Vec<_> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut s = String::new();
    for name in names {
        let path = dir.join(&name);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if name.ends_with(".svg") && size < 4 << 20 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            match inline_svg(&text) {
                Some(svg) => {
                    let _ = write!(
                        s,
                        r#"<figure class="chart" data-file="{}">{svg}<figcaption>{}/{}</figcaption></figure>"#,
                        esc(&name),
                        esc(port),
                        esc(&name)
                    );
                }
                None => {
                    let _ = write!(
                        s,
                        "<p class=\"meta\">{}/{}: not shown (not a plain chart)</p>",
                        esc(port),
                        esc(&name)
                    );
                }
            }
        } else if name.ends_with(".csv") {
            s.push_str(&csv_view(port, &name, &path));
        } else {
            let _ = write!(
                s,
                "<p class=\"meta\">{}/{} ({})</p>",
                esc(port),
                esc(&name),
                bytes(size)
            );
        }
    }
    s
}

/// A CSV's first rows, and for a submission the count of each class.
fn csv_view(port: &str, name: &str, path: &Path) -> String {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut s = format!("<h4>{}/{}</h4>", esc(port), esc(name));
    let mut head = String::from(r#"<table class="csv-head">"#);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut rows = 0usize;
    for (i, line) in std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .enumerate()
    {
        let fields = csv_fields(&line);
        if i <= 10 {
            let cell = if i == 0 { "th" } else { "td" };
            head.push_str("<tr>");
            for f in &fields {
                let _ = write!(head, "<{cell}>{}</{cell}>", esc(f));
            }
            head.push_str("</tr>");
        }
        if i > 0 {
            rows += 1;
            if let Some(last) = fields.last() {
                *counts.entry(last.clone()).or_default() += 1;
            }
        }
    }
    head.push_str("</table>");
    let _ = write!(s, "<p class=\"meta\">{rows} rows; the first 10:</p>{head}");
    if name == "submission.csv" && rows > 0 {
        let most = counts.values().max().copied().unwrap_or(1);
        s.push_str(r#"<details open><summary>predicted classes</summary><table id="class-counts" class="sortable"><thead><tr><th>class</th><th>rows</th><th>share</th><th></th></tr></thead><tbody>"#);
        for (class, n) in &counts {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td class="num">{n}</td><td class="num">{:.1}%</td><td><span class="bar" style="width:{}px"></span></td></tr>"#,
                esc(class),
                100.0 * *n as f64 / rows as f64,
                (200 * n / most).max(1)
            );
        }
        s.push_str("</tbody></table></details>");
    }
    s
}

/// One CSV line's fields (RFC 4180 quoting; a line break inside quotes is
/// not followed, which pipe's own CSVs never have).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().expect("one").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_follow_quotes() {
        assert_eq!(csv_fields(r#"1,"a, ""b""",c"#), vec!["1", r#"a, "b""#, "c"]);
        assert_eq!(csv_fields(""), vec![""]);
    }

    #[test]
    fn only_plain_svg_is_inlined() {
        assert!(inline_svg("<svg><rect/></svg>").is_some());
        assert!(inline_svg("<svg><script>alert(1)</script></svg>").is_none());
        assert!(inline_svg("<svg onload=\"x()\"></svg>").is_none());
        assert!(inline_svg("<p>not svg</p>").is_none());
        // Words after a space are not handlers.
        assert!(inline_svg("<svg><text>kept on epoch 6</text></svg>").is_some());
    }
}

#[cfg(test)]
mod page_tests {
    use std::collections::BTreeMap;

    use super::render;
    use crate::collect::{Entry, Output, RunView, StageView, Status};

    fn view_with_metrics(doc: &serde_json::Value, dir: &std::path::Path) -> RunView {
        std::fs::create_dir_all(dir.join("metrics")).unwrap();
        std::fs::write(dir.join("metrics/doc.json"), doc.to_string()).unwrap();
        let output = Output {
            type_name: "json".into(),
            dir: dir.join("metrics"),
            bytes: 10,
        };
        RunView {
            pipeline: "p.yaml".into(),
            description: Some("<b>escaped</b>".into()),
            stages: vec![StageView {
                name: "evaluate".into(),
                kind: "evaluate".into(),
                config: serde_json::json!({}),
                changed: vec![],
                upstream: vec![],
                status: Status::Fresh,
                entry: Some(Entry {
                    key_hash: "abc".into(),
                    seconds: 0.5,
                    outputs: BTreeMap::from([("metrics".to_string(), output)]),
                    env: BTreeMap::new(),
                }),
            }],
        }
    }

    #[test]
    fn two_hundred_classes_one_class_and_missing_numbers_render() {
        let dir = tempfile::tempdir().unwrap();
        let many: serde_json::Map<String, serde_json::Value> = (0..200)
            .map(|i| {
                (
                    format!("class {i}"),
                    serde_json::json!({"precision": null, "recall": 0.5, "f1": null, "support": 3}),
                )
            })
            .collect();
        let doc = serde_json::json!({"accuracy": null, "macro_f1": 0.25, "per_class": many});
        let page = render(&view_with_metrics(&doc, dir.path()), "test");
        let table = page.split(r#"<table id="per-class""#).nth(1).unwrap();
        assert_eq!(
            table
                .split("</table>")
                .next()
                .unwrap()
                .matches("<tr>")
                .count(),
            201
        );
        assert!(page.contains(r#"<b id="accuracy">—</b>"#) && page.contains("0.2500"));
        assert!(page.contains("&lt;b&gt;escaped&lt;/b&gt;") && !page.contains("<b>escaped</b>"));
        let one = serde_json::json!({"accuracy": 1.0, "macro_f1": 1.0, "per_class": {"only": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 9}}});
        let page = render(&view_with_metrics(&one, dir.path()), "test");
        assert!(page.contains("<td>only</td>"));
    }
}
