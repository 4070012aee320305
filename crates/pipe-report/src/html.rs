//! The page: one HTML string, its style and its one small script inline.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::collect::{Output, RunView, StageView, Status};

/// The page for `view`; `build` names the `pipe` that wrote it.
pub fn render(view: &RunView, build: &str) -> String {
    let results = crate::results::results(view);
    let mut page = head(&format!("pipe report: {}", view.pipeline));
    let _ = write!(page, "<h1>{}</h1>", esc(&view.pipeline));
    if let Some(d) = &view.description {
        let _ = write!(page, "<p>{}</p>", esc(d));
    }
    let sections = [
        ("training", "Training", &results.training),
        ("evaluation", "Evaluation", &results.evaluation),
        ("selection", "Model selection", &results.selection),
        ("submission", "Submission", &results.submission),
    ];
    let mut nav = vec![("summary", "Summary")];
    nav.extend(
        sections
            .iter()
            .filter(|(_, _, html)| !html.is_empty())
            .map(|(id, title, _)| (*id, *title)),
    );
    nav.push(("stages", "Stages"));
    let links: Vec<String> = nav
        .iter()
        .map(|(id, title)| format!(r##"<a href="#{id}">{title}</a>"##))
        .collect();
    let _ = write!(page, "<nav>{}</nav>", links.join(" · "));
    page.push_str(&summary(view, &results, build));
    for (id, title, html) in sections {
        if !html.is_empty() {
            let _ = write!(page, r#"<h2 id="{id}">{title}</h2>{html}"#);
        }
    }
    page.push_str(r#"<h2 id="stages">Stages</h2>"#);
    page.push_str(&stage_table(view));
    for stage in &view.stages {
        page.push_str(&stage_section(stage, &results.shown, &results.shown_files));
    }
    page.push_str(&foot());
    page
}

/// The page's head, up to the open body.
pub(crate) fn head(title: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title><style>{STYLE}</style></head><body>
"#,
        esc(title)
    )
}

pub(crate) fn foot() -> String {
    format!("<script>{SCRIPT}</script></body></html>\n")
}

/// When a run ended, in UTC.
pub(crate) fn when(unix: Option<u64>) -> String {
    unix.map_or_else(
        || "—".to_string(),
        |secs| {
            // humantime formats years up to 9999 only; a record edited by
            // hand may hold anything, and must not abort the page.
            if secs >= 253_402_300_800 {
                return format!("{secs} s after 1970 (not a date)");
            }
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            humantime::format_rfc3339_seconds(at)
                .to_string()
                .replace('T', " ")
                .replace('Z', " UTC")
        },
    )
}

/// The run in a few lines: its state, headline numbers, the DAG.
fn summary(view: &RunView, results: &crate::results::Results, build: &str) -> String {
    let mut s = String::from(r#"<h2 id="summary">Summary</h2>"#);
    let count = |f: fn(&Status) -> bool| view.stages.iter().filter(|s| f(&s.status)).count();
    let fresh = count(|s| matches!(s, Status::Fresh));
    let state = match view
        .stages
        .iter()
        .find(|s| matches!(s.status, Status::Failed(_)))
    {
        Some(failed) => format!(
            r##"<span class="failed">failed at <a href="#stage-{n}">{n}</a></span>"##,
            n = esc(&failed.name)
        ),
        _ if fresh == view.stages.len() => {
            r#"<span class="fresh">complete: every stage fresh</span>"#.to_string()
        }
        _ => format!(
            r#"<span class="stale">{fresh} of {} stages fresh; the others would run again</span>"#,
            view.stages.len()
        ),
    };
    let _ = write!(s, r#"<p class="headline" id="run-state">{state}</p>"#);
    if let Some((accuracy, macro_f1)) = results.headline {
        let f = |v: Option<f64>| {
            v.filter(|v| v.is_finite())
                .map_or("—".into(), |v| format!("{v:.4}"))
        };
        let _ = write!(
            s,
            r#"<p class="headline">accuracy <b id="accuracy">{}</b> · macro-F1 <b id="macro-f1">{}</b></p>"#,
            f(accuracy),
            f(macro_f1)
        );
    }
    let warned: Vec<String> = view
        .stages
        .iter()
        .filter(|s| s.entry.as_ref().is_some_and(|e| !e.warnings.is_empty()))
        .map(|s| format!(r##"<a href="#stage-{n}">{n}</a>"##, n = esc(&s.name)))
        .collect();
    if !warned.is_empty() {
        let _ = write!(
            s,
            r#"<p class="stale" id="warned">warnings from {}</p>"#,
            warned.join(", ")
        );
    }
    let seconds: f64 = view
        .stages
        .iter()
        .filter_map(|s| s.entry.as_ref())
        .map(|e| e.seconds)
        .sum();
    let _ = write!(
        s,
        r#"<p class="meta">last run ended {}; its stages took {seconds:.1} s when they ran. From the cache, by pipe {}. Fresh: the result for the current config, inputs and code (ran: computed by the last run; cached: reused). Stale: the cache holds an older result; the next run recomputes it.</p>"#,
        when(view.finished_unix),
        esc(build)
    );
    s.push_str(&dag(view));
    s
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}\
h2{border-bottom:1px solid #ccc;margin-top:2em}section.stage{margin:1.5em 0;padding-top:.5em;border-top:1px solid #eee}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}\
th{background:#f4f4f4}th.sortable{cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.fresh{color:#1a7f37}.stale{color:#b35900}.never{color:#777}.meta{color:#555;font-size:13px}\
pre{background:#f8f8f8;padding:.5em;overflow:auto;max-height:24em;font-size:12px}\
figure{margin:1em 0;overflow:auto}tr.kept td{background:#eef6ee}.bar{background:#4a78b5;height:10px;display:inline-block}\
.bar.trained{background:#aaa}.failed{color:#b00020}pre.error{background:#fdecec;white-space:pre-wrap}\
nav{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #eee;font-size:14px}\
.headline{font-size:18px}.confusion .cm-count{display:none}.confusion input.count:checked~.cm-count{display:block}\
.confusion input.count:checked~.cm-share{display:none}td.diff{background:#fff6dd}ul.warnings{color:#b35900}";

/// Click a header to sort by that column (numbers as numbers); without
/// JavaScript the tables stay in their first order.
const SCRIPT: &str = "document.querySelectorAll('table.sortable').forEach(function(t){\
t.querySelectorAll('th').forEach(function(th,i){th.classList.add('sortable');th.title='sort';\
th.addEventListener('click',function(){var b=t.tBodies[0],rows=Array.from(b.rows),\
asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';rows.sort(function(x,y){\
var p=x.cells[i].textContent,q=y.cells[i].textContent,m=parseFloat(p),n=parseFloat(q);\
var c=(!isNaN(m)&&!isNaN(n))?m-n:p.localeCompare(q);return asc?c:-c;});\
rows.forEach(function(r){b.appendChild(r);});});});});";

pub(crate) fn esc(s: &str) -> String {
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
        Status::Failed(_) => "failed",
    }
}

fn status_text(stage: &StageView) -> String {
    match (&stage.status, &stage.entry) {
        (Status::Fresh, _) => match stage.ran {
            Some(true) => "fresh (ran)".into(),
            Some(false) => "fresh (cached)".into(),
            None => "fresh".into(),
        },
        (Status::Failed(_), _) => "failed".into(),
        (Status::Stale(_), Some(_)) => "stale (older result shown)".into(),
        (Status::Stale(_), None) => "stale (no result cached)".into(),
        (Status::NeverRun, _) => "no result: never run, or removed".into(),
    }
}

/// A JSON value as text: strings without their quotes.
pub(crate) fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

pub(crate) fn bytes(n: u64) -> String {
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
            Status::Failed(_) => "#f8d0d0",
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
        r#"<table id="stages-table" class="sortable"><thead><tr><th>stage</th><th>kind</th><th>status</th><th>seconds</th><th>key</th><th>outputs</th></tr></thead><tbody>"#,
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

fn stage_section(
    stage: &StageView,
    shown: &crate::results::Shown,
    shown_files: &std::collections::BTreeSet<u64>,
) -> String {
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
    if let Status::Failed(error) = &stage.status {
        let _ = write!(s, r#"<pre class="error">{}</pre>"#, esc(error));
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
        if !entry.warnings.is_empty() {
            s.push_str(r#"<ul class="warnings">"#);
            for w in &entry.warnings {
                let _ = write!(s, "<li>warning: {}</li>", esc(w));
            }
            s.push_str("</ul>");
        }
        if !entry.env.is_empty() {
            s.push_str(r#"<table class="env"><thead><tr><th>depends on</th><th>value</th></tr></thead><tbody>"#);
            for (k, v) in &entry.env {
                let _ = write!(s, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
            }
            s.push_str("</tbody></table>");
        }
        for (port, output) in &entry.outputs {
            if shown.contains(&(stage.name.clone(), port.clone())) {
                let _ = write!(
                    s,
                    r#"<p class="meta">{}: {} ({}), shown above</p>"#,
                    esc(port),
                    esc(&output.type_name),
                    bytes(output.bytes)
                );
            } else {
                s.push_str(&output_view(port, output, shown_files));
            }
        }
    }
    s.push_str("</section>");
    s
}

/// What an output the results do not show looks like: small JSON, the
/// files (plain charts inlined, a CSV's head); anything else by size.
fn output_view(
    port: &str,
    output: &Output,
    shown_files: &std::collections::BTreeSet<u64>,
) -> String {
    match output.type_name.as_str() {
        "json" => match read_json(&output.dir.join("doc.json")) {
            Ok(doc) => {
                let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
                let shown: String = text.chars().take(20_000).collect();
                format!(
                    "<details><summary>{} (JSON)</summary><pre>{}</pre></details>",
                    esc(port),
                    esc(&shown)
                )
            }
            Err(e) => format!("<p class=\"failed\">{}: {}</p>", esc(port), esc(&e)),
        },
        "files" => files(port, &output.dir, shown_files),
        other => format!(
            "<p class=\"meta\">{}: {} ({})</p>",
            esc(port),
            esc(other),
            bytes(output.bytes)
        ),
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

pub(crate) fn num(v: Option<&Value>, decimals: usize) -> String {
    match v.and_then(Value::as_f64) {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "—".into(),
    }
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

fn files(port: &str, dir: &Path, shown_files: &std::collections::BTreeSet<u64>) -> String {
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
        let copy = size < 64 << 20
            && std::fs::read(&path)
                .is_ok_and(|b| shown_files.contains(&crate::results::digest(&b)));
        if copy {
            let _ = write!(
                s,
                "<p class=\"meta\">{}/{} ({}): a copy of a file shown above</p>",
                esc(port),
                esc(&name),
                bytes(size)
            );
        } else if name.ends_with(".svg") && size < 4 << 20 {
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

/// A CSV's first rows as a table.
fn csv_view(port: &str, name: &str, path: &Path) -> String {
    let (head, last) = csv_head_and_last_column(path);
    let rows: u64 = last.values().sum();
    format!(
        "<h4>{}/{}</h4><p class=\"meta\">{rows} rows; the first 10:</p>{head}",
        esc(port),
        esc(name)
    )
}

/// A CSV's header and first 10 rows as a table, and how often each value
/// of its last column occurs (a submission's predicted classes).
pub(crate) fn csv_head_and_last_column(path: &Path) -> (String, BTreeMap<String, u64>) {
    use std::io::BufRead;
    let mut counts = BTreeMap::<String, u64>::new();
    let Ok(file) = std::fs::File::open(path) else {
        let error = format!(
            r#"<p class="failed">cannot read {}</p>"#,
            esc(&path.display().to_string())
        );
        return (error, counts);
    };
    let mut head = String::from(r#"<table class="csv-head">"#);
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
            if let Some(last) = fields.last() {
                *counts.entry(last.clone()).or_default() += 1;
            }
        }
    }
    head.push_str("</table>");
    (head, counts)
}

/// One CSV line's fields (RFC 4180 quoting; a line break inside quotes is
/// not followed, which pipe's own CSVs never have).
pub(crate) fn csv_fields(line: &str) -> Vec<String> {
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
    fn any_recorded_time_prints() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(None), "—");
        assert!(when(Some(u64::MAX)).contains("not a date"));
        assert!(when(Some(253_402_300_799)).starts_with("9999-12-31"));
    }

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
            finished_unix: Some(0),
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
                    config: serde_json::json!({}),
                    warnings: vec!["<careful>".into()],
                }),
                ran: Some(true),
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
        let table = page
            .split(r#"<table class="sortable per-class""#)
            .nth(1)
            .unwrap();
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
        assert!(
            page.contains("last run ended 1970-01-01 00:00:00 UTC"),
            "{page}"
        );
        assert!(page.contains("<li>warning: &lt;careful&gt;</li>"));
        assert!(page.contains(r##"warnings from <a href="#stage-evaluate">"##));
        assert!(page.contains("&lt;b&gt;escaped&lt;/b&gt;") && !page.contains("<b>escaped</b>"));
        let one = serde_json::json!({"accuracy": 1.0, "macro_f1": 1.0, "per_class": {"only": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 9}}});
        let page = render(&view_with_metrics(&one, dir.path()), "test");
        assert!(page.contains("<td>only</td>"));
    }
}
