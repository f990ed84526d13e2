//! Misuses of `#[circuit_breaker]`, each pinned to its compile error (`tests/ui/*.stderr`).
//! Regenerate with `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
