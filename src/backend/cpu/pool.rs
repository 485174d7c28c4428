//! CPU PoolOps.
use super::CpuBackend;
use crate::backend::PoolOps;

impl PoolOps for CpuBackend {}
