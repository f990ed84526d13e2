//! Why a breaker changed state, as the process telling it knows.

use std::fmt;

use crate::core::State;

/// Why a breaker changed state: the `reason` of a [`Transition`](crate::Transition), of
/// the `tracing` event every transition logs, and of the metrics.
///
/// A process knows the exact reason of the changes it makes itself (its call tripped
/// the breaker, its trial closed it, an operator call in this process). A change learned
/// from the shared store — made by another process of the fleet — is
/// [`Observed`](TransitionReason::Observed), except the few whose states tell the reason
/// on their own (a trial's verdict, an operator's forced state).
///
/// ```
/// assert_eq!(infuse::TransitionReason::TrialFailed.as_str(), "trial_failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// `fail_max` consecutive failures opened it.
    ConsecutiveFailures,
    /// A trip rule over the window opened it: the failure or slow-call rate reached its
    /// limit, or the consecutive failures reported with the window's counts reached
    /// `fail_max` (one batch can carry both).
    Tripped,
    /// The trial call succeeded (`success_threshold` times): closed.
    TrialSucceeded,
    /// The trial call failed: re-opened.
    TrialFailed,
    /// The open time ended: the next call is a trial.
    OpenElapsed,
    /// An operator's call: `open`, `open_for`, `half_open`, `close`, `force_open`,
    /// `disable`.
    Manual,
    /// Learned from the store: another process made the change (or the record was
    /// taken in at boot or after an outage), for a reason this process did not see.
    Observed,
    /// The store had lost the record (flushed, restarted empty, evicted, expired): it was
    /// recreated from a process's view.
    Reseeded,
    /// The store's record was older than what a process had read from it before (Redis
    /// restarted from an old snapshot, or failed over to a replica that missed writes):
    /// it was replaced by that process's view.
    ReplacedAfterFailover,
}

impl TransitionReason {
    /// The stable name logged and exported: `consecutive_failures`, `tripped`,
    /// `trial_succeeded`, `trial_failed`, `open_elapsed`, `manual`, `observed`, `reseeded`,
    /// `replaced_after_failover`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransitionReason::ConsecutiveFailures => "consecutive_failures",
            TransitionReason::Tripped => "tripped",
            TransitionReason::TrialSucceeded => "trial_succeeded",
            TransitionReason::TrialFailed => "trial_failed",
            TransitionReason::OpenElapsed => "open_elapsed",
            TransitionReason::Manual => "manual",
            TransitionReason::Observed => "observed",
            TransitionReason::Reseeded => "reseeded",
            TransitionReason::ReplacedAfterFailover => "replaced_after_failover",
        }
    }

    /// The reason of a change `from` → `to`, given what the caller did (`hint`): the hint
    /// holds only when it can explain the change (a trip rule explains closed → open,
    /// a trial's verdict a change out of half-open), so that a reply carrying a change
    /// made elsewhere meanwhile is not credited to this call.
    pub(crate) fn resolve(hint: Option<TransitionReason>, from: State, to: State) -> Self {
        use State::*;
        use TransitionReason::*;
        let fits = |reason: TransitionReason| match reason {
            ConsecutiveFailures | Tripped => from == Closed && to == Open,
            TrialSucceeded => from == HalfOpen && to == Closed,
            TrialFailed => from == HalfOpen && to == Open,
            OpenElapsed => from == Open && to == HalfOpen,
            Manual | Observed | Reseeded | ReplacedAfterFailover => true,
        };
        match hint {
            Some(reason) if fits(reason) => reason,
            _ => match (from, to) {
                (_, ForcedOpen | Disabled) | (ForcedOpen | Disabled, _) => Manual,
                (Open, HalfOpen) => OpenElapsed,
                _ => Observed,
            },
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;
    use TransitionReason::*;

    #[test]
    fn a_hint_holds_only_where_it_explains_the_change() {
        assert_eq!(
            TransitionReason::resolve(Some(ConsecutiveFailures), Closed, Open),
            ConsecutiveFailures
        );
        assert_eq!(
            TransitionReason::resolve(Some(ConsecutiveFailures), HalfOpen, Open),
            Observed
        );
        assert_eq!(
            TransitionReason::resolve(Some(TrialFailed), HalfOpen, Open),
            TrialFailed
        );
        assert_eq!(
            TransitionReason::resolve(Some(TrialSucceeded), Open, Closed),
            Observed
        );
        assert_eq!(
            TransitionReason::resolve(Some(Manual), Open, Closed),
            Manual
        );
    }

    #[test]
    fn without_a_hint_only_states_that_tell_their_reason_have_one() {
        assert_eq!(TransitionReason::resolve(None, Closed, ForcedOpen), Manual);
        assert_eq!(TransitionReason::resolve(None, Disabled, Closed), Manual);
        assert_eq!(TransitionReason::resolve(None, Open, HalfOpen), OpenElapsed);
        assert_eq!(TransitionReason::resolve(None, Closed, Open), Observed);
        assert_eq!(TransitionReason::resolve(None, HalfOpen, Closed), Observed);
    }
}
