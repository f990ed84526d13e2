//! The cost of `infuse::reqwest::CircuitBreakerMiddleware` per request.
//!
//! ```text
//! cargo bench -p infuse-bench --bench reqwest
//! ```
//!
//! Two groups, each row one request awaited in a tokio runtime (criterion's `to_async`):
//!
//! - `loopback`: a real `GET` to a keep-alive HTTP/1.1 server of this process on
//!   127.0.0.1 (a few lines of tokio: it answers `200` with an empty body, so reqwest
//!   reuses one pooled connection). Rows: a bare `reqwest::Client`; the same client in a
//!   `ClientWithMiddleware` with no middleware; with the breaker middleware
//!   (`service("…")`, closed); with `per_host()` (closed). What a request really costs;
//!   the breaker's share is small against the network round trip and its noise.
//! - `no network`: the same stacks ending in a middleware that answers a canned `200`
//!   without sending anything, so that the figure is the middleware stack alone: no
//!   middleware but the canned one; the breaker (`service`, closed) in front of it;
//!   `per_host()` in front of it; and the breaker open (the request rejected, nothing
//!   built below it). Overhead of the breaker = its row − `canned`.
//!
//! A rejection builds an `anyhow::Error`, which captures a backtrace when
//! `RUST_BACKTRACE` is set: run with `RUST_LIB_BACKTRACE=0` to measure without it.
//!
//! The runtime is multi-threaded (2 workers) so that the loopback server runs beside the
//! client.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Extensions;
use infuse::reqwest::CircuitBreakerMiddleware;
use reqwest::{Request, Response};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A keep-alive HTTP/1.1 server answering every request `200` with an empty body.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let mut pending = Vec::new();
            loop {
                // One answer per request head (GETs have no body).
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&buffer[..n]),
                }
            }
        });
    }
}

/// The end of a stack that answers `200` without sending anything.
struct Canned;

impl Middleware for Canned {
    fn handle<'a, 'b, 'c, 'd>(
        &'a self,
        _req: Request,
        _extensions: &'b mut Extensions,
        _next: Next<'c>,
    ) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'd>>
    where
        'a: 'd,
        'b: 'd,
        'c: 'd,
        Self: 'd,
    {
        Box::pin(async { Ok(Response::from(http::Response::new(""))) })
    }
}

/// `client` in a `ClientWithMiddleware` with the middleware `with` adds.
fn stack(
    client: &reqwest::Client,
    with: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> ClientWithMiddleware {
    with(ClientBuilder::new(client.clone())).build()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));
        addr
    });
    let url = format!("http://{addr}/users/7");
    let client = reqwest::Client::new();
    let service = CircuitBreakerMiddleware::service;
    let per_host = CircuitBreakerMiddleware::per_host;

    let mut g = c.benchmark_group("loopback");
    g.bench_function("bare reqwest::Client", |b| {
        b.to_async(&rt)
            .iter(|| async { client.get(&url).send().await.unwrap() })
    });
    let rows = [
        ("ClientWithMiddleware, no middleware", stack(&client, |b| b)),
        (
            "breaker: service, closed",
            stack(&client, |b| b.with(service("bench-reqwest"))),
        ),
        (
            "breaker: per_host, closed",
            stack(&client, |b| b.with(per_host())),
        ),
    ];
    for (name, stack) in &rows {
        g.bench_function(*name, |b| {
            b.to_async(&rt)
                .iter(|| async { stack.get(&url).send().await.unwrap() })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("no network");
    let rows = [
        ("canned", stack(&client, |b| b.with(Canned))),
        (
            "breaker: service, closed + canned",
            stack(&client, |b| {
                b.with(service("bench-reqwest-canned")).with(Canned)
            }),
        ),
        (
            "breaker: per_host, closed + canned",
            stack(&client, |b| b.with(per_host()).with(Canned)),
        ),
    ];
    for (name, stack) in &rows {
        g.bench_function(*name, |b| {
            b.to_async(&rt)
                .iter(|| async { stack.get(&url).send().await.unwrap() })
        });
    }
    let open = stack(&client, |b| {
        b.with(service("bench-reqwest-open")).with(Canned)
    });
    rt.block_on(infuse::breaker("bench-reqwest-open").force_open())
        .unwrap();
    g.bench_function("breaker: service, open (rejected)", |b| {
        b.to_async(&rt)
            .iter(|| async { open.get(&url).send().await.unwrap_err() })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench
}
criterion_main!(benches);
