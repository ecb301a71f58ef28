//! End-to-end tests of the whole mesh live in `tests/`.
