//! The guide's axum section as a complete program: `/users/{id}` on 127.0.0.1:3000, a
//! breaker's rejection answered 503 + `Retry-After`
//! (`cargo run -p infuse-integration-examples --example axum`).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use infuse::BreakerError;

#[derive(Debug)]
enum ApiError {
    NotFound,
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(err: BreakerError) -> Self {
        ApiError::Breaker(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound => axum::http::StatusCode::NOT_FOUND.into_response(),
            // 503 + Retry-After (504 for a timeout), a JSON body naming the service.
            ApiError::Breaker(err) => err.into_response(),
        }
    }
}

#[infuse::circuit_breaker(service = "users", fail_max = 5, reset_timeout = "15s")]
async fn load_user(id: u64) -> Result<String, ApiError> {
    // The real call to the users service goes here.
    match id {
        0 => Err(ApiError::NotFound),
        _ => Ok(format!("user-{id}")),
    }
}

async fn get_user(Path(id): Path<u64>) -> Result<String, ApiError> {
    load_user(id).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let app = Router::new().route("/users/{id}", get(get_user));
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:3000").await {
        Ok(listener) => listener,
        Err(error) => {
            let hint = match error.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (another program holds the port: stop it, or change the port in this example)"
                }
                _ => "",
            };
            eprintln!("cannot listen on 127.0.0.1:3000: {error}{hint}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("curl http://127.0.0.1:3000/users/7");
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("the server stopped: {error}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
