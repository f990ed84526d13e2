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
//!
//! As a fleet (`infuse-cli/README.md` walks through three gateways on one Redis): with
//! `REDIS_URL` set, every gateway shares the `users` breaker. Each takes its ports from
//! the arguments or the environment, and a second one can use the first one's users
//! service instead of starting its own:
//!
//! ```text
//! --serve                  serve until Ctrl-C (without it: the scripted demo)
//! --port N                 the gateway's port ($GATEWAY_PORT; --serve: 3000, demo: any free one)
//! --users-port N           the users service's port ($USERS_PORT; --serve: 3001, demo: any free one)
//! --users-url URL          use this users service, start none ($USERS_URL)
//! ```
//!
//! A gateway never resets the fleet's breaker at boot: it joins it in whatever state the
//! fleet has (an open breaker stays open for everyone). The scripted demo, which needs a
//! closed breaker, runs in a namespace of its own instead.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use infuse::reqwest::{breaker_error, CircuitBreakerMiddleware};
use infuse::{BreakerError, Config, InitError, ServiceOverride};
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

/// Listens on 127.0.0.1:`port` and serves `app` there; answers with its URL. `hint`
/// says how to choose another port, for the error.
async fn serve(port: u16, hint: &str, app: Router) -> Result<String, String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("port {port} is already in use (another gateway?): {hint}")
            }
            _ => format!("cannot listen on 127.0.0.1:{port}: {error}; {hint}"),
        })?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// What the command line and the environment ask for.
struct Options {
    serve: bool,
    gateway_port: u16,
    users_port: u16,
    users_url: Option<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut serve = false;
        let (mut gateway_port, mut users_port, mut users_url) = (None, None, None);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--serve" => serve = true,
                "--port" => gateway_port = Some(port("--port", &value("--port")?)?),
                "--users-port" => users_port = Some(port("--users-port", &value("--users-port")?)?),
                "--users-url" => users_url = Some(value("--users-url")?),
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; the arguments are --serve, --port N, --users-port N, --users-url URL"
                    ))
                }
            }
        }
        let from_env = |name: &str| -> Result<Option<u16>, String> {
            match std::env::var(name) {
                Ok(text) if !text.is_empty() => port(&format!("${name}"), &text).map(Some),
                _ => Ok(None),
            }
        };
        let (default_gateway, default_users) = if serve { (3000, 3001) } else { (0, 0) };
        Ok(Options {
            serve,
            gateway_port: match gateway_port {
                Some(port) => port,
                None => from_env("GATEWAY_PORT")?.unwrap_or(default_gateway),
            },
            users_port: match users_port {
                Some(port) => port,
                None => from_env("USERS_PORT")?.unwrap_or(default_users),
            },
            users_url: users_url
                .or_else(|| std::env::var("USERS_URL").ok().filter(|u| !u.is_empty())),
        })
    }
}

fn port(option: &str, text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("{option} {text:?} is not a port number (0 to 65535)"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("gateway: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let options = Options::parse()?;
    if !options.serve && options.users_url.is_some() {
        return Err(
            "the scripted demo drives its own users service: drop --users-url, or add --serve"
                .to_owned(),
        );
    }
    // `users` is only named at run time (by the middleware), not by `#[circuit_breaker]`.
    let users_settings = ServiceOverride::new()
        .fail_max(3)
        .reset_timeout(RESET_TIMEOUT);
    let (config, mode) = match std::env::var("REDIS_URL") {
        // Served: the fleet's namespace, shared by every gateway. The scripted demo needs
        // a closed breaker: a namespace of its own (its keys expire a minute after it).
        Ok(url) if options.serve => (Config::redis(url), "shared through Redis"),
        Ok(url) => (
            Config::redis(url)
                .namespace(format!("gateway-demo-{}", std::process::id()))
                .key_ttl(Duration::from_secs(60)),
            "in Redis, in a namespace of this demo's own",
        ),
        Err(_) => (Config::in_memory(), "in this process's memory"),
    };
    let config = config
        .service("users", users_settings)
        .allow_undeclared_overrides(true);
    infuse::init(config).await.map_err(|error| match error {
        InitError::Unreachable { address, reason } => format!(
            "no Redis answered at {address} ({reason}). Start one (redis-server --port 6379 --save ''), point REDIS_URL at yours, or unset REDIS_URL to keep the breaker in this process"
        ),
        other => format!("cannot set up infuse: {other}"),
    })?;

    let users = Arc::new(Users::default());
    let users_url = match &options.users_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let users_app = Router::new()
                .route("/users/{id}", get(user))
                .route("/toggle", post(toggle))
                .with_state(users.clone());
            let hint = format!(
                "choose another with --users-port N (or $USERS_PORT), or use the running one with --users-url http://127.0.0.1:{}",
                options.users_port
            );
            serve(options.users_port, &hint, users_app).await?
        }
    };
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
    let hint = "choose another with --port N (or $GATEWAY_PORT)";
    let gateway_url = serve(options.gateway_port, hint, gateway_app).await?;

    if options.serve {
        println!("gateway: curl -i {gateway_url}/profile/7   (breaker users {mode})");
        match options.users_url {
            Some(_) => println!("users:   {users_url} (another process's)"),
            None => println!("users:   curl -X POST {users_url}/toggle   (down <-> up)"),
        }
        std::future::pending::<()>().await; // until Ctrl-C
    }

    // The scripted demo: a client of the gateway, while users goes down and comes back.
    let visitor = reqwest::Client::new();
    let step = async |what: &str| -> Result<(), String> {
        let response = visitor
            .get(format!("{gateway_url}/profile/7"))
            .send()
            .await
            .map_err(|e| format!("the demo's request to the gateway failed: {e}"))?;
        let status = response.status();
        let retry = match response.headers().get("retry-after") {
            Some(secs) => format!("  Retry-After: {}", secs.to_str().unwrap_or("?")),
            None => String::new(),
        };
        let body = response.text().await.map_err(|e| e.to_string())?;
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
