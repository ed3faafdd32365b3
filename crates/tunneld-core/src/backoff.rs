//! The reconnect schedule: exponential from `initial` to `max`, with jitter.

use std::time::Duration;

use tunneld_config::Backoff;

/// Delays between connection attempts.
#[derive(Debug, Clone)]
pub struct Schedule {
    cfg: Backoff,
    attempt: u32,
}

impl Schedule {
    /// A schedule at its first step.
    pub fn new(cfg: Backoff) -> Self {
        Schedule { cfg, attempt: 0 }
    }

    /// Back to `initial` (after a session stayed up for `stable_after`).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay, drawing the jitter from the thread's RNG.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// The next delay with `unit` (in `[0, 1)`) as the random draw. Jitter only shortens
    /// the delay, so `max` stays a true ceiling, and spreads a fleet's retries apart.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let exp = self.cfg.multiplier.powi(self.attempt.min(64) as i32);
        let base = self.cfg.initial.as_secs_f64() * exp;
        let capped = base.min(self.cfg.max.as_secs_f64());
        if capped < self.cfg.max.as_secs_f64() {
            self.attempt += 1;
        }
        self.jittered(capped, unit)
    }

    /// A delay at the ceiling (with jitter), for failures only an operator can fix.
    pub fn ceiling_delay(&mut self) -> Duration {
        self.jittered(self.cfg.max.as_secs_f64(), rand::random::<f64>())
    }

    /// `secs` shortened by up to `jitter` of itself, by the draw `unit` in `[0, 1)`.
    fn jittered(&self, secs: f64, unit: f64) -> Duration {
        Duration::from_secs_f64(secs * (1.0 - self.cfg.jitter * unit.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }

    #[test]
    fn doubles_to_the_ceiling_and_resets() {
        let mut s = Schedule::new(cfg());
        let secs: Vec<u64> = (0..9).map(|_| s.next_delay_with(0.0).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        s.reset();
        assert_eq!(s.next_delay_with(0.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_shortens_by_at_most_its_fraction() {
        let mut s = Schedule::new(cfg());
        for _ in 0..10 {
            s.next_delay_with(0.0);
        }
        let d = s.next_delay_with(0.999_999);
        assert!(
            d >= Duration::from_secs(48) && d < Duration::from_secs(60),
            "{d:?}"
        );
    }
}
