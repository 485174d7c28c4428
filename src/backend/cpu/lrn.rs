//! CPU LrnOps.
use super::CpuBackend;
use crate::backend::LrnOps;

impl LrnOps for CpuBackend {}
