//! The three states of a circuit breaker.

use std::fmt;

/// Where a breaker stands, with pybreaker's names.
///
/// ```
/// assert_eq!(infuse::State::HalfOpen.to_string(), "half-open");
/// assert_eq!("open".parse::<infuse::State>(), Ok(infuse::State::Open));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls run; consecutive failures are counted.
    Closed,
    /// Calls are rejected without running until `reset_timeout` has passed.
    Open,
    /// The timeout has passed: one trial call at a time decides whether to close or re-open.
    HalfOpen,
}

impl State {
    /// The name pybreaker uses (and infuse stores): `closed`, `open` or `half-open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }

    pub(crate) const fn to_bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    pub(crate) const fn from_bits(bits: u64) -> State {
        match bits {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`State`] from a string other than its three names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`, valid states: closed, open, half-open")]
pub struct ParseStateError(pub String);

impl std::str::FromStr for State {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "closed" => Ok(State::Closed),
            "open" => Ok(State::Open),
            "half-open" => Ok(State::HalfOpen),
            other => Err(ParseStateError(other.to_owned())),
        }
    }
}
