//! Metrics through the `metrics` facade (feature `metrics`).
