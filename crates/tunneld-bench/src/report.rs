//! The results, and the three ways they leave the bench: a Markdown report on stdout,
//! `results.json` with every raw figure, and `chart.svg` (hand-written SVG bars).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::contenders::Contender;
use crate::measure::median;

/// One figure measured for every contender in every round.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    /// The label under a bar group in the chart.
    pub short: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
}

const fn metric(
    key: &'static str,
    label: &'static str,
    short: &'static str,
    unit: &'static str,
    higher: bool,
) -> Metric {
    Metric {
        key,
        label,
        short,
        unit,
        higher_is_better: higher,
    }
}

/// Throughput metrics, keyed `{local,remote}_{c2s,s2c}_{streams}`, in the order measured.
pub const BULK: [Metric; 8] = [
    metric(
        "local_c2s_1",
        "-L client→server, 1 stream",
        "-L c→s ×1",
        "Gbit/s",
        true,
    ),
    metric(
        "local_c2s_8",
        "-L client→server, 8 streams",
        "-L c→s ×8",
        "Gbit/s",
        true,
    ),
    metric(
        "local_s2c_1",
        "-L server→client, 1 stream",
        "-L s→c ×1",
        "Gbit/s",
        true,
    ),
    metric(
        "local_s2c_8",
        "-L server→client, 8 streams",
        "-L s→c ×8",
        "Gbit/s",
        true,
    ),
    metric(
        "remote_c2s_1",
        "-R client→server, 1 stream",
        "-R c→s ×1",
        "Gbit/s",
        true,
    ),
    metric(
        "remote_c2s_8",
        "-R client→server, 8 streams",
        "-R c→s ×8",
        "Gbit/s",
        true,
    ),
    metric(
        "remote_s2c_1",
        "-R server→client, 1 stream",
        "-R s→c ×1",
        "Gbit/s",
        true,
    ),
    metric(
        "remote_s2c_8",
        "-R server→client, 8 streams",
        "-R s→c ×8",
        "Gbit/s",
        true,
    ),
];
/// Contender CPU (its whole process tree, not sshd) per GiB carried, during the
/// 1-stream -L windows: unlike throughput, it does not depend on how the few cores of a
/// small machine are shared between the bench, sshd and the contender.
pub const CPU_PER_GIB: [Metric; 2] = [
    metric(
        "local_c2s_1_cpu",
        "-L client→server, 1 stream, CPU per GiB",
        "-L c→s CPU",
        "ms",
        false,
    ),
    metric(
        "local_s2c_1_cpu",
        "-L server→client, 1 stream, CPU per GiB",
        "-L s→c CPU",
        "ms",
        false,
    ),
];
/// One -L server→client stream while another connection of the same forward reads a
/// download at [`crate::measure::SLOW_READER_BYTES_PER_SEC`].
pub const BESIDE_SLOW: Metric = metric(
    "local_s2c_1_beside_slow_reader",
    "-L server→client, 1 stream beside a 1 MiB/s reader",
    "-L s→c beside slow",
    "Gbit/s",
    true,
);
/// [`BESIDE_SLOW`] over the same round's solo `local_s2c_1`.
pub const BESIDE_SLOW_SHARE: Metric = metric(
    "local_s2c_1_beside_slow_reader_share",
    "-L server→client beside a 1 MiB/s reader, share of solo",
    "share of solo",
    "%",
    true,
);
pub const LATENCY_P50: Metric =
    metric("latency_p50", "-L 1-byte ping-pong p50", "p50", "µs", false);
pub const LATENCY_P99: Metric =
    metric("latency_p99", "-L 1-byte ping-pong p99", "p99", "µs", false);
pub const LATENCY_ONE_CPU_P50: Metric = metric(
    "latency_one_cpu_p50",
    "-L 1-byte ping-pong p50, all on one CPU",
    "p50, 1 CPU",
    "µs",
    false,
);
pub const LATENCY_ONE_CPU_P99: Metric = metric(
    "latency_one_cpu_p99",
    "-L 1-byte ping-pong p99, all on one CPU",
    "p99, 1 CPU",
    "µs",
    false,
);
pub const CONN_RATE: Metric = metric(
    "conn_rate",
    "-L new connections",
    "connect, 1-byte echo, close",
    "conn/s",
    true,
);

/// The latency metrics, in table order.
const LATENCIES: [&Metric; 4] = [
    &LATENCY_P50,
    &LATENCY_P99,
    &LATENCY_ONE_CPU_P50,
    &LATENCY_ONE_CPU_P99,
];

/// Every per-round metric, in table order.
pub fn all_metrics() -> impl Iterator<Item = &'static Metric> {
    BULK.iter()
        .chain(&CPU_PER_GIB)
        .chain([&BESIDE_SLOW, &BESIDE_SLOW_SHARE])
        .chain(LATENCIES)
        .chain([&CONN_RATE])
}

/// Facts about the machine, printed above the table.
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub openssh: String,
    pub tunneld: String,
    pub commit: String,
}

