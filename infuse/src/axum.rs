//! `IntoResponse for BreakerError` (feature `axum`).
