//! `infuse dashboard`: every breaker of the namespace on one live page.
//!
//! - `GET /`: the page (one HTML file, no external assets, no data of its own);
//! - `GET /api/breakers`: what `infuse status --json` prints, with Redis's clock in the
//!   `X-Infuse-Server-Ms` header (the page measures "12 s ago" from it, not from the
//!   browser's clock);
//! - `GET /api/history?service=NAME&limit=50`: the breaker's last transitions, newest
//!   first (at most [`HISTORY_LIMIT`]), with who made each and why;
//! - `GET /api/config`: the namespace, and whether changes are allowed;
//! - `GET /api/events`: server-sent events, one per breaker event of the namespace's
//!   pub/sub channel, followed by `infuse::admin`'s change stream, which subscribes
//!   again after a Redis restart (the page re-reads the breakers on each, and shows a
//!   timeline);
//! - `POST /api/breakers/{service}/open?for=30m` and `…/close`: changes through the
//!   library's scripts, by `infuse::admin` (the dashboard never announces itself).
//!
//! Who may do what is [`access`]'s; how connections are held, [`server`]'s.

mod access;
mod server;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::parser::ValueSource;
use infuse::admin::Change;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::control::{self, Action};
use crate::fleet::Fleet;
use crate::status;
use crate::Failure;
use access::{Access, Refusal};

const PAGE: &str = include_str!("dashboard.html");

/// The most history entries one `/api/history` request reads: the page asks once per
/// breaker on load, so each read stays small.
const HISTORY_LIMIT: usize = 200;

/// `infuse dashboard`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Where to listen (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// The token that allows open/close from the page (and reads, unless
    /// --public-read). Prefer $INFUSE_DASHBOARD_TOKEN or --token-file: a token on the
    /// command line is visible to every user of the machine (`ps`).
    #[arg(long, env = "INFUSE_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the token from this file (its first line; keep the file private).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// With a token: let anyone who reaches the dashboard read it (changes still need
    /// the token).
    #[arg(long)]
    public_read: bool,
    /// Also answer requests whose `Host` is NAME (or NAME:PORT), e.g. behind a reverse
    /// proxy; repeatable. By default only the listen address (and `localhost` on
    /// loopback) is answered, against DNS rebinding.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// How many connections to hold at most; past it, the longest-idle one is closed
    /// for a newcomer (a busy one never is).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    max_connections: u16,
    /// How long a client may take to send a request's headers (also the most an idle
    /// connection waits for its next request).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = header_timeout)]
    header_timeout: Duration,
}

/// `--header-timeout`: a duration above zero (zero would close every connection).
fn header_timeout(text: &str) -> Result<Duration, String> {
    match crate::parse_duration(text)? {
        duration if duration.is_zero() => Err(format!("{text:?}: the deadline must be above zero")),
        duration => Ok(duration),
    }
}

impl Options {
    /// The token, from `--token`, `$INFUSE_DASHBOARD_TOKEN` or `--token-file` (one of
    /// them), where `source` tells how clap found `--token`.
    fn token(&self, source: Option<ValueSource>) -> Result<Option<String>, Failure> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                let other = match source {
                    Some(ValueSource::EnvVariable) => "$INFUSE_DASHBOARD_TOKEN",
                    _ => "--token",
                };
                return Err(Failure(format!(
                    "both {other} and --token-file give a token: keep one"
                )));
            }
            (Some(token), None) => {
                if source == Some(ValueSource::CommandLine) {
                    eprintln!(
                        "infuse dashboard: --token on the command line is visible to every user of this machine (ps); prefer $INFUSE_DASHBOARD_TOKEN or --token-file"
                    );
                }
                token.clone()
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Failure(format!("--token-file {}: {e}", path.display())))?;
                text.lines().next().unwrap_or_default().trim().to_owned()
            }
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err(Failure(
                "the dashboard token is empty: give a secret, or no token for a read-only dashboard"
                    .to_owned(),
            ));
        }
        Ok(Some(token))
    }
}

struct App {
    fleet: Fleet,
    access: Access,
    events: broadcast::Sender<String>,
}

