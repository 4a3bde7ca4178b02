//! Benchmarks (issue 5).
