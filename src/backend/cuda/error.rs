//! Errors of the CUDA backend. Every failure to find or start the GPU stack
//! starts with "no usable GPU" so the CLI (and scripts grepping its output)
//! can tell it from other errors.
use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// A shared library could not be loaded under any name cudarc tries.
    #[error(
        "no usable GPU: {lib} was not found: none of {tried} could be loaded ({reason}). \
         Fix: {fix}"
    )]
    LibraryMissing {
        lib: &'static str,
        /// The names tried, shortened for the message.
        tried: String,
        /// dlopen's most telling error (e.g. a missing dependency).
        reason: String,
        fix: String,
    },
    /// The libraries load but cannot serve this build or this device
    /// (driver too old, wrong library major version, no such device).
    #[error("no usable GPU: {0}")]
    Unusable(String),
    /// A CUDA driver call failed.
    #[error("CUDA driver error while {context}: {message}")]
    Driver { context: String, message: String },
    /// A cuBLAS call failed.
    #[error("cuBLAS error while {context}: {message}")]
    Blas { context: String, message: String },
    /// A cuDNN call failed (or no algorithm could serve a convolution).
    #[error("cuDNN error while {context}: {message}")]
    Cudnn { context: String, message: String },
    /// NVRTC rejected a kernel source (a bug in `kernels/*.cu`).
    #[error("NVRTC could not compile the `{family}` kernels ({options}):\n{log}")]
    Compile {
        family: &'static str,
        options: String,
        log: String,
    },
    /// cudarc panicked (it does when a library or symbol is missing); the
    /// probes should prevent this, so it is the last line of defence.
    #[error("no usable GPU: the CUDA bindings failed while {context}: {message}")]
    Panicked { context: String, message: String },
}

pub type CudaResult<T> = std::result::Result<T, CudaError>;

/// Run `f`, turning a panic inside cudarc into `CudaError::Panicked`.
pub(crate) fn guard<T>(context: &str, f: impl FnOnce() -> CudaResult<T>) -> CudaResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(CudaError::Panicked {
                context: context.to_string(),
                message,
            })
        }
    }
}

/// The CUresult's name (e.g. `CUDA_ERROR_NO_DEVICE`). Not cudarc's Debug,
/// which calls back into the driver (`cuGetErrorString`).
pub(crate) fn code_name(e: &cudarc::driver::DriverError) -> String {
    format!("{:?}", e.0)
}

/// Map a cudarc driver error, naming what was being done.
pub(crate) fn driver(context: &str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError + '_ {
    move |e| CudaError::Driver {
        context: context.to_string(),
        message: code_name(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_panics_into_errors() {
        let r: CudaResult<()> = guard("loading a library", || panic!("Unable to load \"cuda\""));
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("no usable GPU"), "{e}");
        assert!(
            e.contains("loading a library") && e.contains("Unable to load"),
            "{e}"
        );
        assert_eq!(guard("x", || Ok(3)).unwrap(), 3);
    }
}
