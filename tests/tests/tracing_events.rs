//! Every transition is one `tracing` event with stable fields (`service`, `from`, `to`,
//! `generation`, `reason`), and the call path opens no span. In a test binary of its
//! own: the capturing subscriber is the process's global one (see `log_once.rs`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse::ServiceOverride;
use infuse_tests::support::calls::{breaker_with, TestError};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::SubscriberExt;

/// One captured event: its level, message and fields.
#[derive(Debug, Clone)]
struct Captured {
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<Captured>>>,
    spans: Arc<AtomicUsize>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target().starts_with("infuse") {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            let level = *event.metadata().level();
            self.events.lock().unwrap().push(Captured { level, fields });
        }
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().target().starts_with("infuse") {
            self.spans.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn transitions_are_events_with_stable_fields_and_calls_open_no_span() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .expect("the only subscriber of this test binary");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let reset = Duration::from_secs(10);
    runtime.block_on(async {
        let overrides = ServiceOverride::new().fail_max(2).reset_timeout(reset);
        let b = breaker_with("traced", overrides).await;
        for _ in 0..1_000 {
            let _ = b.call(async { Ok::<u32, TestError>(1) }).await;
        }
        for _ in 0..2 {
            let _ = b
                .call(async { Err::<u32, TestError>(TestError::Boom) })
                .await;
        }
        tokio::time::advance(reset).await;
        let _ = b.call(async { Ok::<u32, TestError>(1) }).await;
    });
    assert_eq!(
        capture.spans.load(Ordering::SeqCst),
        0,
        "no span on the call path"
    );

    let events = capture.events.lock().unwrap().clone();
    let transitions: Vec<&Captured> = events
        .iter()
        .filter(|e| e.fields.contains_key("reason"))
        .collect();
    let seen: Vec<(tracing::Level, &str, &str, &str, &str)> = transitions
        .iter()
        .map(|e| {
            let field = |name: &str| {
                e.fields
                    .get(name)
                    .unwrap_or_else(|| panic!("no `{name}` in {e:?}"))
                    .as_str()
            };
            assert!(field("generation").parse::<u64>().is_ok(), "{e:?}");
            (
                e.level,
                field("service"),
                field("from"),
                field("to"),
                field("reason"),
            )
        })
        .collect();
    use tracing::Level;
    assert_eq!(
        seen,
        [
            (
                Level::WARN,
                "traced",
                "closed",
                "open",
                "consecutive_failures"
            ),
            (Level::INFO, "traced", "open", "half-open", "open_elapsed"),
            (
                Level::INFO,
                "traced",
                "half-open",
                "closed",
                "trial_succeeded"
            ),
        ]
    );
}
