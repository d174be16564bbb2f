//! Turns the scenarios' JSON results into Markdown tables and SVG plots for BENCHMARKS.md.

use std::fmt::Write;

use serde_json::Value;

/// A Markdown table of one scenario's medians; the last column shows each run's main figure.
pub fn table(result: &Value) -> String {
    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return String::new();
    }
    // Every figure any row has (rows of one scenario may measure different things).
    let mut keys: Vec<String> = Vec::new();
    for row in &rows {
        for key in row["median"].as_object().into_iter().flat_map(|m| m.keys()) {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    // Rates first, then latencies in rising order, then the rest.
    let rank = |key: &str| FIRST.iter().position(|k| *k == key).unwrap_or(FIRST.len());
    keys.sort_by_key(|k| rank(k));
    let mains = ["ok_per_s", "started_per_s", "added_mib", "confirmed_per_s"];
    let main_of = |row: &Value| {
        mains
            .into_iter()
            .find(|k| !row["median"][*k].is_null())
            .unwrap_or("ok_per_s")
    };
    let mut main_names: Vec<&str> = Vec::new();
    for main in rows.iter().map(main_of) {
        if !main_names.contains(&main) {
            main_names.push(main);
        }
    }
    let mut out = format!(
        "**{}** (median of {} runs)\n\n| row | {} | {}, each run |\n|---|{}---|\n",
        result["scenario"].as_str().unwrap_or("?"),
        result["runs"],
        keys.join(" | "),
        main_names.join(" or "),
        "---|".repeat(keys.len())
    );
    for row in &rows {
        let cells: Vec<String> = keys.iter().map(|k| number(&row["median"][k])).collect();
        let each: Vec<String> = row["runs"][main_of(row)]
            .as_array()
            .map(|a| a.iter().map(number).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row["row"].as_str().unwrap_or("?"),
            cells.join(" | "),
            each.join(", ")
        );
    }
    out
}

const FIRST: [&str; 12] = [
    "offered_per_s",
    "ok_per_s",
    "started_per_s",
    "503_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "e2e_p999_ms",
    "e2e_max_ms",
];

fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "–".into(),
    }
}

/// One line of a chart.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A plain SVG line chart, axes from zero.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (width, height, margin) = (640.0, 400.0, 60.0);
    let max = |pick: fn(&(f64, f64)) -> f64| {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(pick))
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.05
    };
    let (x_max, y_max) = (max(|p| p.0), max(|p| p.1));
    let x = |v: f64| margin + v / x_max * (width - 2.0 * margin);
    let y = |v: f64| height - margin - v / y_max * (height - 2.0 * margin);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15">{title}</text>
<line x1="{margin}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{x_label}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{y_label}</text>
"#,
        width / 2.0,
        height - margin,
        width - margin,
        height - margin,
        height - margin,
        width / 2.0,
        height - 16.0,
        height / 2.0,
        height / 2.0,
    );
    for tick in 0..=4 {
        let (xv, yv) = (x_max * f64::from(tick) / 4.0, y_max * f64::from(tick) / 4.0);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{xv:.0}</text><text x="{}" y="{}" text-anchor="end">{yv:.0}</text>"#,
            x(xv),
            height - margin + 16.0,
            margin - 6.0,
            y(yv) + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for &(px, py) in &s.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                x(px),
                y(py)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
            margin + 10.0,
            margin + 16.0 * i as f64,
            s.name
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The series of figure `y` against figure `x`, one point per row of a result.
pub fn series(result: &Value, name: &str, x: &str, y: &str) -> Series {
    let points = result["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| Some((row["median"][x].as_f64()?, row["median"][y].as_f64()?)))
        .collect();
    Series {
        name: name.to_string(),
        points,
    }
}
