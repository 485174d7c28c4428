//! PoolOps kernels.
use super::Math;

pub trait PoolOps: Math {}
