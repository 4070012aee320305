//! Small hand-written SVG charts: training curves and confusion matrices.
//! No plotting dependency: a few rectangles, lines and labels are all it takes.

use std::fmt::Write;

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Axis ticks at round values (1, 2 or 5 times a power of ten apart) that
/// cover a range, and the decimals that print them exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    pub values: Vec<f64>,
    pub decimals: usize,
}

impl Ticks {
    /// About `target` round ticks from at or below `lo` to at or above
    /// `hi` (Heckbert's "nice numbers"). A flat or empty range gets one
    /// step around its value; non-finite bounds give `0..1`.
    pub fn covering(lo: f64, hi: f64, target: usize) -> Ticks {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo.min(hi), lo.max(hi))
        } else {
            (0.0, 1.0)
        };
        if hi - lo < 1e-12 * lo.abs().max(1.0) {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo, hi) = (lo - pad, hi + pad);
        }
        let step = nice_step((hi - lo) / target.max(1) as f64);
        let first = (lo / step).floor();
        let last = (hi / step).ceil();
        let values = (0..=(last - first) as usize)
            .map(|k| {
                let v = (first + k as f64) * step;
                // -0.0 prints as "-0".
                if v == 0.0 {
                    0.0
                } else {
                    v
                }
            })
            .collect();
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        Ticks { values, decimals }
    }

    pub fn lo(&self) -> f64 {
        self.values[0]
    }

    pub fn hi(&self) -> f64 {
        self.values[self.values.len() - 1]
    }

    /// A tick printed with just the decimals the step needs: `0.25`, `3`, `1e-5` stays `0.00001`.
    pub fn label(&self, v: f64) -> String {
        format!("{v:.*}", self.decimals)
    }
}

/// The round step (1, 2 or 5 × 10^k) nearest above `rough`.
fn nice_step(rough: f64) -> f64 {
    let power = 10f64.powf(rough.log10().floor());
    let fraction = rough / power;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// A named series of values, one per epoch.
pub type Series<'a> = (&'a str, Vec<f64>);

/// One or more series against epoch number, one panel per `(y axis title,
/// series)`, each scaled on its own with round ticks; `marked_epoch` (from 1)
/// draws a dashed line at the epoch the model was kept from.
pub fn line_chart(
    title: &str,
    panels: &[(&str, Vec<Series>)],
    marked_epoch: Option<usize>,
) -> String {
    let (w, panel_h, margin) = (680.0, 220.0, 60.0);
    let h = margin + panels.len() as f64 * (panel_h + margin);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    let epochs = panels
        .iter()
        .flat_map(|(_, series)| series.iter().map(|(_, v)| v.len()))
        .max()
        .unwrap_or(1)
        .max(1);
    for (p, (axis_title, series)) in panels.iter().enumerate() {
        let top = margin + p as f64 * (panel_h + margin);
        let (left, right) = (80.0, w - 170.0);
        let (lo, hi) = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        let ticks = Ticks::covering(lo, hi, 5);
        let (lo, hi) = (ticks.lo(), ticks.hi());
        // Epoch 1 at the left edge, the last at the right (one epoch: centred).
        let x = |epoch: usize| {
            if epochs == 1 {
                (left + right) / 2.0
            } else {
                left + (right - left) * (epoch - 1) as f64 / (epochs - 1) as f64
            }
        };
        let y = |v: f64| top + panel_h - panel_h * (v - lo) / (hi - lo);
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{top}" width="{}" height="{panel_h}" fill="none" stroke="#999"/>"##,
            right - left
        );
        for &v in &ticks.values {
            let _ = write!(
                svg,
                r##"<line x1="{left}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                left - 4.0,
                y(v) + 4.0,
                ticks.label(v),
                y = y(v),
            );
        }
        let epoch_ticks = Ticks::covering(1.0, epochs as f64, 10);
        for &e in epoch_ticks
            .values
            .iter()
            .filter(|&&e| e >= 1.0 && e <= epochs as f64 && e.fract() == 0.0)
        {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                x(e as usize),
                top + panel_h + 14.0,
                e as usize
            );
        }
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle">epoch</text><text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})">{}</text>"##,
            (left + right) / 2.0,
            top + panel_h + 32.0,
            escape(axis_title),
            x = left - 52.0,
            y = top + panel_h / 2.0,
        );
        if let Some(epoch) = marked_epoch.filter(|e| (1..=epochs).contains(e)) {
            // The label on the side of the line with more room.
            let (anchor, dx) = if x(epoch) > (left + right) / 2.0 {
                ("end", -4.0)
            } else {
                ("start", 4.0)
            };
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#444" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" text-anchor="{anchor}" fill="#444">kept: epoch {epoch}</text>"##,
                top + panel_h,
                x(epoch) + dx,
                top + panel_h - 6.0,
                x = x(epoch),
            );
        }
        for (s, (label, v)) in series.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let points: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| (x(i + 1), y(v)))
                .collect();
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            for (px, py) in &points {
                let _ = write!(
                    svg,
                    r#"<circle cx="{px:.1}" cy="{py:.1}" r="2.5" fill="{color}"/>"#
                );
            }
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
                right + 8.0,
                top + 16.0 + 16.0 * s as f64,
                escape(label)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// One epoch of a training history (as `train` reports it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochPoint {
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub val_macro_f1: Option<f64>,
    pub lr: Option<f64>,
}

