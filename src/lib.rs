//! Hosts the runnable examples (`examples/`); see the `infuse` crate.
