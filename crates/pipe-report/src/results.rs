//! What a run produced, read from its stages' outputs by shape, whatever
//! the stage kind: training histories (a JSON with `epochs`), evaluations
//! (`per_class`), model selections (`candidates` and `chosen`) and
//! submissions (`submission.csv`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use pipe_core::LoadArtifact;
use pipe_eval::plot::{self, EpochPoint, Shading};
use serde_json::Value;

use crate::collect::{Output, RunView, StageView, Status};
use crate::html::{esc, num, plain, read_json};

/// A stage's output the results show, by (stage, port).
pub(crate) type Shown = BTreeSet<(String, String)>;

/// The run's results, section by section.
#[derive(Default)]
pub(crate) struct Results {
    pub training: String,
    pub evaluation: String,
    pub selection: String,
    pub submission: String,
    /// Accuracy and macro-F1 of the first evaluation.
    pub headline: Option<(Option<f64>, Option<f64>)>,
    pub shown: Shown,
    /// Digests of the files in the shown outputs, so a copy (as `export`
    /// makes) is not drawn again.
    pub shown_files: BTreeSet<u64>,
}

/// A JSON output's document, by what it holds.
pub(crate) enum Doc {
    Training(Value),
    Evaluation(Value),
    Selection(Value),
    Other,
}

pub(crate) fn read_doc(output: &Output) -> Result<Doc, String> {
    let doc = read_json(&output.dir.join("doc.json"))?;
    let has = |key: &str, test: fn(&Value) -> bool| doc.get(key).is_some_and(test);
    Ok(if has("epochs", Value::is_array) {
        Doc::Training(doc)
    } else if has("per_class", Value::is_object) {
        Doc::Evaluation(doc)
    } else if has("candidates", Value::is_array) && has("chosen", Value::is_array) {
        Doc::Selection(doc)
    } else {
        Doc::Other
    })
}

pub(crate) fn results(view: &RunView) -> Results {
    let mut r = Results::default();
    for (stage, port, output) in view.outputs_of_type("json") {
        let shown = (stage.name.clone(), port.to_string());
        match read_doc(output) {
            Ok(Doc::Training(doc)) => {
                r.training.push_str(&training(stage, &doc));
                r.shown.insert(shown);
                // The stage's own curve is the same chart.
                r.shown.extend(files_port_with(stage, "curve.svg"));
            }
            Ok(Doc::Evaluation(doc)) => {
                if r.headline.is_none() && stage.status == Status::Fresh {
                    r.headline = Some((
                        doc.get("accuracy").and_then(Value::as_f64),
                        doc.get("macro_f1").and_then(Value::as_f64),
                    ));
                }
                let confusion = files_port_with(stage, "confusion.csv");
                let matrix = confusion.as_ref().and_then(|(_, port)| {
                    confusion_matrix(
                        &stage.entry.as_ref()?.outputs[port]
                            .dir
                            .join("confusion.csv"),
                    )
                });
                r.evaluation
                    .push_str(&evaluation(stage, &doc, matrix.as_ref()));
                r.shown.insert(shown);
                r.shown.extend(confusion);
            }
            Ok(Doc::Selection(doc)) => {
                r.selection.push_str(&selection(stage, &doc));
                r.shown.insert(shown);
            }
            Ok(Doc::Other) | Err(_) => {}
        }
    }
    r.shown_files = r
        .shown
        .iter()
        .filter_map(|(stage, port)| view.output(stage, port))
        .filter(|o| o.type_name == "files")
        .flat_map(|o| std::fs::read_dir(&o.dir).into_iter().flatten().flatten())
        .filter_map(|f| Some(digest(&std::fs::read(f.path()).ok()?)))
        .collect();
    let labels = training_label_counts(view);
    for (stage, port, output) in view.outputs_of_type("files") {
        let path = output.dir.join("submission.csv");
        if path.is_file() {
            r.submission
                .push_str(&submission(stage, port, &path, labels.as_ref()));
        }
    }
    r
}

