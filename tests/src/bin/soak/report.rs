//! The end of a run: the figures, the growth rules, the verdict and the printed table.
//!
//! Growth rules, comparing the daemon idle (no connection open, the base configuration,
//! after the same settling) after the warm-up and at the end:
//! - open file descriptors: end ≤ start + [`FD_MARGIN`]. Each fault closes and reopens
//!   sessions and listeners, so a descriptor leaked per fault or per connection shows
//!   as dozens.
//! - threads: end ≤ start + [`THREAD_MARGIN`] (tokio's blocking pool shrinks after 10 s
//!   idle; the end sample waits for it).
//! - PSS: end ≤ start + [`PSS_GROWTH_LIMIT_KIB`]. The allocator keeps some of what the
//!   busiest moment needed; a per-connection or per-fault leak over thousands of
//!   connections and dozens of faults exceeds it.
//! - open connections (`tunneld_forward_connections_active`): 0 at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::daemon::{Metrics, Sample};
use crate::faults::{Kind, Record};
use crate::traffic::{Ctx, Forward};

/// Allowed growth of open file descriptors, idle end against idle start.
pub const FD_MARGIN: u64 = 2;
/// Allowed growth of threads, idle end against idle start.
pub const THREAD_MARGIN: u64 = 2;
/// Allowed growth of PSS in KiB, idle end against idle start.
pub const PSS_GROWTH_LIMIT_KIB: u64 = 8 * 1024;

/// Whether the end sample satisfies the growth rules against the start sample.
pub fn growth_ok(start: &Sample, end: &Sample) -> bool {
    growth_problems(start, end).is_empty()
}

fn growth_problems(start: &Sample, end: &Sample) -> Vec<String> {
    let mut p = Vec::new();
    if end.fds > start.fds + FD_MARGIN {
        p.push(format!(
            "open fds grew from {} to {} idle (allowed +{FD_MARGIN})",
            start.fds, end.fds
        ));
    }
    if end.threads > start.threads + THREAD_MARGIN {
        p.push(format!(
            "threads grew from {} to {} idle (allowed +{THREAD_MARGIN})",
            start.threads, end.threads
        ));
    }
    if end.pss_kib > start.pss_kib + PSS_GROWTH_LIMIT_KIB {
        p.push(format!(
            "PSS grew from {} to {} idle (allowed +{})",
            mib(start.pss_kib),
            mib(end.pss_kib),
            mib(PSS_GROWTH_LIMIT_KIB)
        ));
    }
    if end.active != Some(0) {
        p.push(format!(
            "tunneld_forward_connections_active is {:?} at the end, expected 0",
            end.active
        ));
    }
    p
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

/// What tunneld's log says.
#[derive(Default)]
pub struct LogCounts {
    pub panics: usize,
    pub errors: usize,
    pub warnings: usize,
    pub sessions_lost: usize,
    /// Connections tunneld closed because their local peer "stopped reading".
    pub stalled_readers: usize,
}

impl LogCounts {
    pub fn of(text: &str) -> LogCounts {
        let mut c = LogCounts::default();
        for line in text.lines() {
            let level = line.split_whitespace().nth(1).unwrap_or_default();
            c.panics += usize::from(line.contains("panicked"));
            c.errors += usize::from(level == "ERROR");
            c.warnings += usize::from(level == "WARN");
            c.sessions_lost += usize::from(line.contains("session lost"));
            c.stalled_readers += usize::from(line.contains("stopped reading"));
        }
        c
    }
}

/// Everything the table shows.
pub struct Report<'a> {
    pub seed: u64,
    pub with_proxy: bool,
    pub planned: Duration,
    pub soaked: Duration,
    pub warmup: Duration,
    pub ctx: &'a Ctx,
    pub forwards: &'a [std::sync::Arc<Forward>],
    pub kinds: &'a [Kind],
    pub records: &'a [Record],
    pub start: Sample,
    pub end: Option<Sample>,
    /// Idle again after every session was replaced (a diagnostic, not judged).
    pub renewed: Option<Sample>,
    pub samples: &'a [Sample],
    pub metrics_end: Option<Metrics>,
    /// SIGTERM at the end: exit code and time, or what went wrong.
    pub terminated: Result<(Option<i32>, Duration), String>,
    pub log: LogCounts,
    pub log_path: String,
    /// Problems of the run itself (stopped early, workers stuck...).
    pub run_problems: Vec<String>,
}

