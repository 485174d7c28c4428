//! LrnOps kernels.
use super::Math;

pub trait LrnOps: Math {}
