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
//! - `memory`: `CudaStorage`, the device memory behind `Buffer`.
//! - `kernels/*.cu`: the backend's own CUDA C kernels, one file per
//!   operation family as in `cpu/`, compiled by `nvrtc` for the GPU present
//!   when the backend is created.
//! - `math`: `CudaBackend` (kernels compiled and loaded at creation, the
//!   families' state) and its `Math` (cuBLAS + kernels).
//! - One file per operation family, as in `cpu/`: `conv` (cuDNN plans for
//!   2-D convolutions where Caffe's engine rule picks cuDNN, im2col +
//!   cuBLAS otherwise; `depthwise` for one filter per channel), `pool`, `lrn`, `softmax`, `eltwise`, `norm`,
//!   `recurrent`, `shape`, `solver` (Caffe's kernels).
//! - `backend`: `CudaBackend` as a `Backend`, and `open_backend`, what
//!   `--gpu N` uses.
pub mod backend;
pub mod context;
pub mod conv;
mod depthwise;
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

pub use backend::open_backend;
pub use context::{device_count, parse_gpu_flag, CudaDevice, DeviceProperties};
pub use error::{CudaError, CudaResult};
pub use math::CudaBackend;