/// The `files` port of `stage` that holds a file of this name.
fn files_port_with(stage: &StageView, name: &str) -> Option<(String, String)> {
    let entry = stage.entry.as_ref()?;
    entry
        .outputs
        .iter()
        .find(|(_, o)| o.type_name == "files" && o.dir.join(name).is_file())
        .map(|(port, _)| (stage.name.clone(), port.clone()))
}

/// Where a result comes from; one from a stage that is not fresh says so.
fn from_stage(stage: &StageView) -> String {
    let older = match stage.status {
        Status::Fresh => "",
        _ => {
            r#" <span class="stale">· an older result: the stage is not fresh, see its section</span>"#
        }
    };
    format!(
        r##"<p class="meta">from <a href="#stage-{n}">{n}</a> ({}){older}</p>"##,
        esc(&stage.kind),
        n = esc(&stage.name)
    )
}

/// The epochs of a training report, for its chart.
pub(crate) fn epoch_points(doc: &Value) -> Vec<EpochPoint> {
    let field = |e: &Value, k: &str| e.get(k).and_then(Value::as_f64);
    doc["epochs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| EpochPoint {
            loss: field(e, "loss"),
            accuracy: field(e, "accuracy"),
            val_loss: field(e, "val_loss"),
            val_accuracy: field(e, "val_accuracy"),
            val_macro_f1: field(e, "val_macro_f1"),
            lr: field(e, "lr"),
        })
        .collect()
}