/// Whether a history has a validation split (a validation loss).
pub fn validated(epochs: &[EpochPoint]) -> bool {
    epochs.iter().any(|e| e.val_loss.is_some())
}

/// The training curves: loss, then accuracy and macro-F1, training and
/// validation on the same axes, the kept epoch (from 1) marked when there
/// is a validation split, and a learning-rate panel when the rate changed.
pub fn training_curves(epochs: &[EpochPoint], kept_epoch: usize) -> String {
    let series = |f: fn(&EpochPoint) -> Option<f64>| -> Vec<f64> {
        epochs.iter().map(|e| f(e).unwrap_or(f64::NAN)).collect()
    };
    let mut loss = vec![("train loss", series(|e| e.loss))];
    let mut quality = vec![("train accuracy", series(|e| e.accuracy))];
    let validated = validated(epochs);
    if validated {
        loss.push(("validation loss", series(|e| e.val_loss)));
        quality.push(("validation accuracy", series(|e| e.val_accuracy)));
        quality.push(("validation macro-F1", series(|e| e.val_macro_f1)));
    }
    let mut panels = vec![("loss", loss), ("accuracy / macro-F1", quality)];
    let rates: Vec<f64> = series(|e| e.lr);
    let scheduled = rates
        .iter()
        .any(|r| r.is_finite() && Some(r) != rates.first());
    if scheduled {
        panels.push(("learning rate", vec![("lr", rates)]));
    }
    line_chart("training", &panels, validated.then_some(kept_epoch))
}

/// How a confusion matrix's cells are shaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shading {
    /// By the cell's share of its row: the recall of the row's class on the
    /// diagonal, comparable across classes of any size.
    ShareOfRow,
    /// By the count, on a log scale so one large class does not wash the
    /// others out.
    Count,
}

/// A confusion matrix as a heat map: rows the true class, columns the
/// predicted one, each cell shaded by its share of its row (the recall of
/// the row's class on the diagonal), with a colour scale; each cell's
/// tooltip gives the count and the share.
pub fn heatmap(title: &str, labels: &[String], counts: &[u64]) -> String {
    heatmap_shaded(title, labels, counts, Shading::ShareOfRow)
}

