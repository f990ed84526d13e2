//! `infuse dashboard`: every breaker of the namespace on one live page.
//!
//! - `GET /`: the page (one HTML file, no external assets);
//! - `GET /api/breakers`: what `infuse status --json` prints;
//! - `GET /api/events`: server-sent events, one per breaker event of the namespace's
//!   pub/sub channel (the page re-reads the breakers on each, and shows a timeline);
//! - `POST /api/breakers/{service}/open?for=30m` and `…/close`: changes through the
//!   library's scripts, only with `Authorization: Bearer <token>` when the dashboard was
//!   started with `--token` (read-only otherwise).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::control::{self, Action};
use crate::fleet::Fleet;
use crate::status;
use crate::Failure;

const PAGE: &str = include_str!("dashboard.html");

struct App {
    fleet: Fleet,
    token: Option<String>,
    events: broadcast::Sender<String>,
}

/// Serves the dashboard on `listen` until the process ends.
pub(crate) async fn run(
    fleet: Fleet,
    listen: SocketAddr,
    token: Option<String>,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure(format!("--listen {listen}: {e}")))?;
    let address = listener.local_addr()?;
    let (events, _) = broadcast::channel(256);
    let mut pubsub = fleet.subscribe().await?;
    let app = Arc::new(App {
        fleet,
        token,
        events,
    });
    let forward = app.clone();
    tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            if let Ok(payload) = message.get_payload::<String>() {
                if let Some(event) = event_json(&payload) {
                    let _ = forward.events.send(event.to_string());
                }
            }
        }
        tracing_free_warning("the event subscription ended; the page no longer updates live");
    });
    let router = Router::new()
        .route("/", get(page))
        .route("/api/breakers", get(breakers))
        .route("/api/config", get(config))
        .route("/api/events", get(events_stream))
        .route("/api/breakers/{service}/{action}", post(change))
        .with_state(app.clone());
    let mode = if app.token.is_some() {
        "open/close with the token"
    } else {
        "read-only"
    };
    println!(
        "infuse dashboard for namespace {:?} on http://{address}/ ({mode})",
        app.fleet.namespace
    );
    axum::serve(listener, router)
        .await
        .map_err(|e| Failure(format!("the dashboard stopped: {e}")))
}

fn tracing_free_warning(message: &str) {
    eprintln!("infuse dashboard: {message}");
}

/// A pub/sub event as the page's JSON.
fn event_json(payload: &str) -> Option<Value> {
    let (service, snapshot) = infuse::store::redis::parse_event(payload)?;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Some(json!({
        "service": service,
        "state": snapshot.state.as_str(),
        "generation": snapshot.generation,
        "fail_counter": snapshot.fail_counter,
        "open_remaining_ms": snapshot.open_remaining.map(|d| d.as_millis() as u64),
        "trial_in_flight": snapshot.trial_remaining.is_some(),
        "at_ms": at,
    }))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn config(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "namespace": app.fleet.namespace,
            "writable": app.token.is_some(),
        }),
    )
}

async fn breakers(State(app): State<Arc<App>>) -> Response {
    match status::rows(&app.fleet, &[]).await {
        Ok(rows) => json_response(
            StatusCode::OK,
            Value::Array(rows.iter().map(status::to_json).collect()),
        ),
        Err(failure) => json_response(StatusCode::BAD_GATEWAY, json!({ "error": failure.0 })),
    }
}

async fn events_stream(
    State(app): State<Arc<App>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.events.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    return Some((Ok(Event::default().event("breaker").data(event)), receiver))
                }
                // A slow page skips what it missed; it re-reads the breakers anyway.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn change(
    State(app): State<Arc<App>>,
    Path((service, action)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = &app.token else {
        return json_response(
            StatusCode::FORBIDDEN,
            json!({ "error": "read-only dashboard: start it with --token to allow changes" }),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({ "error": "a valid token is required (Authorization: Bearer <token>)" }),
        );
    }
    let action = match (action.as_str(), query.get("for").map(String::as_str)) {
        ("open", None) => Action::Open(None),
        ("open", Some(text)) => match crate::parse_duration(text) {
            Ok(duration) => Action::Open(Some(duration)),
            Err(reason) => {
                return json_response(StatusCode::BAD_REQUEST, json!({ "error": reason }))
            }
        },
        ("close", None) => Action::Close,
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({ "error": format!("unknown action {action:?}: use open[?for=30m] or close") }),
            )
        }
    };
    match control::apply(&app.fleet, &service, action).await {
        Ok(said) => json_response(StatusCode::OK, json!({ "done": said })),
        Err(failure) => json_response(StatusCode::BAD_REQUEST, json!({ "error": failure.0 })),
    }
}

/// Compares without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
