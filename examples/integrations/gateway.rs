//! The use case infuse was written for: an API gateway whose `/profile/{id}` calls a
//! `users` service over HTTP. While `users` is down, the gateway answers `503` with
//! `Retry-After` at once, and `users` sees no requests until one trial per reset timeout
//! finds it healthy again.
//!
//! ```text
//! cargo run -p infuse-integration-examples --example gateway             # a scripted demo
//! cargo run -p infuse-integration-examples --example gateway -- --serve  # :3000, users :3001
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p infuse-integration-examples --example gateway
//! ```
//!
//! The `users` service runs in this process, on its own port, so that one command shows
//! the whole path: client → gateway (axum) → reqwest + breaker middleware → users (axum).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use infuse::reqwest::{breaker_error, CircuitBreakerMiddleware};
use infuse::{BreakerError, Config, ServiceOverride};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tokio::net::TcpListener;

const RESET_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// The users service: `/users/{id}` answers 200, or 500 while down; `POST /toggle` flips it.

#[derive(Default)]
struct Users {
    down: AtomicBool,
    seen: AtomicU64,
}

async fn user(State(users): State<Arc<Users>>, Path(id): Path<u64>) -> (StatusCode, String) {
    users.seen.fetch_add(1, Ordering::SeqCst);
    match users.down.load(Ordering::SeqCst) {
        true => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "database unreachable".into(),
        ),
        false => (StatusCode::OK, format!("user-{id}")),
    }
}

async fn toggle(State(users): State<Arc<Users>>) -> String {
    let down = !users.down.fetch_xor(true, Ordering::SeqCst);
    format!("users is now {}\n", if down { "down" } else { "up" })
}

// ---------------------------------------------------------------------------------------
// The gateway: every call to users goes through the `users` breaker.

struct Gateway {
    client: ClientWithMiddleware,
    users_url: String,
}

enum GatewayError {
    Breaker(BreakerError),
    Upstream(String),
}

impl From<reqwest_middleware::Error> for GatewayError {
    fn from(err: reqwest_middleware::Error) -> Self {
        match breaker_error(&err) {
            Some(breaker) => GatewayError::Breaker(breaker.clone()),
            None => GatewayError::Upstream(err.to_string()),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        match self {
            // 503 + Retry-After, and a JSON body naming the service.
            GatewayError::Breaker(err) => err.into_response(),
            GatewayError::Upstream(why) => (StatusCode::BAD_GATEWAY, why).into_response(),
        }
    }
}

async fn profile(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<u64>,
) -> Result<String, GatewayError> {
    let response = gw
        .client
        .get(format!("{}/users/{id}", gw.users_url))
        .send()
        .await?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| GatewayError::Upstream(e.to_string()))?;
    match status.is_success() {
        true => Ok(format!("profile of {body}")),
        false => Err(GatewayError::Upstream(format!(
            "users answered {status}: {body}"
        ))),
    }
}

async fn serve(port: u16, app: Router) -> std::io::Result<String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `users` is only named at run time (by the middleware), not by `#[circuit_breaker]`.
    let users_settings = ServiceOverride::new()
        .fail_max(3)
        .reset_timeout(RESET_TIMEOUT);
    let (config, mode) = match std::env::var("REDIS_URL") {
        Ok(url) => (Config::redis(url), "shared through Redis"), // by every gateway of the fleet
        Err(_) => (Config::in_memory(), "in this process's memory"),
    };
    infuse::init(
        config
            .service("users", users_settings)
            .allow_undeclared_overrides(true),
    )
    .await?;
    infuse::breaker("users").close().await?; // the demo starts from a closed breaker

    let serving = std::env::args().any(|arg| arg == "--serve");
    let (gateway_port, users_port) = if serving { (3000, 3001) } else { (0, 0) };
    let users = Arc::new(Users::default());
    let users_app = Router::new()
        .route("/users/{id}", get(user))
        .route("/toggle", post(toggle))
        .with_state(users.clone());
    let users_url = serve(users_port, users_app).await?;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(CircuitBreakerMiddleware::service("users"))
        .build();
    let gateway = Arc::new(Gateway {
        client,
        users_url: users_url.clone(),
    });
    let gateway_app = Router::new()
        .route("/profile/{id}", get(profile))
        .with_state(gateway);
    let gateway_url = serve(gateway_port, gateway_app).await?;

    if serving {
        println!("gateway: curl -i {gateway_url}/profile/7");
        println!("users:   curl -X POST {users_url}/toggle   (down <-> up)");
        std::future::pending::<()>().await; // until Ctrl-C
    }

    // The scripted demo: a client of the gateway, while users goes down and comes back.
    let visitor = reqwest::Client::new();
    let step = async |what: &str| -> Result<(), reqwest::Error> {
        let response = visitor
            .get(format!("{gateway_url}/profile/7"))
            .send()
            .await?;
        let status = response.status();
        let retry = match response.headers().get("retry-after") {
            Some(secs) => format!("  Retry-After: {}", secs.to_str().unwrap_or("?")),
            None => String::new(),
        };
        let body = response.text().await?;
        let seen = users.seen.load(Ordering::SeqCst);
        println!("  {what:<12} GET /profile/7 -> {status}{retry}  {body}  [users saw {seen}]");
        Ok(())
    };
    println!("breaker users ({mode}): 3 failures open it for {RESET_TIMEOUT:?}\n");
    for _ in 0..2 {
        step("users up").await?;
    }
    users.down.store(true, Ordering::SeqCst);
    for _ in 0..6 {
        step("users down").await?;
    }
    users.down.store(false, Ordering::SeqCst);
    step("users back").await?; // still open: users has not been asked yet
    tokio::time::sleep(RESET_TIMEOUT).await;
    for _ in 0..3 {
        step("after reset").await?; // the first one is the trial
    }
    Ok(())
}
