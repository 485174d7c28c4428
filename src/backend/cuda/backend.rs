//! `CudaBackend` as a complete `Backend`: every operation family is
//! implemented on the GPU (one file each beside this one), so nets,
//! solvers and the CLI use it exactly like the CPU backend.
use std::sync::Arc;

use super::error::CudaResult;
use super::math::CudaBackend;
use crate::backend::Backend;

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        let name = self.dev.name().unwrap_or_else(|_| "unknown device".into());
        format!(
            "GPU {} ({name}): cuBLAS, cuDNN convolutions, NVRTC kernels",
            self.dev.ordinal
        )
    }

    fn take_device_error(&self) -> Option<String> {
        self.check().err().map(|e| e.to_string())
    }
}

/// GPU `ordinal` as a complete backend, for nets and solvers: every
/// library probed, the device opened, every kernel family compiled and
/// loaded (an error names what is missing and how to fix it).
pub fn open_backend(ordinal: usize) -> CudaResult<Arc<dyn Backend>> {
    Ok(Arc::new(CudaBackend::new(ordinal)?))
}