/// [`heatmap`], shaded as asked.
pub fn heatmap_shaded(title: &str, labels: &[String], counts: &[u64], shading: Shading) -> String {
    let n = labels.len();
    let cell = if n > 30 { 14.0 } else { 22.0 };
    let label_w = 7.0 * labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f64 + 10.0;
    let (x0, y0) = (label_w + 24.0, label_w + 40.0);
    let grid = cell * n as f64;
    let (w, h) = (x0 + grid + 110.0, y0 + grid + 30.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="10">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="4" y="16" font-size="14">{}</text>"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="34" font-size="12" text-anchor="middle">predicted class</text><text x="12" y="{y}" font-size="12" text-anchor="middle" transform="rotate(-90 12 {y})">true class</text>"#,
        x0 + grid / 2.0,
        y = y0 + grid / 2.0,
    );
    let most = counts.iter().copied().max().unwrap_or(0);
    // Log scale for counts: ln(1 + count) / ln(1 + most).
    let of_most = |count: u64| {
        if most == 0 {
            0.0
        } else {
            (count as f64).ln_1p() / (most as f64).ln_1p()
        }
    };
    for r in 0..n {
        let row_total: u64 = counts[r * n..(r + 1) * n].iter().sum();
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            x0 - 4.0,
            y0 + cell * r as f64 + cell * 0.7,
            escape(&labels[r])
        );
        for c in 0..n {
            let count = counts[r * n + c];
            if count == 0 {
                // White on white: most cells of a many-class matrix, left
                // out to keep the file small.
                continue;
            }
            let share = if row_total == 0 {
                0.0
            } else {
                count as f64 / row_total as f64
            };
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="{cell}" height="{cell}" fill="{}"><title>true {} → predicted {}: {count} ({:.1}% of the row)</title></rect>"#,
                x0 + cell * c as f64,
                y0 + cell * r as f64,
                shade(match shading {
                    Shading::ShareOfRow => share,
                    Shading::Count => of_most(count),
                }),
                escape(&labels[r]),
                escape(&labels[c]),
                100.0 * share
            );
        }
    }
    for (c, label) in labels.iter().enumerate() {
        let (x, y) = (x0 + cell * c as f64 + cell * 0.7, y0 - 4.0);
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{y}" transform="rotate(-90 {x} {y})">{}</text>"#,
            escape(label)
        );
    }
    // The colour scale: share of the row, 0 at the bottom, 1 at the top.
    let (sx, steps) = (x0 + grid + 30.0, 10);
    let scale_h = grid.clamp(100.0, 240.0);
    for k in 0..steps {
        let share = (k as f64 + 0.5) / steps as f64;
        let _ = write!(
            svg,
            r#"<rect x="{sx}" y="{:.1}" width="14" height="{:.1}" fill="{}"/>"#,
            y0 + scale_h * (1.0 - (k + 1) as f64 / steps as f64),
            scale_h / steps as f64,
            shade(share)
        );
    }
    let (marks, caption) = match shading {
        Shading::ShareOfRow => (
            vec![
                (0.0, "0%".to_string()),
                (0.5, "50%".into()),
                (1.0, "100%".into()),
            ],
            "of the row",
        ),
        Shading::Count => {
            // The count halfway up the log scale, rounded.
            let middle = ((most as f64).ln_1p() / 2.0).exp_m1().round() as u64;
            let mut marks = vec![(0.0, "0".to_string()), (1.0, most.to_string())];
            if middle > 0 && middle < most {
                marks.insert(1, (of_most(middle), middle.to_string()));
            }
            (marks, "rows (log scale)")
        }
    };
    for (v, label) in marks {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}">{label}</text>"#,
            sx + 18.0,
            y0 + scale_h * (1.0 - v) + 4.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{sx}" y="{}">{caption}</text>"#,
        y0 + scale_h + 16.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// White (none of the row) to dark blue (all of it).
