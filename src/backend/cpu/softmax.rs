//! CPU SoftmaxOps.
use super::CpuBackend;
use crate::backend::SoftmaxOps;

impl SoftmaxOps for CpuBackend {}
