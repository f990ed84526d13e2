use std::fmt::Debug;
use std::sync::Arc;

use infuse::{Config, Listener, State};

struct Log;

impl Listener for Log {
    fn on_state_change(&self, service: &str, from: State, to: State) {
        println!("{service}: {from} -> {to}");
    }
    fn on_failure(&self, service: &str, error: &dyn Debug) {
        println!("{service} failed: {error:?}");
    }
}

#[tokio::main]
async fn main() -> Result<(), infuse::InitError> {
    // For every breaker ...
    infuse::init(Config::in_memory().listener(Arc::new(Log))).await?;
    // ... or for one.
    infuse::breaker("users").add_listener(Arc::new(Log));
    Ok(())
}
