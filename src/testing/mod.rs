//! Test support shared by unit and integration tests: the finite-difference
//! gradient checker, the golden-case harness (real Caffe's outputs in
//! `../shared/golden`), the zoo helpers (data layers swapped for
//! DummyData, small batches) and the backends a test runs on
//! (`backends`, `backend_tests!`). Compiled into the library so integration
//! tests and benchmarks can use it; it has no effect on training.
pub mod backends;
pub mod golden;
pub mod gradient;
pub mod zoo;
