//! A circuit breaker middleware for `reqwest-middleware` (feature `reqwest`).
