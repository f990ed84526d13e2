//! Misuses of `#[circuit_breaker]`, each pinned to its compile error (`tests/ui/*.stderr`),
//! and uses that must compile and run (`tests/ui/pass/*.rs`).
//! Regenerate with `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
