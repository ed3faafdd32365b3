//! Everything one run measured: machine facts, settings, per-round samples, fleets and
//! the NAT rows; the medians and the ratios to the better `ssh` the renderings show.

use std::collections::BTreeMap;

use super::Metric;
use crate::contenders::Contender;
use crate::measure::median;

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

    pub(super) fn rounds_of(&self, c: Contender, m: &Metric) -> &[f64] {
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
