//! Hosts the examples of infuse in the client stack (`gateway.rs`, `axum.rs`, `tower.rs`,
//! `tonic.rs`, `readme_reqwest.rs`); see the `infuse` crate and its guide.
