//! SoftmaxOps kernels.
use super::Math;

pub trait SoftmaxOps: Math {}
