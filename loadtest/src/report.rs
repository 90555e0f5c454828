//! Results: a JSON file, a Markdown table and SVG plots, written under the results folder.

use crate::harness::Opts;
use crate::util::{median, min_max};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub section: String,
    pub metric: String,
    /// lantern: median, min, max.
    pub lantern: Option<[f64; 3]>,
    pub comparator: Option<[f64; 3]>,
    /// lantern median ÷ comparator median.
    pub ratio: Option<f64>,
    pub target: String,
    /// `None` when there is nothing to judge.
    pub met: Option<bool>,
    /// Free text instead of numbers (counts).
    pub text: Option<(String, String)>,
}

fn stats(v: &[f64]) -> Option<[f64; 3]> {
    let m = median(v);
    if !m.is_finite() {
        return None;
    }
    let (lo, hi) = min_max(v);
    Some([m, lo, hi])
}

impl Row {
    fn new(metric: &str) -> Row {
        Row { section: String::new(), metric: metric.into(), lantern: None, comparator: None, ratio: None, target: String::new(), met: None, text: None }
    }

    /// lantern against a comparator, judged on the ratio of medians.
    pub fn ab(metric: &str, l: &[f64], c: &[f64], target: &str, pass: impl Fn(f64) -> bool) -> Row {
        let mut r = Row::new(metric);
        r.lantern = stats(l);
        r.comparator = stats(c);
        if let (Some(a), Some(b)) = (r.lantern, r.comparator) {
            if b[0] != 0.0 {
                r.ratio = Some(a[0] / b[0]);
            }
        }
        r.target = target.into();
        if !target.is_empty() && !target.starts_with('(') {
            r.met = r.ratio.map(pass);
        }
        r
    }

    /// lantern against a comparator, judged on lantern's own median.
    pub fn ab_abs(metric: &str, l: &[f64], c: &[f64], target: &str, pass: impl Fn(f64) -> bool) -> Row {
        let mut r = Row::ab(metric, l, c, target, |_| true);
        r.met = r.lantern.map(|s| pass(s[0]));
        r
    }

    pub fn single(metric: &str, l: &[f64]) -> Row {
        let mut r = Row::new(metric);
        r.lantern = stats(l);
        r
    }

    pub fn single_target(metric: &str, l: &[f64], target: &str, pass: impl Fn(f64) -> bool) -> Row {
        let mut r = Row::single(metric, l);
        r.target = target.into();
        r.met = r.lantern.map(|s| pass(s[0]));
        r
    }

    pub fn counts(metric: &str, l: (u64, u64), c: (u64, u64), ok: bool) -> Row {
        let mut r = Row::new(metric);
        let f = |(a, b): (u64, u64)| if b == 0 { "–".to_string() } else { format!("{a} / {b}") };
        r.text = Some((f(l), f(c)));
        r.target = "no lost frames".into();
        r.met = (l.1 > 0).then_some(ok);
        r
    }

    pub fn ratio(section: &str, metric: &str, a: f64, b: f64, target: &str, ok: bool) -> Row {
        let mut r = Row::new(metric);
        r.section = section.into();
        r.lantern = Some([a, a, a]);
        r.comparator = Some([b, b, b]);
        r.ratio = Some(a / b);
        r.target = target.into();
        r.met = Some(ok);
        r
    }
}

