//! The retry budget's arithmetic: how many retries the first attempts of a breaker's
//! calls allow. The in-memory store keeps it per process; with Redis the fleet's budget
//! follows the same rule.
//!
//! A retry is allowed while the retries of the last [`BUDGET_SECONDS`] seconds are fewer
//! than `ratio` percent of the first attempts of those seconds, or while this second's
//! retries are fewer than `min_per_sec` (whichever allows more). So over a stretch of `T`
//! seconds, retries stay below `ratio`% of the first attempts plus `min_per_sec × T`
//! (plus the ratio's share of the first attempts made in the ten seconds before the
//! stretch), and a quiet service still gets `min_per_sec` a second.

/// The seconds the ratio is measured over (as Linkerd's retry budget's `ttl`).
pub const BUDGET_SECONDS: u64 = 10;

/// The largest count the budget holds (2^53 - 1, exact in Redis's Lua numbers): counts
/// and sums saturate at it, in both stores.
pub const MAX_COUNT: u64 = (1 << 53) - 1;

const SLOTS: usize = BUDGET_SECONDS as usize;

/// First attempts and retries by second, over the last [`BUDGET_SECONDS`] seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetWindow {
    /// Per slot (`second % SLOTS`): the second it holds, first attempts, retries.
    slots: [(u64, u64, u64); SLOTS],
}

impl BudgetWindow {
    /// The slot of `second`, emptied if it held an older second.
    fn slot(&mut self, second: u64) -> &mut (u64, u64, u64) {
        let slot = &mut self.slots[(second % BUDGET_SECONDS) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot
    }

    /// Counts `n` first attempts made in `second`.
    pub fn first_attempts(&mut self, second: u64, n: u64) {
        let slot = self.slot(second);
        slot.1 = slot.1.saturating_add(n).min(MAX_COUNT);
    }

    /// First attempts and retries over the seconds up to `second`.
    pub fn totals(&self, second: u64) -> (u64, u64) {
        let oldest = second.saturating_sub(BUDGET_SECONDS - 1);
        self.slots
            .iter()
            .filter(|(at, ..)| (oldest..=second).contains(at))
            .fold((0, 0), |(firsts, retries), &(_, f, r)| {
                (
                    firsts.saturating_add(f).min(MAX_COUNT),
                    retries.saturating_add(r).min(MAX_COUNT),
                )
            })
    }

    /// Takes up to `wanted` retries in `second`, as the budget allows: answers how many
    /// were granted (and counts them).
    pub fn take(&mut self, second: u64, wanted: u64, ratio: u32, min_per_sec: u32) -> u64 {
        let (firsts, retries) = self.totals(second);
        let share = u128::from(firsts) * u128::from(ratio) / 100;
        let by_ratio = u64::try_from(share)
            .unwrap_or(u64::MAX)
            .saturating_sub(retries);
        let this_second = self.slot(second).2;
        let by_floor = u64::from(min_per_sec).saturating_sub(this_second);
        let granted = wanted.min(by_ratio.max(by_floor));
        let slot = self.slot(second);
        slot.2 = slot.2.saturating_add(granted).min(MAX_COUNT);
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_allows_a_share_of_the_first_attempts() {
        let mut w = BudgetWindow::default();
        w.first_attempts(100, 1_000);
        // 20 % of 1,000: 200 retries, whatever the floor.
        assert_eq!(w.take(100, 500, 20, 0), 200);
        assert_eq!(w.take(100, 1, 20, 0), 0, "spent");
        // Ten seconds on, the first attempts have left the window.
        w.first_attempts(110, 10);
        assert_eq!(w.take(110, 500, 20, 0), 2);
    }

    #[test]
    fn the_floor_allows_a_few_retries_per_second_without_first_attempts() {
        let mut w = BudgetWindow::default();
        assert_eq!(w.take(7, 100, 20, 5), 5);
        assert_eq!(w.take(7, 100, 20, 5), 0, "five this second");
        assert_eq!(w.take(8, 3, 20, 5), 3, "a new second");
        assert_eq!(w.take(8, 3, 20, 5), 2);
    }

    #[test]
    fn over_a_stretch_retries_stay_under_ratio_plus_floor() {
        // A failing service: 50 first attempts a second, each wanting 3 retries.
        let mut w = BudgetWindow::default();
        let (mut firsts, mut retries) = (0, 0);
        for second in 1_000..1_060 {
            w.first_attempts(second, 50);
            firsts += 50;
            for _ in 0..50 {
                retries += w.take(second, 3, 20, 5);
            }
        }
        let bound = firsts * 20 / 100 + 5 * 60;
        assert!(retries <= bound, "{retries} retries, bound {bound}");
        assert!(retries >= firsts * 20 / 100, "the ratio is used: {retries}");
    }

    #[test]
    fn extreme_values_saturate() {
        let mut w = BudgetWindow::default();
        w.first_attempts(u64::MAX, u64::MAX);
        w.first_attempts(u64::MAX, 1);
        assert_eq!(w.take(u64::MAX, u64::MAX, 100, u32::MAX), MAX_COUNT);
        assert_eq!(w.totals(u64::MAX), (MAX_COUNT, MAX_COUNT));
        assert_eq!(w.totals(0), (0, 0));
    }
}