/// How the run was set up.
pub struct Settings {
    pub command: String,
    pub quick: bool,
    pub rounds: usize,
    pub bulk_secs: f64,
    pub warmup_secs: f64,
    pub round_trips: usize,
    pub conn_secs: f64,
    pub idle_secs: f64,
    pub sshd_extra: Vec<String>,
    /// Whether the per-round figures and the fleets were measured (`--only`).
    pub rounds_run: bool,
    pub fleets_run: bool,
    pub nat_run: bool,
}

/// Memory (and, for 100 tunnels, idle CPU) of a set of tunnels all up.
pub struct Fleet {
    pub tool: &'static str,
    pub tunnels: usize,
    pub pss_kib: u64,
    pub processes: usize,
    pub up_secs: f64,
    pub idle_cpu: Option<IdleCpu>,
}

/// CPU of a fleet left idle, in % of one core.
#[derive(Clone, Copy, Debug)]
pub struct IdleCpu {
    /// From utime + stime (clock ticks).
    pub ticks_percent: f64,
    /// From the threads' schedstat run time (nanoseconds).
    pub run_percent: f64,
}

/// Everything one run measured.
pub struct Results {
    pub machine: Machine,
    pub settings: Settings,
    /// contender key → metric key → one value per round that succeeded.
    pub samples: BTreeMap<&'static str, BTreeMap<&'static str, Vec<f64>>>,
    /// contender key → the client→server cipher sshd logged.
    pub ciphers: BTreeMap<&'static str, String>,
    pub fleets: Vec<Fleet>,
    pub nat: Vec<crate::nat::NatRow>,
    /// Failures and skipped rows, in words.
    pub notes: Vec<String>,
}

impl Results {
    pub fn push(&mut self, c: Contender, m: &Metric, value: f64) {
        self.samples
            .entry(c.key())
            .or_default()
            .entry(m.key)
            .or_default()
            .push(value);
    }

    fn rounds_of(&self, c: Contender, m: &Metric) -> &[f64] {
        self.samples
            .get(c.key())
            .and_then(|s| s.get(m.key))
            .map_or(&[], Vec::as_slice)
    }

    pub fn median(&self, c: Contender, m: &Metric) -> Option<f64> {
        median(self.rounds_of(c, m))
    }

    /// The better of the two `ssh` medians.
    fn best_ssh(&self, m: &Metric) -> Option<f64> {
        let meds = Contender::ALL
            .into_iter()
            .filter(|c| c.is_ssh())
            .filter_map(|c| self.median(c, m));
        if m.higher_is_better {
            meds.reduce(f64::max)
        } else {
            meds.reduce(f64::min)
        }
    }

    /// A contender's median over the best ssh's (for latency, above 1 is slower).
    pub fn ratio(&self, c: Contender, m: &Metric) -> Option<f64> {
        Some(self.median(c, m)? / self.best_ssh(m)?)
    }
}

/// A figure with a sensible number of digits.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn mib(kib: u64) -> String {
    num(kib as f64 / 1024.0)
}

