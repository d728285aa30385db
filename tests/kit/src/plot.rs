//! Line charts as SVG, for benchmarks that plot throughput against clients. No dependency: a
//! chart is a few rectangles, lines and labels.

use std::fmt::Write;

/// One line of a chart: a name and its (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's name for it.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// One chart of a figure.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Its title.
    pub title: String,
    /// The lines.
    pub series: Vec<Series>,
}

const COLOURS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const W: f64 = 420.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 95.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v`: 1, 2 or 5 times a power of ten.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&m| m >= v)
        .unwrap_or(10.0 * p)
}

/// An SVG figure of `charts` side by side, x on a log scale (clients), y linear from zero
/// (requests per second), titled `title` with `x_label` and `y_label` on the axes.
pub fn svg(title: &str, x_label: &str, y_label: &str, charts: &[Chart]) -> String {
    let width = W * charts.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" font-family="sans-serif" font-size="11">"#,
        h = H + 20.0
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="14" font-size="13" text-anchor="middle">{t}</text>"#,
        x = width / 2.0,
        t = escape(title)
    );
    for (i, chart) in charts.iter().enumerate() {
        chart_into(&mut out, chart, W * i as f64, x_label, y_label);
    }
    out.push_str("</svg>\n");
    out
}

fn chart_into(out: &mut String, chart: &Chart, x0: f64, x_label: &str, y_label: &str) {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut xmin, mut xmax, mut ymax) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in points {
        xmin = xmin.min(x.max(1e-9));
        xmax = xmax.max(x);
        ymax = ymax.max(y);
    }
    if xmin > xmax {
        (xmin, xmax) = (1.0, 10.0);
    }
    if xmax <= xmin {
        xmax = xmin * 10.0;
    }
    let ymax = nice_max(ymax);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM + 20.0);
    let px = |x: f64| x0 + LEFT + (x.max(1e-9).ln() - xmin.ln()) / (xmax.ln() - xmin.ln()) * pw;
    let py = |y: f64| TOP + 10.0 + ph - y / ymax * ph;
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{y}" font-size="12" text-anchor="middle">{t}</text>"#,
        x = x0 + LEFT + pw / 2.0,
        y = TOP + 2.0,
        t = escape(&chart.title)
    );
    // Axes, grid and ticks.
    let _ = writeln!(
        out,
        r##"<rect x="{x}" y="{y}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
        x = x0 + LEFT,
        y = TOP + 10.0
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let y = py(v);
        let _ = writeln!(
            out,
            r##"<line x1="{a}" y1="{y}" x2="{b}" y2="{y}" stroke="#ddd"/><text x="{t}" y="{ty}" text-anchor="end">{v}</text>"##,
            a = x0 + LEFT,
            b = x0 + LEFT + pw,
            t = x0 + LEFT - 4.0,
            ty = y + 4.0,
            v = v.round()
        );
    }
    let mut ticks: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for x in ticks {
        let _ = writeln!(
            out,
            r#"<text x="{px}" y="{y}" text-anchor="middle">{x}</text>"#,
            px = px(x),
            y = TOP + 10.0 + ph + 14.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{y}" text-anchor="middle">{l}</text>"#,
        x = x0 + LEFT + pw / 2.0,
        y = TOP + 10.0 + ph + 28.0,
        l = escape(x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})">{l}</text>"#,
        x = x0 + 14.0,
        y = TOP + 10.0 + ph / 2.0,
        l = escape(y_label)
    );
    for (i, series) in chart.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let coords: Vec<String> = series
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            coords.join(" ")
        );
        for c in &coords {
            let (cx, cy) = c.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                out,
                r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>"#
            );
        }
        let ly = TOP + 10.0 + ph + 42.0 + 13.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{a}" y1="{y}" x2="{b}" y2="{y}" stroke="{colour}" stroke-width="2"/><text x="{t}" y="{ty}">{n}</text>"#,
            a = x0 + LEFT,
            b = x0 + LEFT + 18.0,
            y = ly,
            t = x0 + LEFT + 24.0,
            ty = ly + 4.0,
            n = escape(&series.name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_becomes_a_line_with_its_points_inside_the_chart() {
        let charts = [Chart {
            title: "SET <1 node>".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 100.0), (16.0, 900.0), (64.0, 1500.0)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(1.0, 50.0), (64.0, 2000.0)],
                },
            ],
        }];
        let svg = svg("t", "clients", "requests/s", &charts);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("SET &lt;1 node&gt;"));
        for circle in svg.lines().filter(|l| l.starts_with("<circle")) {
            let num = |attr: &str| -> f64 {
                let rest = circle.split(attr).nth(1).unwrap();
                rest.trim_start_matches("=\"")
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let (x, y) = (num("cx"), num("cy"));
            assert!((LEFT..=W - RIGHT).contains(&x), "{circle}");
            assert!((TOP..=H).contains(&y), "{circle}");
        }
        assert_eq!(nice_max(1500.0), 2000.0);
        assert_eq!(nice_max(2000.0), 2000.0);
        assert_eq!(nice_max(2001.0), 5000.0);
    }
}
