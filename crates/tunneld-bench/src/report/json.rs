//! `results.json`: every raw figure, with the settings and the machine it was taken on.

use serde_json::{Value, json};

use super::all_metrics;
use super::results::Results;
use crate::contenders::Contender;

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
