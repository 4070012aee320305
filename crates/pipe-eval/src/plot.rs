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

/// A named series of values, one per epoch.
pub type Series<'a> = (&'a str, Vec<f64>);

/// One or more series against epoch number, each panel scaled on its own.
pub fn line_chart(title: &str, panels: &[(&str, Vec<Series>)]) -> String {
    let (w, panel_h, margin) = (640.0, 220.0, 50.0);
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
    for (p, (name, series)) in panels.iter().enumerate() {
        let top = margin + p as f64 * (panel_h + margin);
        let (left, right) = (60.0, w - 150.0);
        let values: Vec<f64> = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .collect();
        let (mut lo, mut hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-9 {
            hi = lo + 1.0;
        }
        let n = series
            .iter()
            .map(|(_, v)| v.len())
            .max()
            .unwrap_or(1)
            .max(2);
        let x = |i: usize| left + (right - left) * i as f64 / (n - 1) as f64;
        let y = |v: f64| top + panel_h - panel_h * (v - lo) / (hi - lo);
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{top}" width="{}" height="{panel_h}" fill="none" stroke="#999"/>"##,
            right - left
        );
        let _ = write!(
            svg,
            r#"<text x="{left}" y="{}">{}</text>"#,
            top - 6.0,
            escape(name)
        );
        for k in 0..=4 {
            let v = lo + (hi - lo) * k as f64 / 4.0;
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{v:.3}</text>"##,
                left - 4.0,
                y(v) + 4.0
            );
        }
        for i in 0..n {
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                x(i),
                top + panel_h + 14.0,
                i + 1
            );
        }
        for (s, (label, v)) in series.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let points: Vec<String> = v
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
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

/// A confusion matrix as a heat map, rows = truth, columns = prediction, normalised per row.
pub fn heatmap(title: &str, labels: &[String], counts: &[u64]) -> String {
    let n = labels.len();
    let cell = if n > 30 { 14.0 } else { 22.0 };
    let label_w = 8.0 * labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f64 + 10.0;
    let (w, h) = (
        label_w + cell * n as f64 + 20.0,
        label_w + cell * n as f64 + 40.0,
    );
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
    let (x0, y0) = (label_w, label_w + 20.0);
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
            let share = if row_total == 0 {
                0.0
            } else {
                counts[r * n + c] as f64 / row_total as f64
            };
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)"><title>{} → {}: {}</title></rect>"#,
                x0 + cell * c as f64,
                y0 + cell * r as f64,
                escape(&labels[r]),
                escape(&labels[c]),
                counts[r * n + c]
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
    svg.push_str("</svg>\n");
    svg
}
