//! Hosts the workspace-level tests, examples and benches; see the `infuse` crate.
