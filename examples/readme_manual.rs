use infuse::{BreakerError, CallOptions};

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

async fn fetch(id: u64) -> Result<String, ApiError> {
    if id == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(format!("user-{id}"))
}

#[tokio::main]
async fn main() -> Result<(), ApiError> {
    let users = infuse::breaker("users"); // cheap to clone; keep it

    let user = users.call(fetch(1)).await?;

    let options = CallOptions::new()
        .exclude(|e| matches!(e, ApiError::NotFound))
        .error_on_trip(true);
    let other = users.call_with(options, fetch(2)).await?;

    // A future that owns its breaker handle: `'static`, so it can be spawned.
    let spawned = tokio::spawn(users.call_owned(CallOptions::new(), fetch(3)));
    let third = spawned.await.expect("the task ran")?;

    // Full control: ask, run, report.
    let permit = users.acquire().await?;
    match fetch(4).await {
        Ok(_) => permit.success().await,
        Err(err) => {
            let verdict = permit.failure(&err).await; // Counted, Tripped, TrialFailed or Ignored
            println!("{verdict:?}");
        }
    }
    println!("{user}, {other}, {third}");
    if let Err(ApiError::Breaker(err)) = users.call(fetch(5)).await {
        println!("not sent: {err}");
    }
    Ok(())
}
