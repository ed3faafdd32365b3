//! `chart.svg`: hand-written SVG bar panels (throughput, latency, connection rate,
//! memory).

use std::fmt::Write as _;

use super::metrics::{BULK, CONN_RATE, LATENCIES, Metric};
use super::num;
use super::results::Results;
use crate::contenders::Contender;

/// Colours of the bar series.
const COLOURS: [&str; 3] = ["#2f6db5", "#9aa5b1", "#4a5563"];
const AUTOSSH_COLOUR: &str = "#d9822b";
const CHART_WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 270.0;
/// Space left of, above and below each panel's plot area.
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_TOP: f64 = 60.0;
const MARGIN_BOTTOM: f64 = 42.0;

/// One bar panel: groups along x, one bar per series in each group.
struct Panel {
    title: String,
    groups: Vec<String>,
    series: Vec<Series>,
}

/// A panel's series: name, colour, one value per group (the figure, or why there is none).
type Series = (String, &'static str, Vec<Result<f64, &'static str>>);

/// Stacked panels: throughput, latency, connection rate, memory.
pub fn svg(r: &Results) -> String {
    let contender_series = |metrics: &[&Metric]| -> Vec<Series> {
        Contender::ALL
            .iter()
            .zip(COLOURS)
            .map(|(&c, colour)| {
                let values = metrics
                    .iter()
                    .map(|m| r.median(c, m).ok_or("failed"))
                    .collect();
                (c.label().to_owned(), colour, values)
            })
            .collect()
    };
    let bulk: Vec<&Metric> = BULK.iter().collect();
    let mut panels = vec![
        Panel {
            title: "Throughput through the forward (Gbit/s, median; higher is better)".to_owned(),
            groups: BULK.iter().map(|m| m.short.to_owned()).collect(),
            series: contender_series(&bulk),
        },
        Panel {
            title: "1-byte ping-pong through -L (µs; lower is better)".to_owned(),
            groups: LATENCIES.iter().map(|m| m.short.to_owned()).collect(),
            series: contender_series(&LATENCIES),
        },
        Panel {
            title: "New connections through -L (conn/s; higher is better)".to_owned(),
            groups: vec![CONN_RATE.short.to_owned()],
            series: contender_series(&[&CONN_RATE]),
        },
    ];
    let mut sizes: Vec<usize> = r.fleets.iter().map(|f| f.tunnels).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if !sizes.is_empty() {
        let series = [("tunneld", COLOURS[0]), ("autossh", AUTOSSH_COLOUR)]
            .into_iter()
            .map(|(tool, colour)| {
                let values = sizes
                    .iter()
                    .map(|&n| {
                        let failed = format!("{tool} × {n} tunnels failed");
                        match r.fleets.iter().find(|f| f.tool == tool && f.tunnels == n) {
                            Some(f) => Ok(f.pss_kib as f64 / 1024.0),
                            None if r.notes.iter().any(|x| x.starts_with(&failed)) => Err("failed"),
                            // Not every size is run for every tool (autossh × 1000).
                            None => Err("not run"),
                        }
                    })
                    .collect();
                (tool.to_owned(), colour, values)
            })
            .collect();
        panels.push(Panel {
            title: "Memory of idle tunnels (PSS, MiB; lower is better)".to_owned(),
            groups: sizes.iter().map(|n| format!("{n} tunnel(s)")).collect(),
            series,
        });
    }
    let height = PANEL_HEIGHT * panels.len() as f64 + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" viewBox="0 0 {CHART_WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let m = &r.machine;
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="13">{}</text>"#,
        escape(&format!(
            "tunneld vs ssh: nproc {}, {}, {}, {} round(s){}",
            m.nproc,
            m.cpu_model,
            m.openssh,
            r.settings.rounds,
            if r.settings.quick { ", --quick" } else { "" }
        ))
    );
    for (i, p) in panels.iter().enumerate() {
        draw_panel(&mut out, p, 40.0 + PANEL_HEIGHT * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, p: &Panel, top: f64) {
    let plot_top = top + MARGIN_TOP;
    let plot_bottom = top + PANEL_HEIGHT - MARGIN_BOTTOM;
    let plot_height = plot_bottom - plot_top;
    let plot_width = CHART_WIDTH - MARGIN_LEFT - 20.0;
    let max = p
        .series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b));
    let scale_max = nice_ceiling(max);
    let y = |v: f64| plot_bottom - v / scale_max * plot_height;
    let _ = writeln!(
        out,
        r#"<text x="10" y="{}" font-size="13" font-weight="bold">{}</text>"#,
        top + 18.0,
        escape(&p.title)
    );
    // Legend, on its own line under the title.
    let mut lx = MARGIN_LEFT;
    for (name, colour, _) in &p.series {
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            top + 27.0,
            lx + 14.0,
            top + 36.0,
            escape(name)
        );
        lx += 150.0;
    }
    const TICKS: usize = 5;
    for t in 0..=TICKS {
        let v = scale_max * t as f64 / TICKS as f64;
        let _ = writeln!(
            out,
            r##"<line x1="{MARGIN_LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#e3e6ea"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            MARGIN_LEFT + plot_width,
            MARGIN_LEFT - 6.0,
            y(v) + 4.0,
            tick(v),
            y = y(v)
        );
    }
    let group_width = plot_width / p.groups.len().max(1) as f64;
    let bar_width = (group_width * 0.8 / p.series.len().max(1) as f64).min(60.0);
    for (g, label) in p.groups.iter().enumerate() {
        let centre = MARGIN_LEFT + group_width * (g as f64 + 0.5);
        let first = centre - bar_width * p.series.len() as f64 / 2.0;
        for (i, (_, colour, values)) in p.series.iter().enumerate() {
            let x = first + bar_width * i as f64;
            match values.get(g).copied().unwrap_or(Err("failed")) {
                Ok(v) => {
                    let _ = writeln!(
                        out,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                        y(v),
                        bar_width - 2.0,
                        plot_bottom - y(v),
                        x + bar_width / 2.0 - 1.0,
                        y(v) - 3.0,
                        num(v)
                    );
                }
                Err(why) => {
                    let _ = writeln!(
                        out,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                        x + bar_width / 2.0 - 1.0,
                        plot_bottom - 3.0,
                        why
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            r#"<text x="{centre:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            plot_bottom + 16.0,
            escape(label)
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{MARGIN_LEFT}" x2="{}" y1="{plot_bottom}" y2="{plot_bottom}" stroke="#333"/>"##,
        MARGIN_LEFT + plot_width
    );
}

/// An axis label: no trailing zeros (0, 2.5, 20).
fn tick(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (1 for nothing to show).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * magnitude)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
