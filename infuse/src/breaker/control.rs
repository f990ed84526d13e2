//! An operator's change to a breaker, as one value: what the [`Breaker`] controls and
//! [`Admin::control`](crate::admin::Admin::control) apply.
//!
//! [`Breaker`]: crate::Breaker

use std::time::Duration;

use crate::core::{check_duration, StorageError, Target};

/// The longest a breaker can be opened for by hand with [`Breaker::open_for`] (30 days);
/// [`Breaker::force_open`] holds it open without a time limit.
///
/// [`Breaker::open_for`]: crate::Breaker::open_for
/// [`Breaker::force_open`]: crate::Breaker::force_open
pub const MAX_OPEN_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// An operator's change to a breaker, for [`Breaker::control`](crate::Breaker::control)
/// and [`Admin::control`](crate::admin::Admin::control): each variant does what the method
/// of the same name does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Open for the breaker's `reset_timeout`, as if it had tripped.
    Open,
    /// Open for this long (at most [`MAX_OPEN_FOR`]), then a trial as usual.
    OpenFor(Duration),
    /// Half-open: the next call is a trial.
    HalfOpen,
    /// Closed, counters reset; ends a forced state.
    Close,
    /// Held open until closed by hand.
    ForceOpen,
    /// Calls run and are counted but nothing trips, until closed by hand.
    Disable,
}

impl Control {
    /// The state the store is forced to; `reset_timeout` is the breaker's (for `Open`).
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidInput`] naming the limit when an `OpenFor` duration is
    /// zero or longer than [`MAX_OPEN_FOR`].
    pub(crate) fn target(self, reset_timeout: Duration) -> Result<Target, StorageError> {
        Ok(match self {
            Control::Open => Target::Open(reset_timeout),
            Control::OpenFor(duration) => {
                check_duration("open_for", duration, MAX_OPEN_FOR).map_err(|reason| {
                    StorageError::InvalidInput(format!(
                        "{reason}; to hold a breaker open until closed by hand, use force_open"
                    ))
                })?;
                Target::Open(duration)
            }
            Control::HalfOpen => Target::HalfOpen,
            Control::Close => Target::Closed,
            Control::ForceOpen => Target::ForcedOpen,
            Control::Disable => Target::Disabled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_for_is_bounded_and_names_the_way_out() {
        let reset = Duration::from_secs(60);
        assert!(matches!(Control::Open.target(reset), Ok(Target::Open(d)) if d == reset));
        let hour = Duration::from_secs(3600);
        assert!(matches!(Control::OpenFor(hour).target(reset), Ok(Target::Open(d)) if d == hour));
        for bad in [Duration::ZERO, MAX_OPEN_FOR + Duration::from_secs(1)] {
            let Err(StorageError::InvalidInput(message)) = Control::OpenFor(bad).target(reset)
            else {
                panic!("{bad:?} accepted");
            };
            assert!(message.contains("force_open"), "{message}");
        }
    }
}
