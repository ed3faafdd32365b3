//! The figures measured for every contender in every round: key, labels, unit and
//! which way is better; [`all_metrics`] gives the table order.

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
pub(super) const LATENCIES: [&Metric; 4] = [
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
