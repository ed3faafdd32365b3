//! The results, and the three ways they leave the bench: a Markdown report on stdout,
//! `results.json` with every raw figure, and `chart.svg` (hand-written SVG bars).
//!
//! - `metrics`: the figures measured per contender and round, in table order.
//! - `results`: everything one run measured, and the medians and ratios over it.
//! - `markdown`, `json`, `svg`: the three renderings.
//!
//! This file keeps the number format the Markdown and the SVG share.

mod json;
mod markdown;
mod metrics;
mod results;
mod svg;

pub use json::json;
pub use markdown::markdown;
pub use metrics::{
    BESIDE_SLOW, BESIDE_SLOW_SHARE, BULK, CONN_RATE, CPU_PER_GIB, LATENCY_ONE_CPU_P50,
    LATENCY_ONE_CPU_P99, LATENCY_P50, LATENCY_P99, Metric, all_metrics,
};
pub use results::{Fleet, IdleCpu, Machine, Results, Settings};
pub use svg::svg;

/// A figure with a sensible number of digits.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}
