//! The states of a circuit breaker, and the one table of their wire codes.

use std::fmt;

/// Where a breaker stands: pybreaker's three states, plus two that only an operator sets.
///
/// ```
/// assert_eq!(infuse::State::HalfOpen.to_string(), "half-open");
/// assert_eq!("forced-open".parse::<infuse::State>(), Ok(infuse::State::ForcedOpen));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls run; failures are counted.
    Closed,
    /// Calls are rejected without running until the open time has passed.
    Open,
    /// The open time has passed: one trial call at a time decides whether to close or
    /// re-open.
    HalfOpen,
    /// Held open by an operator ([`Breaker::force_open`](crate::Breaker::force_open)):
    /// every call is rejected, no trial is made, until [`close`](crate::Breaker::close).
    ForcedOpen,
    /// Switched off by an operator ([`Breaker::disable`](crate::Breaker::disable)):
    /// every call runs and is counted, but nothing trips, until
    /// [`close`](crate::Breaker::close).
    Disabled,
}

impl State {
    /// Every state, in code order.
    pub const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];

    /// The name infuse prints and parses: `closed`, `open`, `half-open`, `forced-open`,
    /// `disabled` (the first three are pybreaker's).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
        }
    }

    /// The state's code in stored records, script replies and events. This is the one
    /// table of codes: `scripts/prelude.lua` declares the same numbers, and a test reads
    /// the prelude to keep the two equal.
    #[doc(hidden)]
    pub const fn code(self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }

    /// The state of a code, if it is one.
    #[doc(hidden)]
    pub const fn from_code(code: u8) -> Option<State> {
        match code {
            0 => Some(State::Closed),
            1 => Some(State::Open),
            2 => Some(State::HalfOpen),
            3 => Some(State::ForcedOpen),
            4 => Some(State::Disabled),
            _ => None,
        }
    }

    /// The name the Lua prelude gives the state's code (`CLOSED`, `HALF_OPEN`, …).
    #[doc(hidden)]
    pub const fn lua_name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Open => "OPEN",
            State::HalfOpen => "HALF_OPEN",
            State::ForcedOpen => "FORCED_OPEN",
            State::Disabled => "DISABLED",
        }
    }

    /// Whether calls run in this state (without competing for a trial).
    pub const fn lets_calls_through(self) -> bool {
        matches!(self, State::Closed | State::Disabled)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`State`] from a string other than its names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`, valid states: closed, open, half-open, forced-open, disabled")]
pub struct ParseStateError(pub String);

impl std::str::FromStr for State {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ParseStateError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn codes_and_names_round_trip() {
        for (i, state) in State::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(state.code()), i);
            assert_eq!(State::from_code(state.code()), Some(state));
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert_eq!(State::from_code(5), None);
        assert!("opened".parse::<State>().is_err());
    }
}
