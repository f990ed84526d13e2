//! A circuit breaker in a tower stack (feature `tower`).
