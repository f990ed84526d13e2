//! `Config::max_breakers`: a registry holds at most that many breakers. Past it,
//! `try_breaker` says so (not "invalid name"), `breaker()` panics naming the limit, the
//! setting and `try_breaker`, and the per-host reqwest middleware and the tower `per_key`
//! layer send requests for new names unguarded, logging that once. Declared services
//! always get their breaker. In a test binary of its own: the process-wide registry is
//! initialised here with a limit, and the warnings are counted by the process's global
//! subscriber (see `log_once.rs` for why not a thread-local one).

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use infuse::reqwest::CircuitBreakerMiddleware;
use infuse::tower::{CircuitBreakerLayer, Error};
use infuse::{BreakerError, Config, InitError, Registry, RegistryError};
use infuse_tests::support::http::Downstream;
use tower::{Layer, Service, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;

// Two declared services: every registry of this binary has their breakers, whatever
// its limit (they count towards it).
#[allow(dead_code)]
#[infuse::circuit_breaker(service = "mb-declared-a", fail_max = 2)]
async fn declared_a() -> Result<(), BreakerError> {
    Ok(())
}

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "mb-declared-b", fail_max = 2)]
async fn declared_b() -> Result<(), BreakerError> {
    Ok(())
}

const DECLARED: usize = 2;

/// The warnings infuse logged, by message.
fn warnings() -> &'static Mutex<Vec<String>> {
    static WARNINGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    WARNINGS.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Record))
            .expect("the only subscriber of this test binary");
        Mutex::default()
    })
}

/// How many warnings so far contain `text`.
fn warned(text: &str) -> usize {
    warnings()
        .lock()
        .unwrap()
        .iter()
        .filter(|message| message.contains(text))
        .count()
}

struct Record;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Record {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::WARN
            || !event.metadata().target().starts_with("infuse")
        {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, "{}={value:?} ", field.name());
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        warnings().lock().unwrap().push(message.0);
    }
}

fn config(max: usize) -> Config {
    Config::in_memory().env_overrides(false).max_breakers(max)
}

#[tokio::test]
async fn try_breaker_refuses_one_too_many_naming_the_limit_and_the_setting() {
    let registry = Registry::new(config(DECLARED + 2)).await.unwrap();
    let users = registry.try_breaker("users").unwrap();
    registry.try_breaker("orders").unwrap();
    let error = registry.try_breaker("payments").err().unwrap();
    assert_eq!(
        error,
        RegistryError::TooManyBreakers {
            service: "payments".to_owned(),
            limit: DECLARED + 2
        }
    );
    let text = error.to_string();
    assert!(
        text.contains("payments")
            && text.contains("4 breakers")
            && text.contains("Config::max_breakers"),
        "{text}"
    );
    assert!(
        !text.contains("invalid"),
        "one too many is not invalid: {text}"
    );
    // What exists is still there, declared services too; an invalid name is still
    // invalid, full or not.
    assert_eq!(
        registry.try_breaker("users").unwrap().service(),
        users.service()
    );
    assert!(registry.try_breaker("mb-declared-a").is_ok());
    assert!(matches!(
        registry.try_breaker("a{b}"),
        Err(RegistryError::InvalidName(_))
    ));
    assert_eq!(registry.breakers().len(), DECLARED + 2);

    // breaker() panics with the same words, pointing to try_breaker().
    let panic = std::panic::catch_unwind(AssertUnwindSafe(|| registry.breaker("payments")))
        .expect_err("breaker() past the limit panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("Config::max_breakers")
            && message.contains("4 breakers")
            && message.contains("try_breaker()"),
        "{message}"
    );
    assert_eq!(registry.breakers().len(), DECLARED + 2);
}

#[tokio::test]
async fn max_breakers_zero_or_below_the_declared_services_is_an_init_error() {
    let Err(InitError::InvalidSetting { origin, reason }) = Registry::new(config(0)).await else {
        panic!("max_breakers(0) accepted");
    };
    assert_eq!(origin, "Config::max_breakers");
    assert!(reason.contains("at least 1"), "{reason}");

    let Err(InitError::InvalidSetting { origin, reason }) = Registry::new(config(1)).await else {
        panic!("max_breakers(1) accepted with two declared services");
    };
    assert_eq!(origin, "Config::max_breakers");
    assert!(reason.contains("below the 2 services"), "{reason}");

    // Exactly the declared ones: fine, and nothing more.
    let registry = Registry::new(config(DECLARED)).await.unwrap();
    assert!(matches!(
        registry.try_breaker("users"),
        Err(RegistryError::TooManyBreakers { limit: 2, .. })
    ));
}