/// A plotted line: x and y values.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Latency distribution as a CDF (x: ms, y: share of deliveries).
    pub fn cdf(name: &str, latencies_ns: &[u64]) -> Series {
        let mut v = latencies_ns.to_vec();
        v.sort_unstable();
        let n = v.len().max(1);
        let step = (n / 400).max(1);
        let mut points: Vec<(f64, f64)> = (0..v.len()).step_by(step).map(|i| (v[i] as f64 / 1e6, (i + 1) as f64 / n as f64)).collect();
        if let Some(&last) = v.last() {
            points.push((last as f64 / 1e6, 1.0));
        }
        Series { name: name.into(), points }
    }

    /// Deliveries per second over time, in 10 ms bins (x: ms since the first update).
    pub fn timeline(name: &str, recv_ns: &[u64]) -> Series {
        let bin = 10_000_000u64;
        let max = recv_ns.iter().copied().max().unwrap_or(0);
        let mut bins = vec![0u64; (max / bin + 1) as usize];
        for &t in recv_ns {
            bins[(t / bin) as usize] += 1;
        }
        Series { name: name.into(), points: bins.iter().enumerate().map(|(i, &c)| (i as f64 * 10.0, c as f64 * 100.0)).collect() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub command: String,
    pub options: Value,
    pub sections: Vec<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub errors: Vec<(String, String)>,
    pub raw: serde_json::Map<String, Value>,
    pub wall_s: f64,
    #[serde(skip)]
    pub latency_series: Vec<Series>,
    #[serde(skip)]
    pub timeline_series: Vec<Series>,
}

impl Report {
    pub fn new(opts: &Opts) -> Report {
        Report {
            machine: crate::util::machine(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            options: json!(format!("{opts:?}")),
            sections: vec![],
            rows: vec![],
            notes: vec![],
            errors: vec![],
            raw: Default::default(),
            wall_s: 0.0,
            latency_series: vec![],
            timeline_series: vec![],
        }
    }

    pub fn section(&mut self, title: &str) {
        self.sections.push(title.into());
    }

    pub fn row(&mut self, mut r: Row) {
        if r.section.is_empty() {
            r.section = self.sections.last().cloned().unwrap_or_default();
        } else if !self.sections.contains(&r.section) {
            self.sections.push(r.section.clone());
        }
        self.rows.push(r);
    }

    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    pub fn error(&mut self, scenario: &str, e: String) {
        self.errors.push((scenario.into(), e));
    }

    pub fn raw(&mut self, key: &str, v: Value) {
        self.raw.insert(key.into(), v);
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Machine: {}. Figures are medians of the A/B/A/B rounds with [min–max]; ratio = lantern ÷ comparator.\n", self.machine);
        for sec in &self.sections {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| &r.section == sec).collect();
            let _ = writeln!(s, "**{sec}**\n");
            if rows.is_empty() {
                let _ = writeln!(s, "(no figures)\n");
                continue;
            }
            let _ = writeln!(s, "| metric | lantern | comparator | ratio | target | met |\n|---|---|---|---|---|---|");
            for r in rows {
                let (l, c) = match &r.text {
                    Some((a, b)) => (a.clone(), b.clone()),
                    None => (fmt3(r.lantern), fmt3(r.comparator)),
                };
                let ratio = r.ratio.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into());
                let met = match r.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                };
                let _ = writeln!(s, "| {} | {l} | {c} | {ratio} | {} | {met} |", r.metric, r.target);
            }
            let _ = writeln!(s);
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        for (sc, e) in &self.errors {
            let _ = writeln!(s, "- **{sc} failed**: {e}");
        }
        let _ = writeln!(s, "\nWall time {:.0} s.", self.wall_s);
        s
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let e = |e: std::io::Error| format!("{}: {e}", dir.display());
        std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?).map_err(e)?;
        std::fs::write(dir.join("table.md"), self.markdown()).map_err(e)?;
        if !self.latency_series.is_empty() {
            std::fs::write(dir.join("latency.svg"), svg_plot("Fan-out delivery latency (CDF)", "latency, ms (log)", "share of deliveries", &self.latency_series, true)).map_err(e)?;
        }
        if !self.timeline_series.is_empty() {
            std::fs::write(dir.join("deliveries.svg"), svg_plot("Deliveries per second over time (10 ms bins)", "ms since the first update", "deliveries/s", &self.timeline_series, false)).map_err(e)?;
        }
        Ok(())
    }
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt3(v: Option<[f64; 3]>) -> String {
    match v {
        None => "–".into(),
        Some([m, lo, hi]) if lo == hi => fmt_num(m),
        Some([m, lo, hi]) => format!("{} [{}–{}]", fmt_num(m), fmt_num(lo), fmt_num(hi)),
    }
}

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// A line plot as a standalone SVG.
pub fn svg_plot(title: &str, xlabel: &str, ylabel: &str, series: &[Series], logx: bool) -> String {
    let (w, h, ml, mr, mt, mb) = (760.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let tx = |x: f64| if logx { x.max(1e-3).log10() } else { x };
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(tx(x));
        x1 = x1.max(tx(x));
        y1 = y1.max(y);
    }
    if !x0.is_finite() || x1 <= x0 {
        x0 = 0.0;
        x1 = 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    let px = |x: f64| ml + (tx(x) - x0) / (x1 - x0) * (w - ml - mr);
    let py = |y: f64| h - mb - y / y1 * (h - mt - mb);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let _ = writeln!(s, "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>", w / 2.0);
    let _ = writeln!(s, "<line x1=\"{ml}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{ml}\" y1=\"{mt}\" x2=\"{ml}\" y2=\"{}\" stroke=\"black\"/>", h - mb, w - mr, h - mb, h - mb);
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let xv = x0 + f * (x1 - x0);
        let label = if logx { fmt_num(10f64.powf(xv)) } else { fmt_num(xv) };
        let x = ml + f * (w - ml - mr);
        let _ = writeln!(s, "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"black\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{label}</text>", h - mb, h - mb + 5.0, h - mb + 18.0);
        let y = h - mb - f * (h - mt - mb);
        let _ = writeln!(s, "<line x1=\"{}\" y1=\"{y}\" x2=\"{w2}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", ml, ml - 6.0, y + 4.0, fmt_num(f * y1), w2 = w - mr);
    }
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>", w / 2.0, h - 10.0);
    let _ = writeln!(s, "<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{ylabel}</text>", h / 2.0, h / 2.0);
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = se.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = writeln!(s, "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"/>", path.join(" "));
        let _ = writeln!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{}</text>", w - mr - 150.0, mt + 10.0 + i as f64 * 16.0, w - mr - 132.0, mt + 14.0 + i as f64 * 16.0, se.name);
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_svg() {
        let r = Row::ab("x", &[2.0, 4.0, 3.0], &[1.0, 2.0, 1.5], "≤ 1.5×", |q| q <= 1.5);
        assert_eq!(r.lantern, Some([3.0, 2.0, 4.0]));
        assert_eq!(r.ratio, Some(2.0));
        assert_eq!(r.met, Some(false));
        let svg = svg_plot("t", "x", "y", &[Series::cdf("a", &[1_000_000, 2_000_000, 3_000_000])], true);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    }
}
