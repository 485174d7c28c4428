//! CPU SolverOps.
use super::CpuBackend;
use crate::backend::SolverOps;

impl SolverOps for CpuBackend {}