/// The tower `per_key` layer: a name without a breaker once the registry is full goes
/// through unguarded (the inner service sees it), logged once per layer; the names
/// that have a breaker stay guarded.
#[tokio::test]
async fn per_key_sends_new_names_unguarded_once_the_registry_is_full() {
    let _ = warnings();
    let registry = Registry::new(config(DECLARED + 2)).await.unwrap();
    let inner_calls = Arc::new(AtomicU64::new(0));
    let counted = inner_calls.clone();
    let inner = tower::service_fn(move |request: String| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(request) }
    });
    let layer = CircuitBreakerLayer::per_key_in(registry.clone(), |request: &String| {
        Some(request.as_str())
    })
    .classify(|_: &String| false);
    let mut service = layer.layer(inner);
    let mut send = async |name: &str| service.ready().await.unwrap().call(name.to_owned()).await;

    assert_eq!(send("pk-a").await.unwrap(), "pk-a");
    assert_eq!(send("pk-b").await.unwrap(), "pk-b");
    let before = warned("requests for names without a breaker");
    for _ in 0..3 {
        assert_eq!(send("pk-c").await.unwrap(), "pk-c");
        assert_eq!(send("pk-d").await.unwrap(), "pk-d");
    }
    assert_eq!(
        inner_calls.load(Ordering::SeqCst),
        8,
        "every request was sent"
    );
    assert_eq!(
        warned("requests for names without a breaker") - before,
        1,
        "logged once: {:?}",
        warnings().lock().unwrap()
    );
    assert!(
        warned("limit=4") >= 1,
        "the warning names the limit: {:?}",
        warnings().lock().unwrap()
    );
    // No breaker was made for them; the guarded names still are guarded.
    assert!(registry.try_breaker("pk-c").is_err());
    registry.breaker("pk-a").force_open().await.unwrap();
    let rejected = send("pk-a").await.unwrap_err();
    assert!(
        matches!(rejected, Error::Breaker(BreakerError::ForcedOpen { .. })),
        "{rejected:?}"
    );
    assert_eq!(inner_calls.load(Ordering::SeqCst), 8);
    // An invalid name still fails the request, unsent.
    assert!(matches!(
        send("bad{name}").await,
        Err(Error::InvalidName(_))
    ));
}

/// The per-host reqwest middleware (the process-wide registry, initialised here with a
/// limit): a new host once the registry is full is sent to unguarded, logged once per
/// middleware; hosts with a breaker stay guarded. The process-wide `try_breaker` and
/// `breaker` follow the same limit.
#[tokio::test]
async fn per_host_sends_new_hosts_unguarded_once_the_registry_is_full() {
    let _ = warnings();
    infuse::init(config(DECLARED + 2)).await.unwrap();
    let servers = [
        Downstream::start().await,
        Downstream::start().await,
        Downstream::start().await,
        Downstream::start().await,
    ];
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(CircuitBreakerMiddleware::per_host())
        .build();
    let get = async |server: &Downstream| {
        client
            .get(format!("http://{}/ok", server.addr()))
            .send()
            .await
            .map(|response| response.status().as_u16())
    };
    for server in &servers[..2] {
        assert_eq!(get(server).await.unwrap(), 200);
    }
    let before = warned("requests to hosts without a breaker");
    for _ in 0..3 {
        for server in &servers[2..] {
            assert_eq!(get(server).await.unwrap(), 200, "sent unguarded");
        }
    }
    let reached: Vec<u64> = servers.iter().map(Downstream::requests).collect();
    assert_eq!(reached, [1, 1, 3, 3]);
    assert_eq!(
        warned("requests to hosts without a breaker") - before,
        1,
        "logged once: {:?}",
        warnings().lock().unwrap()
    );
    let host = |server: &Downstream| server.addr().to_string();
    assert!(matches!(
        infuse::try_breaker(&host(&servers[2])),
        Err(RegistryError::TooManyBreakers { limit: 4, .. })
    ));
    // A host with a breaker is still guarded: open, nothing sent.
    infuse::breaker(&host(&servers[0]))
        .force_open()
        .await
        .unwrap();
    let error = get(&servers[0]).await.unwrap_err();
    assert!(infuse::reqwest::breaker_error(&error).is_some(), "{error}");
    assert_eq!(servers[0].requests(), 1);

    let panic = std::panic::catch_unwind(|| infuse::breaker("one-too-many"))
        .expect_err("infuse::breaker() past the limit panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("Config::max_breakers") && message.contains("try_breaker()"),
        "{message}"
    );
}