impl Report<'_> {
    /// The reasons to fail; empty means PASS.
    pub fn reasons(&self) -> Vec<String> {
        let mut r = self.run_problems.clone();
        let failed: u64 = self.sum(|s| s.failed.load(Ordering::Relaxed));
        let not_survived = self.records.iter().filter(|f| !f.survived).count();
        if failed > 0 {
            r.push(format!(
                "{failed} connections failed outside any fault that could explain it"
            ));
        }
        if not_survived > 0 {
            r.push(format!("{not_survived} faults not survived"));
        }
        if self.records.is_empty() {
            r.push("no fault was injected (run longer)".to_owned());
        }
        for f in self.forwards {
            let s = &self.ctx.stats[f.id];
            if s.short_completed.load(Ordering::Relaxed) == 0 {
                r.push(format!("no connection completed through {}", f.label));
            }
        }
        match &self.end {
            Some(end) => r.extend(growth_problems(&self.start, end)),
            None => r.push("no idle sample at the end".to_owned()),
        }
        match &self.terminated {
            Ok((Some(0), took)) if *took <= Duration::from_secs(5) => {}
            Ok((code, took)) => r.push(format!(
                "on SIGTERM tunneld exited with {code:?} after {} (SPEC: 0 within 5 s)",
                secs(*took)
            )),
            Err(e) => r.push(e.clone()),
        }
        if self.log.panics > 0 {
            r.push(format!("tunneld's log has {} panics", self.log.panics));
        }
        r
    }

    fn sum(&self, f: impl Fn(&crate::traffic::ForwardStats) -> u64) -> u64 {
        self.forwards
            .iter()
            .map(|fw| f(&self.ctx.stats[fw.id]))
            .sum()
    }

    pub fn render(&self) -> String {
        let reasons = self.reasons();
        let mut o = String::new();
        let pass = reasons.is_empty();
        let _ = writeln!(o, "\n# tunneld soak report\n");
        let _ = writeln!(
            o,
            "seed {} (replay the same choices: tests/soak {} --seed {}{})",
            self.seed,
            secs(self.planned),
            self.seed,
            if self.with_proxy { "" } else { " --no-proxy" }
        );
        let _ = writeln!(
            o,
            "duration: {} with faults (planned {}) after {} of warm-up",
            secs(self.soaked),
            secs(self.planned),
            secs(self.warmup)
        );
        let checked = self.sum(|s| s.bytes_checked.load(Ordering::Relaxed));
        let short = self.sum(|s| s.short_completed.load(Ordering::Relaxed));
        let long = self.sum(|s| s.long_completed.load(Ordering::Relaxed));
        let cut = self.sum(|s| s.cut.load(Ordering::Relaxed));
        let failed = self.sum(|s| s.failed.load(Ordering::Relaxed));
        let _ = writeln!(
            o,
            "bytes checked end to end: {} (each sent through a forward, echoed back and \
             compared), plus {} by recovery probes",
            bytes(checked),
            bytes(self.ctx.probe_bytes.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            o,
            "connections: {} completed ({short} short, {long} long-lived), {cut} cut by faults, \
             {failed} failed",
            short + long
        );
        if let Some(m) = &self.metrics_end {
            let _ = writeln!(
                o,
                "tunneld's own counters: {} connections, {} in, {} out, {} reconnects",
                m.connections_total,
                bytes(m.bytes_in),
                bytes(m.bytes_out),
                m.reconnects
            );
        }

        let _ = writeln!(
            o,
            "\n| forward | kind | path to sshd | completed | long-lived | cut | failed | bytes \
             checked |"
        );
        let _ = writeln!(o, "|---|---|---|---:|---:|---:|---:|---:|");
        for f in self.forwards {
            let s = &self.ctx.stats[f.id];
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                f.label,
                f.kind.as_str(),
                if f.proxied { "fault proxy" } else { "direct" },
                s.short_completed.load(Ordering::Relaxed),
                s.long_completed.load(Ordering::Relaxed),
                s.cut.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
                bytes(s.bytes_checked.load(Ordering::Relaxed)),
            );
        }

        let _ = writeln!(
            o,
            "\n| fault | injected | survived | connections cut | recovery median | recovery max |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
        let mut by_kind: BTreeMap<Kind, Vec<&Record>> =
            self.kinds.iter().map(|k| (*k, Vec::new())).collect();
        for r in self.records {
            by_kind.entry(r.kind).or_default().push(r);
        }
        for (kind, recs) in &by_kind {
            let mut times: Vec<Duration> = recs.iter().filter_map(|r| r.recovery).collect();
            times.sort();
            let median = times
                .get(times.len().saturating_sub(1) / 2)
                .map_or("-".to_owned(), |d| secs(*d));
            let max = times.last().map_or("-".to_owned(), |d| secs(*d));
            let cut: u64 = recs.iter().map(|r| self.ctx.cut_by(r.window)).sum();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {cut} | {median} | {max} |",
                kind.name(),
                recs.len(),
                recs.iter().filter(|r| r.survived).count(),
            );
        }
        let _ = writeln!(
            o,
            "| all | {} | {} | {} | | |",
            self.records.len(),
            self.records.iter().filter(|r| r.survived).count(),
            self.records
                .iter()
                .map(|r| self.ctx.cut_by(r.window))
                .sum::<u64>()
        );

        let max = |f: fn(&Sample) -> u64| self.samples.iter().map(f).max().unwrap_or(0);
        let end = self.end.unwrap_or_default();
        let have_end = self.end.is_some();
        let cell = |v: String| if have_end { v } else { "-".to_owned() };
        let _ = writeln!(
            o,
            "\n| tunneld (pid) | start, idle | end, idle | max during run | rule |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---|");
        let _ = writeln!(
            o,
            "| open fds | {} | {} | {} | end ≤ start + {FD_MARGIN} |",
            self.start.fds,
            cell(end.fds.to_string()),
            max(|s| s.fds)
        );
        let _ = writeln!(
            o,
            "| threads | {} | {} | {} | end ≤ start + {THREAD_MARGIN} |",
            self.start.threads,
            cell(end.threads.to_string()),
            max(|s| s.threads)
        );
        let _ = writeln!(
            o,
            "| PSS | {} | {} | {} | end ≤ start + {} |",
            mib(self.start.pss_kib),
            cell(mib(end.pss_kib)),
            mib(max(|s| s.pss_kib)),
            mib(PSS_GROWTH_LIMIT_KIB)
        );
        if let Some(r) = &self.renewed {
            let _ = writeln!(
                o,
                "| PSS with fresh sessions | | {} | | (information: after the end sample, every \
                 session killed and reconnected) |",
                mib(r.pss_kib)
            );
        }
        let _ = writeln!(
            o,
            "| RSS | {} | {} | {} | (information) |",
            mib(self.start.rss_kib),
            cell(mib(end.rss_kib)),
            mib(max(|s| s.rss_kib))
        );
        let _ = writeln!(
            o,
            "| open connections (metrics) | {} | {} | {} | end = 0 |",
            self.start.active.map_or("?".to_owned(), |a| a.to_string()),
            cell(end.active.map_or("?".to_owned(), |a| a.to_string())),
            self.samples
                .iter()
                .filter_map(|s| s.active)
                .max()
                .unwrap_or(0)
        );
        let _ = writeln!(
            o,
            "({} samples; tunneld log {}: {} sessions lost, {} connections closed as stalled \
             readers, {} warnings, {} errors, {} panics)",
            self.samples.len(),
            self.log_path,
            self.log.sessions_lost,
            self.log.stalled_readers,
            self.log.warnings,
            self.log.errors,
            self.log.panics
        );
        match &self.terminated {
            Ok((code, took)) => {
                let _ = writeln!(o, "SIGTERM at the end: exit {code:?} after {}", secs(*took));
            }
            Err(e) => {
                let _ = writeln!(o, "SIGTERM at the end: {e}");
            }
        }

        let details = self.ctx.failure_details();
        if !details.is_empty() {
            let _ = writeln!(
                o,
                "\nfailures ({} in all, the first {} here):",
                self.ctx.failure_count(),
                details.len()
            );
            for d in &details {
                let _ = writeln!(o, "- {d}");
            }
        }
        let _ = writeln!(o, "\nverdict: {}", if pass { "PASS" } else { "FAIL" });
        for r in &reasons {
            let _ = writeln!(o, "- {r}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(fds: u64, threads: u64, pss_kib: u64, active: u64) -> Sample {
        Sample {
            at: Duration::ZERO,
            fds,
            threads,
            pss_kib,
            rss_kib: pss_kib,
            active: Some(active),
        }
    }

    #[test]
    fn growth_rules() {
        let start = sample(20, 4, 7000, 0);
        assert!(growth_ok(&start, &sample(22, 6, 7000 + 8192, 0)));
        assert!(!growth_ok(&start, &sample(23, 4, 7000, 0)));
        assert!(!growth_ok(&start, &sample(20, 7, 7000, 0)));
        assert!(!growth_ok(&start, &sample(20, 4, 7000 + 8193, 0)));
        assert!(!growth_ok(&start, &sample(20, 4, 7000, 1)));
    }

    #[test]
    fn log_counts() {
        let log = "2026-11-25T07:00:00Z  WARN tunneld: session lost\n\
                   2026-11-25T07:00:01Z ERROR tunneld: boom\n\
                   2026-11-25T07:00:01Z DEBUG x: error=local peer stopped reading for 5s\n\
                   thread 'x' panicked at src/a.rs:1:1\n\
                   2026-11-25T07:00:02Z  INFO tunneld: fine\n";
        let c = LogCounts::of(log);
        assert_eq!(
            (
                c.panics,
                c.errors,
                c.warnings,
                c.sessions_lost,
                c.stalled_readers
            ),
            (1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(3 << 20), "3.00 MiB");
        assert_eq!(secs(Duration::from_secs(185)), "3m05s");
        assert_eq!(secs(Duration::from_secs(3725)), "1h02m05s");
    }
}