/// Serves the dashboard until the process ends; `token_source` tells where clap found
/// `--token`.
pub(crate) async fn run(
    fleet: Fleet,
    options: Options,
    token_source: Option<ValueSource>,
) -> Result<(), Failure> {
    let token = options.token(token_source)?;
    let listen = options.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure(format!("--listen {listen}: {e}")))?;
    let address = listener.local_addr()?;
    let (events, _) = broadcast::channel(256);
    let mut changes = fleet.admin().changes().await?;
    let app = Arc::new(App {
        fleet,
        access: Access::new(address, &options.allow_host, token, options.public_read),
        events,
    });
    let forward = app.clone();
    tokio::spawn(async move {
        // The stream reconnects by itself; the page re-reads the breakers every tick.
        loop {
            match changes.next().await {
                Change::Breaker { service, snapshot } => {
                    let _ = forward
                        .events
                        .send(event_json(&service, &snapshot).to_string());
                }
                Change::Disconnected { reason } => tracing_free_warning(&format!(
                    "lost the event subscription ({}); reconnecting",
                    crate::term::clean(&reason)
                )),
                Change::Reconnected { .. } => {
                    tracing_free_warning("the event subscription is back")
                }
                _ => {}
            }
        }
    });
    let router = Router::new()
        .route("/", get(page))
        .route("/api/breakers", get(breakers))
        .route("/api/config", get(config))
        .route("/api/history", get(history))
        .route("/api/events", get(events_stream))
        .route("/api/breakers/{service}/{action}", post(change))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app.clone());
    let reads = match (app.access.writable(), app.access.reads_need_token()) {
        (false, _) => "read-only",
        (true, true) => "reads and open/close with the token",
        (true, false) => "public reads, open/close with the token",
    };
    println!(
        "infuse dashboard for namespace {:?} on http://{address}/ ({reads})",
        app.fleet.namespace
    );
    let limits = server::Limits {
        max_connections: usize::from(options.max_connections),
        header_timeout: options.header_timeout,
    };
    server::serve(listener, router, limits).await;
    Ok(())
}

/// Every request: the `Host` check, then the token for reads of the API.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Err(refusal) = app.access.check_host(request.headers()) {
        return refused(refusal);
    }
    let api_read =
        request.method() == axum::http::Method::GET && request.uri().path().starts_with("/api/");
    if api_read {
        if let Err(refusal) = app.access.check_read(request.headers()) {
            return refused(refusal);
        }
    }
    next.run(request).await
}

fn refused((status, reason): Refusal) -> Response {
    let mut response = json_response(status, json!({ "error": reason }));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

fn tracing_free_warning(message: &str) {
    eprintln!("infuse dashboard: {message}");
}

/// A breaker's event as the page's JSON.
fn event_json(service: &str, snapshot: &infuse::Snapshot) -> Value {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    json!({
        "service": service,
        "state": snapshot.state.as_str(),
        "generation": snapshot.generation,
        "fail_counter": snapshot.fail_counter,
        "open_remaining_ms": snapshot.open_remaining.map(|d| d.as_millis() as u64),
        "trial_in_flight": snapshot.trial_remaining.is_some(),
        "at_ms": at,
    })
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn config(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "namespace": app.fleet.namespace,
            "writable": app.access.writable(),
        }),
    )
}

async fn breakers(State(app): State<Arc<App>>) -> Response {
    match status::view(&app.fleet, &[]).await {
        Ok(view) => {
            let mut response = json_response(
                StatusCode::OK,
                Value::Array(
                    view.rows
                        .iter()
                        .map(|row| status::to_json(&view, row))
                        .collect(),
                ),
            );
            response
                .headers_mut()
                .insert("x-infuse-server-ms", view.server_ms.into());
            response
        }
        Err(failure) => json_response(StatusCode::BAD_GATEWAY, json!({ "error": failure.0 })),
    }
}

/// One breaker's last transitions, newest first: `?service=NAME[&limit=N]`.
async fn history(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(service) = query.get("service") else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "error": "name the breaker: /api/history?service=NAME" }),
        );
    };
    let limit = match query.get("limit").map(|text| text.parse::<usize>()) {
        None => 50,
        Some(Ok(limit)) => limit.min(HISTORY_LIMIT),
        Some(Err(_)) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("limit: a number up to {HISTORY_LIMIT}") }),
            )
        }
    };
    match app.fleet.admin().history(service, limit).await {
        Ok(entries) => json_response(
            StatusCode::OK,
            Value::Array(entries.iter().map(status::transition_json).collect()),
        ),
        Err(e) => json_response(StatusCode::BAD_GATEWAY, json!({ "error": e.to_string() })),
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
    if let Err(refusal) = app.access.check_write(&headers) {
        return refused(refusal);
    }
    let action = match (action.as_str(), query.get("for").map(String::as_str)) {
        ("open", None) => Action::Open(None),
        ("open", Some(text)) => match crate::parse_open_for(text) {
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

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
