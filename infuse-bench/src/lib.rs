//! Hosts the benchmarks (`benches/`); see BENCHMARKS.md.
