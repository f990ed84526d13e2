//! The harness shared by infuse's integration tests: hermetic `redis-server` processes
//! with fault injection, the store conformance suite, and the breakers and errors the
//! behaviour tests have in common.

pub mod conformance;
pub mod support;
