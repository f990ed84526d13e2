//! A listener of a breaker fleet, as its own OS process, for `benches/propagation.rs`.
//!
//! ```text
//! infuse-propagation-worker <redis_url> <namespace> <service> <id>
//! ```
//!
//! Opens its own [`Registry`] on Redis (`Config::redis(url)`, the given namespace, the
//! service with `fail_max = 1` and a 600 s `reset_timeout`, like the bench's tripping
//! registry, and a 500 ms Redis deadline so that a loaded machine does not push it to
//! its local fallback), makes one successful call to load the shared state, then waits
//! on a current-thread tokio runtime, learning of changes through pub/sub. On stdout,
//! line by line:
//!
//! - `READY <id>` once the registry is up and the state loaded;
//! - `STATE <id> <to> <monotonic_ns>` for every `on_state_change(_, _, to)` of its
//!   breaker, `<monotonic_ns>` being `CLOCK_MONOTONIC` (system-wide on Linux) read first
//!   thing in the listener, before anything is formatted or written.
//!
//! Exits when its standard input closes; 2 on wrong arguments, 1 if the registry cannot
//! be created.

use std::sync::Arc;
use std::time::Duration;

use infuse::{BreakerError, Config, Listener, Registry, ServiceOverride, State};
use infuse_bench::monotonic_ns;
use tokio::io::AsyncReadExt;

struct Stamp {
    id: String,
}

impl Listener for Stamp {
    fn on_state_change(&self, _service: &str, _from: State, to: State) {
        let now = monotonic_ns();
        println!("STATE {} {to} {now}", self.id);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [redis_url, namespace, service, id] = args.as_slice() else {
        eprintln!("usage: infuse-propagation-worker <redis_url> <namespace> <service> <id>");
        std::process::exit(2);
    };
    let config = Config::redis(redis_url.as_str())
        .namespace(namespace.as_str())
        .env_overrides(false)
        .redis_call_timeout(Duration::from_millis(500))
        .service(
            service.as_str(),
            ServiceOverride::new()
                .fail_max(1)
                .reset_timeout(Duration::from_secs(600)),
        )
        .listener(Arc::new(Stamp { id: id.clone() }));
    let registry = match Registry::new(config).await {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("infuse-propagation-worker {id}: {e}");
            std::process::exit(1);
        }
    };
    let breaker = registry.breaker(service);
    let loaded: Result<(), BreakerError> = breaker.call(async { Ok(()) }).await;
    if let Err(e) = loaded {
        eprintln!("infuse-propagation-worker {id}: the first call was rejected: {e}");
    }
    println!("READY {id}");
    // Serve pub/sub until the bench closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(breaker);
    drop(registry);
}
