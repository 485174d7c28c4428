//! CPU ConvOps.
use super::CpuBackend;
use crate::backend::ConvOps;

impl ConvOps for CpuBackend {}
