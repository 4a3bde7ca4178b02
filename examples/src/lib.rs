//! Runnable weir pipelines; each binary in `src/bin/` starts with a header
//! that says what it does, its guarantee and how to run it.
