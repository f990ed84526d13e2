//! What each process keeps of every breaker: the view the fast path reads, the
//! listeners, and the cell that holds them for the call path and the fleet layer.

mod cell;
mod listeners;
mod permits;
mod reports;
mod retries;
mod tally;
mod view;

pub(crate) use cell::{sleep_until, Cell, CAP, CLOCK, COUNT, TIME};
pub use listeners::{CallOutcome, Listener, Transition};
pub(crate) use reports::Joined;
pub(crate) use retries::Token;
pub(crate) use tally::{Due, FLUSH_INTERVAL, MIN_FLUSH_GAP};
pub(crate) use view::Admit;
