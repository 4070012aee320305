//! Runs side by side: the settings that differ, the metrics (mean ± sd
//! over runs that differ only in their seed), the training curves
//! overlaid, per-class F1.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use pipe_eval::metrics::mean_sd;
use pipe_eval::plot;
use serde_json::Value;

use crate::collect::{RunView, Status};
use crate::html::{esc, foot, head, when};
use crate::results::{epoch_points, read_doc, Doc};

/// One run of a comparison, with the name the page gives it.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub view: RunView,
}

/// What the comparison reads of one run.
struct Facts {
    settings: BTreeMap<String, String>,
    evaluation: Option<Value>,
    training: Option<Value>,
    seconds: f64,
}

fn facts(view: &RunView) -> Facts {
    let mut settings = BTreeMap::new();
    let mut evaluation = None;
    let mut training = None;
    for stage in &view.stages {
        if !stage.config.is_null() {
            flatten(&stage.name, &stage.config, &mut settings);
        }
        for (k, v) in stage.entry.iter().flat_map(|e| e.env.iter()) {
            settings
                .entry(format!("env.{k}"))
                .or_insert_with(|| v.clone());
        }
        for output in stage.entry.iter().flat_map(|e| e.outputs.values()) {
            if output.type_name != "json" {
                continue;
            }
            match read_doc(output) {
                Ok(Doc::Evaluation(doc)) if evaluation.is_none() => evaluation = Some(doc),
                Ok(Doc::Training(doc)) if training.is_none() => training = Some(doc),
                _ => {}
            }
        }
    }
    let seconds = view
        .stages
        .iter()
        .filter_map(|s| s.entry.as_ref())
        .map(|e| e.seconds)
        .sum();
    Facts {
        settings,
        evaluation,
        training,
        seconds,
    }
}

/// Each leaf setting by its path (`train.lr`, `select.candidates.lstm.epochs`).
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// A seed setting: it changes the draw, not the experiment.
fn is_seed(path: &str) -> bool {
    path.rsplit('.').next() == Some("seed")
}

fn metric(doc: &Option<Value>, key: &str) -> Option<f64> {
    doc.as_ref()?.get(key)?.as_f64().filter(|v| v.is_finite())
}

fn fixed(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.4}"))
}

fn state(view: &RunView) -> String {
    if let Some(failed) = view
        .stages
        .iter()
        .find(|s| matches!(s.status, Status::Failed(_)))
    {
        return format!(
            r#"<span class="failed">failed at {}</span>"#,
            esc(&failed.name)
        );
    }
    let cached = view.stages.iter().filter(|s| s.entry.is_some()).count();
    if cached == view.stages.len() {
        r#"<span class="fresh">complete</span>"#.into()
    } else {
        format!(
            r#"<span class="stale">{cached} of {} stages' results cached</span>"#,
            view.stages.len()
        )
    }
}

/// The comparison page of `runs`; `build` names the `pipe` that wrote it.
pub fn render_comparison(runs: &[Run], build: &str) -> String {
    let facts: Vec<Facts> = runs.iter().map(|r| facts(&r.view)).collect();
    let mut page = head(&format!("pipe report: {} runs compared", runs.len()));
    let _ = write!(
        page,
        r##"<h1>{} runs compared</h1><nav><a href="#runs">Runs</a> · <a href="#differing">Settings that differ</a> · <a href="#over-seeds">Over seeds</a> · <a href="#curves">Curves</a> · <a href="#per-class-f1">Per-class F1</a></nav><p class="meta">From the cache, by pipe {}. A run's results are those still cached (<code>pipe gc</code> keeps only each pipeline's last run).</p>"##,
        runs.len(),
        esc(build)
    );
    page.push_str(&runs_table(runs, &facts));
    page.push_str(&differing(runs, &facts));
    page.push_str(&over_seeds(runs, &facts));
    page.push_str(&curves(runs, &facts));
    page.push_str(&per_class(runs, &facts));
    page.push_str(&foot());
    page
}

