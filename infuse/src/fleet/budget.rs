//! The fleet's retry budget: a process reports its first attempts and takes retry tokens
//! in batches from Redis (`scripts/retry_budget.lua`), so that `retry_budget` and
//! `retry_min_per_sec` hold for the whole fleet, not per process. While Redis cannot
//! answer, each process keeps a budget of its own (the same rule over its own calls).

use super::Fleet;
use crate::core::Settings;
use crate::local::{Cell, Token};

impl Fleet {
    /// Whether a retry of `cell`'s breaker may be made now: a token this process holds,
    /// else one batch asked of the fleet's budget (at most every `ASK_GAP`).
    pub(crate) async fn take_retry(&self, cell: &Cell, settings: &Settings) -> bool {
        let budget = &cell.retries;
        match budget.token() {
            Token::Taken => true,
            Token::Spent => false,
            Token::OwnBudget => budget.take(settings),
            Token::Ask {
                wanted,
                first_attempts,
            } => {
                if !self.health.is_healthy() {
                    budget.not_answered(first_attempts);
                    return budget.take(settings);
                }
                let asked = self
                    .store
                    .retry_tokens(cell.service, settings, first_attempts, wanted)
                    .await;
                match asked {
                    Ok(granted) => budget.granted(granted),
                    Err(error) => {
                        tracing::debug!(service = cell.service, %error, "the fleet's retry budget could not be asked: this process's own budget decides");
                        budget.not_answered(first_attempts);
                        budget.take(settings)
                    }
                }
            }
        }
    }
}