fn shade(share: f64) -> String {
    let share = share.clamp(0.0, 1.0);
    let channel = |full: f64| (255.0 - (255.0 - full) * share).round() as u8;
    format!("rgb({},{},{})", channel(8.0), channel(48.0), channel(107.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        // The loss axis that read 3.420, 3.003, 2.586, …
        let labels = |t: &Ticks| t.values.iter().map(|&v| t.label(v)).collect::<Vec<_>>();
        // The loss axis that read 3.420, 3.003, 2.586, …
        let t = Ticks::covering(1.75, 3.42, 5);
        assert_eq!(labels(&t), ["1.5", "2.0", "2.5", "3.0", "3.5"]);
        assert!(t.lo() <= 1.75 && t.hi() >= 3.42);
        let t = Ticks::covering(0.0, 1.0, 5);
        assert_eq!(labels(&t), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t = Ticks::covering(0.0, 37.0, 5);
        assert_eq!(t.values, vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(t.label(30.0), "30");
        let t = Ticks::covering(0.0012, 0.0047, 5);
        assert_eq!(labels(&t), ["0.001", "0.002", "0.003", "0.004", "0.005"]);
        let t = Ticks::covering(-0.3, 0.3, 4);
        assert_eq!(labels(&t), ["-0.4", "-0.2", "0.0", "0.2", "0.4"]);
    }

    #[test]
    fn flat_empty_and_nan_ranges_still_get_ticks() {
        let flat = Ticks::covering(0.5, 0.5, 5);
        assert!(flat.lo() < 0.5 && flat.hi() > 0.5 && flat.values.len() >= 2);
        let zero = Ticks::covering(0.0, 0.0, 5);
        assert!(zero.lo() < 0.0 && zero.hi() > 0.0);
        let none = Ticks::covering(f64::INFINITY, f64::NEG_INFINITY, 5);
        assert_eq!((none.lo(), none.hi()), (0.0, 1.0));
        let nan = Ticks::covering(f64::NAN, 1.0, 5);
        assert_eq!((nan.lo(), nan.hi()), (0.0, 1.0));
        assert!(Ticks::covering(-3.0, -1.0, 4)
            .values
            .iter()
            .all(|v| v.is_finite()));
    }

    #[test]
    fn a_chart_has_axis_titles_round_ticks_and_the_kept_epoch() {
        let svg = line_chart(
            "training",
            &[(
                "loss",
                vec![
                    ("train loss", vec![3.42, 2.5, 1.75]),
                    ("validation loss", vec![3.3, 2.9, f64::NAN]),
                ],
            )],
            Some(2),
        );
        assert!(
            svg.contains(">epoch</text>") && svg.contains(">loss</text>"),
            "{svg}"
        );
        assert!(svg.contains(">kept: epoch 2</text>"));
        assert!(svg.contains(">2.0</text>") && !svg.contains("3.420"));
        // NaN points are left out, not drawn at a made-up height.
        assert_eq!(svg.matches("<circle").count(), 5);
    }

    #[test]
    fn a_confusion_matrix_names_its_axes_and_has_a_colour_scale() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let svg = heatmap("confusion", &labels, &[3, 1, 0, 0]);
        assert!(svg.contains(">predicted class</text>") && svg.contains(">true class</text>"));
        assert!(svg.contains(">of the row</text>") && svg.contains(">100%</text>"));
        assert!(
            svg.contains("true a → predicted b: 1 (25.0% of the row)"),
            "{svg}"
        );
        // An empty cell is not drawn: the background is white.
        assert!(!svg.contains("true b → predicted a"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn counts_shade_on_a_log_scale_up_to_the_largest_cell() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let svg = heatmap_shaded("confusion", &labels, &[99, 1, 0, 9], Shading::Count);
        assert!(svg.contains(">rows (log scale)</text>") && svg.contains(">99</text>"));
        // ln(1 + 9) / ln(1 + 99) = 0.5: halfway, so the middle mark is 9.
        assert!(svg.contains(">9</text>"), "{svg}");
        // The largest cell is the darkest; one of 1 is pale.
        assert!(svg.contains(r#"fill="rgb(8,48,107)"><title>true a → predicted a: 99"#));
        assert!(
            svg.contains(r#"fill="rgb(218,224,233)"><title>true a → predicted b: 1"#),
            "{svg}"
        );
        let rows = heatmap("confusion", &labels, &[99, 1, 0, 9]);
        // By share of the row, b's 9 of 9 is as dark as a's 99 of 100 nearly.
        assert!(rows.contains(r#"fill="rgb(8,48,107)"><title>true b → predicted b: 9"#));
    }

    #[test]
    fn training_curves_add_a_learning_rate_panel_only_when_it_changes() {
        let epoch = |loss: f64, lr: f64| EpochPoint {
            loss: Some(loss),
            accuracy: Some(0.5),
            lr: Some(lr),
            ..EpochPoint::default()
        };
        let constant = training_curves(&[epoch(2.0, 0.01), epoch(1.0, 0.01)], 2);
        assert!(!constant.contains(">learning rate</text>"));
        assert!(
            !constant.contains("kept: epoch"),
            "no validation, nothing kept"
        );
        let scheduled = training_curves(&[epoch(2.0, 0.01), epoch(1.0, 0.005)], 2);
        assert!(scheduled.contains(">learning rate</text>"), "{scheduled}");
        let validated = training_curves(
            &[
                EpochPoint {
                    val_loss: Some(1.5),
                    ..epoch(2.0, 0.01)
                },
                epoch(1.0, 0.01),
            ],
            1,
        );
        assert!(
            validated.contains(">validation loss</text>") && validated.contains("kept: epoch 1")
        );
    }
}
