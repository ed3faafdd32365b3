//! The Markdown report printed on stdout: command and machine facts, the contenders'
//! table, then memory and idle CPU, the NAT rows and the notes.

use std::fmt::Write as _;

use super::all_metrics;
use super::num;
use super::results::Results;
use crate::contenders::Contender;

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
        "- {} round(s), contenders taking turns at each figure; bulk: {} s windows after {} s warm-up; \
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
