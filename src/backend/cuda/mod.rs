//! The CUDA backend (feature `cuda`, on by default), through cudarc with
//! dynamic loading: nothing CUDA is needed to build, and the libraries
//! (driver, cuBLAS, NVRTC, cuDNN; NCCL for several GPUs) are found at run
//! time.
//!
//! - `probe`: finds each library under the names cudarc tries (plus
//!   `libnccl.so.2`) *before* any cudarc call, since cudarc panics on a
//!   missing library; absence becomes one error naming the library and the
//!   fix.
//! - `context`: one opened GPU (`CudaDevice`), `--gpu` parsing, Caffe's
//!   `device_query` properties.
//! - `kernels/*.cu`: the backend's own CUDA C kernels, one file per
//!   operation family as in `cpu/`, compiled by `nvrtc` for the GPU present.
//!
//! - `memory`: `CudaStorage`, the device memory behind `Buffer`.
//! - `math`: `CudaBackend` (kernels compiled and loaded at creation) and its
//!   `Math` implementation (cuBLAS + kernels).
//!
//! Status: libraries, device, memory, kernel sources and `Math` are in
//! place; the other operation families are not implemented on the GPU yet,
//! so `CudaBackend` is not a `Backend` (see docs/ARCHITECTURE.md, "CUDA
//! backend").
pub mod context;
pub mod conv;
pub mod eltwise;
pub mod error;
pub mod kernels;
pub mod lrn;
pub mod math;
pub mod memory;
pub mod norm;
pub mod nvrtc;
pub mod pool;
pub mod probe;
pub mod recurrent;
pub mod shape;
pub mod softmax;
pub mod solver;

pub use context::{device_count, parse_gpu_flag, CudaDevice, DeviceProperties};
pub use error::{CudaError, CudaResult};
pub use math::CudaBackend;