/// The report: command and machine facts, then the contenders' table, then memory and CPU.
pub fn markdown(r: &Results) -> String {
    let (m, s) = (&r.machine, &r.settings);
    let mut out = String::new();
    let _ = writeln!(out, "# tunneld benchmark\n");
    let _ = writeln!(out, "- command: `{}`", s.command);
    let _ = writeln!(
        out,
        "- machine: nproc {}, {}, Linux {}; {}; {} ({})",
        m.nproc, m.cpu_model, m.kernel, m.openssh, m.tunneld, m.commit
    );
    let _ = writeln!(
        out,
        "- server: the test-kit's private sshd on 127.0.0.1 (extra config: {}); all traffic on loopback",
        s.sshd_extra.join(", ")
    );
    let _ = writeln!(
        out,
        "- {} round(s), contenders alternating within each; bulk: {} s windows after {} s warm-up; \
         ping-pong: {} round trips per round and placement, in 10 batches taking turns between \
         the contenders (free placement, then all on one CPU); new connections: {} s, one at a time",
        s.rounds,
        num(s.bulk_secs),
        num(s.warmup_secs),
        s.round_trips,
        num(s.conn_secs)
    );
    let ciphers: Vec<String> = Contender::ALL
        .iter()
        .map(|c| {
            let cipher = r.ciphers.get(c.key()).map_or("?", String::as_str);
            format!("{} {cipher}", c.key())
        })
        .collect();
    let _ = writeln!(
        out,
        "- ciphers negotiated (sshd's log): {}\n",
        ciphers.join(", ")
    );

    if s.rounds_run {
        let _ = writeln!(
            out,
            "Medians over rounds; in brackets, the ratio to the better `ssh -N` \
             (throughput, share and conn/s: higher is better; CPU and latency: lower is \
             better). CPU per GiB is the contender's own (sshd's is the same for all).\n"
        );
        let mut header = "| |".to_owned();
        let mut rule = "|---|".to_owned();
        for c in Contender::ALL {
            let _ = write!(header, " {} |", c.label());
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for metric in all_metrics() {
            let _ = write!(out, "| {} ({}) |", metric.label, metric.unit);
            for c in Contender::ALL {
                match (r.median(c, metric), r.ratio(c, metric)) {
                    (Some(v), Some(q)) => {
                        let _ = write!(out, " {} ({:.2}×) |", num(v), q);
                    }
                    (Some(v), None) => {
                        let _ = write!(out, " {} |", num(v));
                    }
                    _ => out.push_str(" failed |"),
                }
            }
            out.push('\n');
        }
    }
    if s.fleets_run {
        let _ = writeln!(
            out,
            "\nIdle tunnels, each its own SSH connection with one dynamic forward (-D) and 10 s \
             heartbeats. PSS sums /proc/PID/smaps_rollup over the process and its children. \
             Idle CPU over {} s: utime+stime from /proc/PID/stat (whole 10 ms ticks per process, \
             so many nearly idle processes read low), and in brackets the threads' run time \
             from /proc/PID/task/*/schedstat (ns).\n",
            num(s.idle_secs)
        );
        let _ = writeln!(
            out,
            "| tool | tunnels | PSS total (MiB) | PSS per tunnel (MiB) | processes | all up after (s) | idle CPU (% of one core) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for f in &r.fleets {
            let cpu = f.idle_cpu.map_or("-".to_owned(), |c| {
                format!("{:.3} ({:.3})", c.ticks_percent, c.run_percent)
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.2} | {cpu} |",
                f.tool,
                f.tunnels,
                mib(f.pss_kib),
                num(f.pss_kib as f64 / 1024.0 / f.tunnels as f64),
                f.processes,
                f.up_secs
            );
        }
    }
    if s.nat_run && !r.nat.is_empty() {
        let _ = writeln!(
            out,
            "\nBehind NAT (network namespaces: a box behind NAT routers with conntrack, the \
             kit's sshd on a public host), heartbeats 10 s × 3 for both tools, a fresh lab \
             per fault. Seconds until a new connection through -L echoes again:\n"
        );
        let _ = writeln!(
            out,
            "| tool | uplink switch (s) | router forgets its mappings (s) | open connection across a 3 s link flap |"
        );
        let _ = writeln!(out, "|---|---:|---:|---|");
        for row in &r.nat {
            let secs = |v: &Result<f64, String>| match v {
                Ok(s) => num(*s),
                Err(e) => format!("failed: {e}"),
            };
            let flap = match &row.flap_survived {
                Ok(true) => "kept".to_owned(),
                Ok(false) => "lost".to_owned(),
                Err(e) => format!("failed: {e}"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {flap} |",
                row.tool,
                secs(&row.uplink_switch),
                secs(&row.lost_mapping)
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &r.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

/// Every raw figure: per-round values, medians and ratios, fleets, settings and machine.
pub fn json(r: &Results) -> Value {
    let (m, s) = (&r.machine, &r.settings);
    let metrics: Vec<Value> = all_metrics()
        .map(|metric| {
            let per: serde_json::Map<String, Value> = Contender::ALL
                .iter()
                .map(|&c| {
                    let v = json!({
                        "rounds": r.rounds_of(c, metric),
                        "median": r.median(c, metric),
                        "ratio_vs_best_ssh": r.ratio(c, metric),
                    });
                    (c.key().to_owned(), v)
                })
                .collect();
            json!({
                "key": metric.key,
                "label": metric.label,
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "contenders": per,
            })
        })
        .collect();
    let fleets: Vec<Value> = r
        .fleets
        .iter()
        .map(|f| {
            json!({
                "tool": f.tool,
                "tunnels": f.tunnels,
                "pss_kib": f.pss_kib,
                "processes": f.processes,
                "all_up_secs": f.up_secs,
                "idle_cpu_percent_of_one_core": f.idle_cpu.map(|c| json!({
                    "utime_stime": c.ticks_percent,
                    "schedstat": c.run_percent,
                })),
            })
        })
        .collect();
    json!({
        "command": s.command,
        "machine": {
            "nproc": m.nproc,
            "cpu_model": m.cpu_model,
            "kernel": m.kernel,
            "openssh": m.openssh,
            "tunneld": m.tunneld,
            "commit": m.commit,
        },
        "settings": {
            "quick": s.quick,
            "rounds": s.rounds,
            "bulk_window_secs": s.bulk_secs,
            "bulk_warmup_secs": s.warmup_secs,
            "ping_pong_round_trips": s.round_trips,
            "connections_secs": s.conn_secs,
            "idle_secs": s.idle_secs,
            "sshd_extra_config": s.sshd_extra,
            "rounds_run": s.rounds_run,
            "fleets_run": s.fleets_run,
            "nat_run": s.nat_run,
        },
        "ciphers": r.ciphers,
        "metrics": metrics,
        "fleets": fleets,
        "nat": r.nat.iter().map(|row| json!({
            "tool": row.tool,
            "uplink_switch_secs": row.uplink_switch.as_ref().ok(),
            "lost_mapping_secs": row.lost_mapping.as_ref().ok(),
            "link_flap_connection_kept": row.flap_survived.as_ref().ok(),
        })).collect::<Vec<_>>(),
        "notes": r.notes,
    })
}

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