fn training(stage: &StageView, doc: &Value) -> String {
    let epochs = doc["epochs"].as_array().cloned().unwrap_or_default();
    let best = doc.get("best_epoch").and_then(Value::as_u64);
    let mut s = from_stage(stage);
    let facts: Vec<String> = [
        "device",
        "precision",
        "train_rows",
        "validation_rows",
        "steps_per_epoch",
        "lr",
    ]
    .iter()
    .filter_map(|k| doc.get(*k).map(|v| format!("{k}: {}", esc(&plain(v)))))
    .chain(
        doc.get("cpu")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("cpu {k}: {}", esc(&plain(v)))),
    )
    .collect();
    let _ = write!(s, "<p class=\"meta\">{}</p>", facts.join(" · "));
    let validated = epochs
        .iter()
        .any(|e| e.get("val_loss").is_some_and(|v| !v.is_null()));
    if !epochs.is_empty() {
        let kept = best.unwrap_or(epochs.len() as u64) as usize;
        let _ = write!(
            s,
            r#"<figure class="chart training-curve">{}</figure>"#,
            plot::training_curves(&epoch_points(doc), kept)
        );
    }
    s.push_str(r#"<details><summary>every epoch</summary><table class="sortable epochs"><thead><tr><th>epoch</th><th>loss</th><th>accuracy</th><th>val loss</th><th>val accuracy</th><th>val macro-F1</th><th>lr</th><th>seconds</th></tr></thead><tbody>"#);
    for e in &epochs {
        let kept = validated && best.is_some() && e.get("epoch").and_then(Value::as_u64) == best;
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
    s.push_str("</tbody></table></details>");
    s
}

/// Class names and row-major counts from `evaluate`'s confusion.csv.
fn confusion_matrix(path: &Path) -> Option<(Vec<String>, Vec<u64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let names: Vec<String> = crate::html::csv_fields(lines.next()?)
        .into_iter()
        .skip(1)
        .collect();
    let mut counts = Vec::with_capacity(names.len() * names.len());
    for line in lines.filter(|l| !l.is_empty()) {
        let fields = crate::html::csv_fields(line);
        if fields.len() != names.len() + 1 {
            return None;
        }
        for f in &fields[1..] {
            counts.push(f.parse().ok()?);
        }
    }
    (counts.len() == names.len() * names.len()).then_some((names, counts))
}

fn evaluation(stage: &StageView, doc: &Value, matrix: Option<&(Vec<String>, Vec<u64>)>) -> String {
    let mut s = from_stage(stage);
    let _ = write!(
        s,
        r#"<p class="headline">accuracy <b class="accuracy">{}</b> · macro-F1 <b class="macro-f1">{}</b>{}</p>"#,
        num(doc.get("accuracy"), 4),
        num(doc.get("macro_f1"), 4),
        doc.get("rows")
            .and_then(Value::as_u64)
            .map_or(String::new(), |n| format!(" · {n} rows"))
    );
    if let Some((names, counts)) = matrix {
        // A CSS-only switch: the page stays whole with JavaScript off.
        let id = esc(&stage.name);
        let _ = write!(
            s,
            r#"<div class="confusion"><input type="radio" name="cm-{id}" id="cm-{id}-share" class="share" checked><label for="cm-{id}-share">share of the row</label> <input type="radio" name="cm-{id}" id="cm-{id}-count" class="count"><label for="cm-{id}-count">counts</label><figure class="chart cm-share">{}</figure><figure class="chart cm-count">{}</figure></div>"#,
            plot::heatmap_shaded("confusion matrix", names, counts, Shading::ShareOfRow),
            plot::heatmap_shaded("confusion matrix", names, counts, Shading::Count),
        );
    }
    s.push_str(r#"<table class="sortable per-class"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>"#);
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

fn selection(stage: &StageView, doc: &Value) -> String {
    let mut s = from_stage(stage);
    let facts: Vec<String> = [
        (
            "validation",
            doc.get("validation")
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        ("rows", doc.get("rows").map(|v| v.to_string())),
        ("scored rows", doc.get("scored_rows").map(|v| v.to_string())),
        (
            "time budget",
            doc.get("time_budget_seconds")
                .and_then(Value::as_f64)
                .map(|v| format!("{v:.0} s")),
        ),
        (
            "took",
            doc.get("seconds")
                .and_then(Value::as_f64)
                .map(|v| format!("{v:.1} s")),
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some(format!("{k}: {}", esc(&v?))))
    .collect();
    let _ = write!(s, "<p class=\"meta\">{}</p>", facts.join(" · "));
    let chosen: BTreeMap<&str, &Value> = doc["chosen"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c.get("name")?.as_str()?, c)))
        .collect();
    let weights = doc["ensemble"]["weights"].as_array();
    s.push_str(r#"<table class="sortable candidates"><thead><tr><th>candidate</th><th>kind</th><th>validation macro-F1</th><th>log loss</th><th>seconds</th><th>weight</th><th>chosen</th></tr></thead><tbody>"#);
    for (i, c) in doc["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
        let weight = weights
            .and_then(|w| w.get(i))
            .or_else(|| chosen.get(name).and_then(|c| c.get("weight")));
        let pick = chosen.get(name).map_or(String::new(), |c| {
            let mut how = if c.get("refit").and_then(Value::as_bool) == Some(true) {
                "yes, refit on all rows".to_string()
            } else {
                "yes, as validation fitted it".to_string()
            };
            if let Some(why) = c.get("kept_because").and_then(Value::as_str) {
                let _ = write!(how, ": {why}");
            }
            how
        });
        let _ = write!(
            s,
            r#"<tr{}><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            if pick.is_empty() {
                ""
            } else {
                r#" class="kept""#
            },
            esc(name),
            esc(c.get("kind").and_then(Value::as_str).unwrap_or("")),
            num(c.get("macro_f1"), 4),
            num(c.get("log_loss"), 4),
            num(c.get("seconds"), 1),
            num(weight, 2),
            esc(&pick)
        );
    }
    s.push_str("</tbody></table>");
    if let Some(ensemble) = doc.get("ensemble").filter(|e| e.is_object()) {
        let _ = write!(
            s,
            "<p>the chosen ensemble on validation: macro-F1 <b>{}</b> · log loss {}</p>",
            num(ensemble.get("macro_f1"), 4),
            num(ensemble.get("log_loss"), 4)
        );
    }
    if let Some(skipped) = doc["skipped"].as_array().filter(|s| !s.is_empty()) {
        s.push_str("<p>skipped:</p><ul>");
        for k in skipped {
            let _ = write!(s, "<li>{}</li>", esc(&plain(k)));
        }
        s.push_str("</ul>");
    }
    s
}

/// How many training rows each class has: the label ids wired into a
/// stage's `y` input, named by the run's label set.
fn training_label_counts(view: &RunView) -> Option<BTreeMap<String, u64>> {
    let (up, out) = view
        .stages
        .iter()
        .flat_map(|s| s.upstream.iter())
        .find(|(port, up, out)| {
            port == "y"
                && view
                    .output(up, out)
                    .is_some_and(|o| o.type_name == "int_array")
        })
        .map(|(_, up, out)| (up.clone(), out.clone()))?;
    let ids = pipe_data::IntArray::load(&view.output(&up, &out)?.dir).ok()?;
    let (_, _, labels) = view.outputs_of_type("label_set").next()?;
    let names: Vec<String> = read_json(&labels.dir.join("labels.json"))
        .ok()?
        .get("values")?
        .as_array()?
        .iter()
        .map(plain)
        .collect();
    let mut counts = BTreeMap::new();
    for id in ids.0.iter() {
        let name = usize::try_from(*id)
            .ok()
            .and_then(|i| names.get(i))
            .cloned()
            .unwrap_or_else(|| format!("label id {id}"));
        *counts.entry(name).or_default() += 1;
    }
    Some(counts)
}

/// A submission's first rows and its classes against the training labels.
fn submission(
    stage: &StageView,
    port: &str,
    path: &Path,
    training: Option<&BTreeMap<String, u64>>,
) -> String {
    let mut s = from_stage(stage);
    let (head, predicted) = crate::html::csv_head_and_last_column(path);
    let rows: u64 = predicted.values().sum();
    let _ = write!(
        s,
        "<p class=\"meta\">{}/submission.csv: {rows} rows; the first 10:</p>{head}",
        esc(port)
    );
    if rows == 0 {
        return s;
    }
    let trained: u64 = training.map_or(0, |t| t.values().sum());
    let mut classes: Vec<&String> = predicted
        .keys()
        .chain(training.into_iter().flat_map(|t| t.keys()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    let train_share = |c: &str| {
        share(
            training.and_then(|t| t.get(c)).copied().unwrap_or(0),
            trained,
        )
    };
    // Most frequent in training first; without training labels, in the submission.
    classes.sort_by(|a, b| {
        let key = |c: &str| {
            if trained > 0 {
                train_share(c)
            } else {
                share(predicted.get(c).copied().unwrap_or(0), rows)
            }
        };
        key(b).total_cmp(&key(a)).then(a.cmp(b))
    });
    let most = classes
        .iter()
        .map(|c| share(predicted.get(*c).copied().unwrap_or(0), rows).max(train_share(c)))
        .fold(0.0, f64::max)
        .max(1e-9);
    s.push_str(r#"<details open><summary>predicted classes"#);
    if trained > 0 {
        let _ = write!(s, " against the {trained} training labels");
    }
    s.push_str(r#"</summary><table class="sortable class-counts"><thead><tr><th>class</th><th>predicted rows</th><th>predicted share</th>"#);
    if trained > 0 {
        s.push_str("<th>training share</th>");
    }
    s.push_str("<th></th></tr></thead><tbody>");
    for class in classes {
        let n = predicted.get(class).copied().unwrap_or(0);
        let bar = |v: f64, css: &str| {
            format!(
                r#"<span class="bar {css}" style="width:{:.0}px"></span>"#,
                (200.0 * v / most).max(1.0)
            )
        };
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td class="num">{n}</td><td class="num">{:.1}%</td>"#,
            esc(class),
            100.0 * share(n, rows)
        );
        if trained > 0 {
            let _ = write!(
                s,
                r#"<td class="num">{:.1}%</td><td>{}<br>{}</td></tr>"#,
                100.0 * train_share(class),
                bar(share(n, rows), "predicted"),
                bar(train_share(class), "trained")
            );
        } else {
            let _ = write!(s, "<td>{}</td></tr>", bar(share(n, rows), "predicted"));
        }
    }
    s.push_str("</tbody></table></details>");
    if trained > 0 {
        s.push_str(r#"<p class="meta"><span class="bar predicted" style="width:20px"></span> predicted <span class="bar trained" style="width:20px"></span> training labels</p>"#);
    }
    s
}

/// A file's digest, to tell copies (not for security).
pub(crate) fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
