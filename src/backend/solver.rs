//! SolverOps kernels.
use super::Math;

pub trait SolverOps: Math {}