fn runs_table(runs: &[Run], facts: &[Facts]) -> String {
    let mut s = String::from(
        r#"<h2 id="runs">Runs</h2><table id="runs-table" class="sortable"><thead><tr><th>run</th><th>pipeline</th><th>ended</th><th>state</th><th>accuracy</th><th>macro-F1</th><th>seconds</th></tr></thead><tbody>"#,
    );
    for (run, f) in runs.iter().zip(facts) {
        let _ = write!(
            s,
            r#"<tr data-run="{label}"><td>{label}</td><td>{}</td><td>{}</td><td>{}</td><td class="num accuracy">{}</td><td class="num macro-f1">{}</td><td class="num">{:.1}</td></tr>"#,
            esc(&run.view.pipeline),
            when(run.view.finished_unix),
            state(&run.view),
            fixed(metric(&f.evaluation, "accuracy")),
            fixed(metric(&f.evaluation, "macro_f1")),
            f.seconds,
            label = esc(&run.label),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// Paths whose value is not the same in every run, in order.
fn differing_paths(facts: &[Facts]) -> Vec<String> {
    let paths: BTreeSet<&String> = facts.iter().flat_map(|f| f.settings.keys()).collect();
    paths
        .into_iter()
        .filter(|p| {
            let values: BTreeSet<Option<&String>> =
                facts.iter().map(|f| f.settings.get(*p)).collect();
            values.len() > 1
        })
        .cloned()
        .collect()
}

fn differing(runs: &[Run], facts: &[Facts]) -> String {
    let mut s = String::from(r#"<h2 id="differing">Settings that differ</h2>"#);
    let paths = differing_paths(facts);
    if paths.is_empty() {
        s.push_str("<p>Every setting is the same in these runs.</p>");
        return s;
    }
    s.push_str(r#"<table id="differing-table"><thead><tr><th>setting</th>"#);
    for run in runs {
        let _ = write!(s, "<th>{}</th>", esc(&run.label));
    }
    s.push_str("</tr></thead><tbody>");
    for path in &paths {
        let _ = write!(
            s,
            r#"<tr data-setting="{p}"><td><code>{p}</code></td>"#,
            p = esc(path)
        );
        for f in facts {
            let value = f.settings.get(path).map_or("—", String::as_str);
            let _ = write!(s, r#"<td class="diff">{}</td>"#, esc(value));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// Runs whose settings are the same but for seeds, with mean ± sd.
fn over_seeds(runs: &[Run], facts: &[Facts]) -> String {
    let mut groups: BTreeMap<Vec<(&String, &String)>, Vec<usize>> = BTreeMap::new();
    for (i, f) in facts.iter().enumerate() {
        let key = f.settings.iter().filter(|(p, _)| !is_seed(p)).collect();
        groups.entry(key).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    let mut s = String::from(r#"<h2 id="over-seeds">Over seeds</h2>"#);
    if groups.is_empty() {
        s.push_str("<p>No two runs differ only in their seed.</p>");
        return s;
    }
    s.push_str(r#"<table id="seed-groups"><thead><tr><th>runs</th><th>seeds</th><th>accuracy</th><th>macro-F1</th></tr></thead><tbody>"#);
    for group in groups {
        let labels: Vec<String> = group.iter().map(|&i| esc(&runs[i].label)).collect();
        let seeds: BTreeSet<String> = group
            .iter()
            .flat_map(|&i| {
                facts[i]
                    .settings
                    .iter()
                    .filter(|(p, _)| is_seed(p))
                    .map(|(_, v)| v.clone())
            })
            .collect();
        let cell = |key: &str| {
            let (mean, sd) = mean_sd(group.iter().map(|&i| metric(&facts[i].evaluation, key)));
            match sd {
                Some(sd) => format!("{} ± {sd:.4}", fixed(mean)),
                None => fixed(mean),
            }
        };
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            labels.join(", "),
            esc(&seeds.into_iter().collect::<Vec<_>>().join(", ")),
            cell("accuracy"),
            cell("macro_f1")
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn curves(runs: &[Run], facts: &[Facts]) -> String {
    let mut s = String::from(r#"<h2 id="curves">Training curves</h2>"#);
    let trained: Vec<(&str, Vec<plot::EpochPoint>)> = runs
        .iter()
        .zip(facts)
        .filter_map(|(r, f)| Some((r.label.as_str(), epoch_points(f.training.as_ref()?))))
        .collect();
    if trained.is_empty() {
        s.push_str("<p>No run has a training history (a model fitted by `train`).</p>");
        return s;
    }
    let series = |f: fn(&plot::EpochPoint) -> Option<f64>| -> Vec<plot::Series> {
        trained
            .iter()
            .map(|(label, points)| {
                (
                    *label,
                    points.iter().map(|p| f(p).unwrap_or(f64::NAN)).collect(),
                )
            })
            .collect()
    };
    let validated = trained
        .iter()
        .any(|(_, p)| p.iter().any(|e| e.val_macro_f1.is_some()));
    let mut panels = vec![("train loss", series(|e| e.loss))];
    if validated {
        panels.push(("validation loss", series(|e| e.val_loss)));
        panels.push(("validation macro-F1", series(|e| e.val_macro_f1)));
    } else {
        panels.push(("train accuracy", series(|e| e.accuracy)));
    }
    let _ = write!(
        s,
        r#"<figure class="chart" id="overlaid-curves">{}</figure>"#,
        plot::line_chart("training, run by run", &panels, None)
    );
    s
}

fn per_class(runs: &[Run], facts: &[Facts]) -> String {
    let mut s = String::from(r#"<h2 id="per-class-f1">Per-class F1</h2>"#);
    let per_class = |f: &Facts| {
        f.evaluation
            .as_ref()
            .and_then(|e| e.get("per_class")?.as_object().cloned())
    };
    let tables: Vec<Option<serde_json::Map<String, Value>>> = facts.iter().map(per_class).collect();
    let classes: BTreeSet<&String> = tables.iter().flatten().flat_map(|t| t.keys()).collect();
    if classes.is_empty() {
        s.push_str("<p>No run has an evaluation.</p>");
        return s;
    }
    s.push_str(r#"<table id="per-class-runs" class="sortable"><thead><tr><th>class</th>"#);
    for run in runs {
        let _ = write!(s, "<th>{}</th>", esc(&run.label));
    }
    s.push_str("</tr></thead><tbody>");
    for class in classes {
        let _ = write!(s, "<tr><td>{}</td>", esc(class));
        for t in &tables {
            let f1 = t.as_ref().and_then(|t| t.get(class)?.get("f1")?.as_f64());
            let _ = write!(
                s,
                r#"<td class="num">{}</td>"#,
                fixed(f1.filter(|v| v.is_finite()))
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(pairs: &[(&str, &str)]) -> Facts {
        Facts {
            settings: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            evaluation: None,
            training: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn only_settings_that_differ_are_listed_and_missing_ones_count() {
        let facts = [
            settings(&[
                ("train.lr", "0.01"),
                ("train.epochs", "3"),
                ("env.seed", "1"),
            ]),
            settings(&[
                ("train.lr", "0.02"),
                ("train.epochs", "3"),
                ("env.seed", "1"),
            ]),
            settings(&[("train.lr", "0.01"), ("env.seed", "1")]),
        ];
        assert_eq!(differing_paths(&facts), ["train.epochs", "train.lr"]);
        assert!(differing_paths(&facts[..1]).is_empty());
    }

    #[test]
    fn nested_configs_flatten_to_paths() {
        let mut out = BTreeMap::new();
        flatten(
            "select",
            &json!({"candidates": {"lstm": {"epochs": 3}}, "budget": null, "grams": [1, 2]}),
            &mut out,
        );
        let paths: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "select.budget",
                "select.candidates.lstm.epochs",
                "select.grams"
            ]
        );
        assert_eq!(out["select.grams"], "[1,2]");
        assert!(is_seed("env.seed") && is_seed("train.seed") && !is_seed("train.seeds"));
    }
}
