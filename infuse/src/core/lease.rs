//! The fleet's concurrency cap as leases: the rule by which `max_concurrent` permits are
//! shared by the processes of a fleet (`scripts/lease_permits.lua` mirrors
//! [`LeaseTable::request`] line by line; a property test compares them).
//!
//! Each process holds a lease: a number of permits, until a time on Redis's clock. A
//! request says how many permits the process wants to hold (`want`) and how many it must
//! keep (`keep`: its calls running now); the answer is how many it may use from now on
//! (its target) and how many its lease holds: the target, or what it must keep if that
//! is more (calls that run are not taken back; the process admits no new call beyond its
//! target, so its next renewal gives the rest back). Leases that ended count no more, so
//! a crashed process's permits come back. The permits held by live leases never add up
//! to more than the cap. When some process holds fewer than it wants, no target passes a
//! fair share (the cap over the processes) — unless the others want so little that more
//! is left: then what they leave — so busy processes converge to equal shares, and a busy
//! process beside idle ones keeps all the idle ones do not want.

/// The latest end of a lease (ms): 2^53 - 1, exact in Redis's Lua numbers.
pub const MAX_UNTIL_MS: u64 = (1 << 53) - 1;

/// One process's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The process.
    pub process: u64,
    /// Permits held.
    pub held: u32,
    /// Permits it wanted at its last request.
    pub wanted: u32,
    /// When the lease ends (ms on the store's clock).
    pub until_ms: u64,
}

/// The answer to a request: how many permits the process may use, and how many its
/// lease holds (at least its target; more while calls it must keep run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Permits the process may use for new calls.
    pub target: u32,
    /// Permits its lease holds.
    pub held: u32,
}

/// The leases of one breaker's permits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTable {
    leases: Vec<Lease>,
}

impl LeaseTable {
    /// Process `process` asks, at `now_ms`, to hold `want` permits (keeping at least
    /// `keep`, when the cap allows) of `cap`, for `lease_ms`: answers how many it may use
    /// and how many its lease holds. A `want` of 0 (with nothing to keep) gives its lease
    /// back.
    pub fn request(
        &mut self,
        now_ms: u64,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease_ms: u64,
    ) -> Grant {
        self.leases.retain(|lease| lease.until_ms > now_ms);
        let others = self.leases.iter().filter(|lease| lease.process != process);
        let (mut others_held, mut others_wanted, mut live) = (0u32, 0u32, 0u32);
        for lease in others {
            others_held = others_held.saturating_add(lease.held);
            others_wanted = others_wanted.saturating_add(lease.wanted);
            live += 1;
        }
        let available = cap.saturating_sub(others_held);
        let mut target = want.min(available);
        if others_wanted > others_held {
            // Room for every other process's want, or a fair share if that is more: a
            // process short of one permit takes one from a busy one, not all but a fair
            // share of them.
            let fair = (cap / (live + 1)).max(1);
            let room = cap.saturating_sub(others_wanted);
            target = target.min(fair.max(room));
        }
        let held = target.max(keep.min(available));
        self.leases.retain(|lease| lease.process != process);
        if want > 0 || held > 0 {
            self.leases.push(Lease {
                process,
                held,
                wanted: want,
                until_ms: now_ms.saturating_add(lease_ms).min(MAX_UNTIL_MS),
            });
        }
        Grant { target, held }
    }

    /// The permits held by leases alive at `now_ms`.
    pub fn held(&self, now_ms: u64) -> u32 {
        self.leases
            .iter()
            .filter(|lease| lease.until_ms > now_ms)
            .fold(0u32, |sum, lease| sum.saturating_add(lease.held))
    }

    /// The leases, in request order.
    pub fn leases(&self) -> &[Lease] {
        &self.leases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(target: u32, held: u32) -> Grant {
        Grant { target, held }
    }

    #[test]
    fn busy_processes_converge_to_fair_shares_without_passing_the_cap() {
        let mut t = LeaseTable::default();
        assert_eq!(
            t.request(0, 1, 0, 20, 20, 2_000),
            grant(20, 20),
            "alone: all of it"
        );
        assert_eq!(t.request(10, 2, 0, 20, 20, 2_000), grant(0, 0), "none left");
        // 2 is short: 1 may use its fair share, but its lease keeps the 20 that run.
        assert_eq!(t.request(1_000, 1, 20, 20, 20, 2_000), grant(10, 20));
        assert_eq!(t.request(1_010, 2, 0, 20, 20, 2_000), grant(0, 0));
        // Its calls drained to its target: the rest is given back, and 2 gets it.
        assert_eq!(t.request(1_500, 1, 10, 20, 20, 2_000), grant(10, 10));
        assert_eq!(t.request(1_510, 2, 0, 20, 20, 2_000), grant(10, 10));
        assert!(t.held(1_510) <= 20);
    }

    #[test]
    fn a_process_short_of_one_permit_takes_one_not_a_fair_share() {
        let mut t = LeaseTable::default();
        assert_eq!(t.request(0, 1, 0, 20, 20, 2_000), grant(20, 20), "busy");
        // 2, 3 and 4 want 2 each and get none: 1 keeps what they leave (14), more than a
        // fair share (5), and gives the rest back as its calls end.
        for process in 2..=4 {
            assert_eq!(t.request(10, process, 0, 2, 20, 2_000), grant(0, 0));
        }
        assert_eq!(t.request(1_000, 1, 20, 20, 20, 2_000), grant(14, 20));
        assert_eq!(t.request(1_500, 1, 14, 20, 20, 2_000), grant(14, 14));
        for process in 2..=4 {
            assert_eq!(t.request(1_510, process, 0, 2, 20, 2_000), grant(2, 2));
        }
        assert_eq!(t.held(1_510), 20);
    }

    #[test]
    fn an_ended_lease_gives_its_permits_back() {
        let mut t = LeaseTable::default();
        assert_eq!(t.request(0, 1, 0, 8, 8, 2_000).held, 8);
        assert_eq!(t.request(1_999, 2, 0, 8, 8, 2_000).held, 0);
        assert_eq!(
            t.request(2_000, 2, 0, 8, 8, 2_000),
            grant(8, 8),
            "1 crashed: its lease ended"
        );
        assert_eq!(
            t.request(2_001, 2, 8, 0, 8, 2_000),
            grant(0, 8),
            "keeps what runs"
        );
        assert_eq!(
            t.request(2_002, 2, 0, 0, 8, 2_000),
            grant(0, 0),
            "gives all back"
        );
        assert!(t.leases().is_empty());
    }

    #[test]
    fn extreme_values_saturate() {
        let mut t = LeaseTable::default();
        let now = MAX_UNTIL_MS - 10;
        let all = t.request(now, 1, u32::MAX, u32::MAX, u32::MAX, u64::MAX);
        assert_eq!(all, grant(u32::MAX, u32::MAX));
        assert_eq!(t.request(now, 2, 0, 5, u32::MAX, 1), grant(0, 0));
        assert_eq!(t.held(now), u32::MAX);
    }
}
