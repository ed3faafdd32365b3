//! Failover over a tunnel's host list.

/// Which of a tunnel's hosts to try: the same one until `after` attempts in a row have
/// failed on it, then the next, round the list. A host that served a session is kept.
#[derive(Debug)]
pub(super) struct HostRotation {
    len: usize,
    after: u32,
    current: usize,
    failures: u32,
}

impl HostRotation {
    pub(super) fn new(len: usize, after: u32) -> Self {
        HostRotation {
            len: len.max(1),
            after: after.max(1),
            current: 0,
            failures: 0,
        }
    }

    pub(super) fn current(&self) -> usize {
        self.current
    }

    /// A session was established on the current host.
    pub(super) fn connected(&mut self) {
        self.failures = 0;
    }

    /// An attempt on the current host failed; true if this moved to another host.
    pub(super) fn failed(&mut self) -> bool {
        self.failures += 1;
        if self.failures < self.after || self.len == 1 {
            return false;
        }
        self.failures = 0;
        self.current = (self.current + 1) % self.len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::HostRotation;

    #[test]
    fn hosts_rotate_after_the_failures_in_a_row_and_stay_once_connected() {
        let mut h = HostRotation::new(3, 2);
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(h.current());
            h.failed();
        }
        assert_eq!(seen, [0, 0, 1, 1, 2, 2, 0]);
        // A session on host 0 resets its count: one more failure does not move on.
        h.connected();
        assert!(!h.failed());
        assert_eq!(h.current(), 0);
        assert!(h.failed());
        assert_eq!(h.current(), 1);
    }

    #[test]
    fn a_single_host_never_moves() {
        let mut h = HostRotation::new(1, 1);
        for _ in 0..5 {
            assert!(!h.failed());
            assert_eq!(h.current(), 0);
        }
    }
}
