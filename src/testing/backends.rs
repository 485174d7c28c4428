//! The backends a test can run on, and `backend_tests!`, which runs one test
//! body on each of them.
//!
//! - [`cpu()`]: a fresh CPU backend (the reference semantics).
//! - [`cuda()`]: GPU 0 as a complete backend, opened once per test process
//!   (compiling every kernel family with NVRTC takes seconds; the backend is
//!   `Send + Sync`, so all tests share it). Without a usable GPU it prints
//!   `SKIPPED: <why>` and returns `None`, unless `RCAFFE_REQUIRE_CUDA=1`
//!   (`scripts/gpu-check.sh` sets it), which turns the absence into a panic.
//!
//! Tolerance policy for the tests that compare backends (one place to read
//! it; the test files state which class each check is in):
//! - against Caffe's goldens: the golden README's classes
//!   ([`crate::testing::golden::tolerance_for`]), on every backend;
//! - CUDA against CPU, plain fp32 paths: ‖gpu − cpu‖ / ‖cpu‖ ≤ 1e-5
//!   ([`TOL_FP32`]): the same formulas, only the summation order differs
//!   (device reductions, cuBLAS);
//! - where cuDNN convolution runs (Convolution/Deconvolution with the
//!   DEFAULT engine) and for whole nets or training runs built on it:
//!   ≤ 1e-4 ([`TOL_CUDNN`]), since cuDNN picks its own algorithms (implicit
//!   GEMM, FFT, Winograd), whose rounding differs more than a reordered sum;
//! - a whole net's parameter gradients: ≤ 1e-3 ([`TOL_NET`]), the layers'
//!   differences compounding through the net;
//! - finite-difference gradient checks keep the checker's own thresholds
//!   (those of Caffe's tests), identical on every backend.
use std::sync::{Arc, OnceLock};

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;

/// Plain fp32 paths, CUDA vs CPU (relative L2).
pub const TOL_FP32: f64 = 1e-5;
/// Paths through cuDNN convolution, CUDA vs CPU (relative L2).
pub const TOL_CUDNN: f64 = 1e-4;
/// A whole net's gradients through several cuDNN layers, CUDA vs CPU
/// (relative L2): each layer's rounding difference is carried into the
/// layers below it, and a max-pool window whose two largest values differ
/// by less than that difference routes its gradient to the other one. On
/// an H200, LeNet's conv2 filter gradient differed by 1.5e-4.
pub const TOL_NET: f64 = 1e-3;

// The macro below expands in the caller's crate, which need not depend on
// `paste` itself.
#[doc(hidden)]
pub use paste;

/// A fresh CPU backend.
pub fn cpu() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// Whether `RCAFFE_REQUIRE_CUDA=1`: a missing GPU is then a failure.
pub fn cuda_required() -> bool {
    std::env::var("RCAFFE_REQUIRE_CUDA").as_deref() == Ok("1")
}

/// GPU 0 as a backend, or why there is none (computed once per process).
fn open_cuda() -> &'static Result<Arc<dyn Backend>, String> {
    static CUDA: OnceLock<Result<Arc<dyn Backend>, String>> = OnceLock::new();
    CUDA.get_or_init(|| {
        #[cfg(feature = "cuda")]
        {
            // A panic while opening (a library call gone wrong) must not
            // leave the cell empty for every test to retry and panic again.
            match std::panic::catch_unwind(|| crate::backend::cuda::open_backend(0)) {
                Ok(opened) => opened.map_err(|e| e.to_string()),
                Err(p) => Err(format!(
                    "opening GPU 0 panicked: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(no message)".into())
                )),
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err("this build has no CUDA backend (feature `cuda` is off)".to_string())
        }
    })
}

/// The CUDA backend on GPU 0, shared by every test of the process; `None`
/// (after printing `SKIPPED: <why>`) without one. Panics with the reason
/// instead when `RCAFFE_REQUIRE_CUDA=1`.
pub fn cuda() -> Option<Arc<dyn Backend>> {
    match open_cuda() {
        Ok(be) => Some(be.clone()),
        Err(why) => {
            if cuda_required() {
                panic!("RCAFFE_REQUIRE_CUDA=1 but the CUDA backend cannot be used: {why}");
            }
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// The concrete CUDA backend on GPU 0 (a fresh one: the per-family tests
/// call its inherent methods, such as `check`), or `None` after printing
/// `SKIPPED: <why>`; a panic instead when `RCAFFE_REQUIRE_CUDA=1`.
#[cfg(feature = "cuda")]
pub fn cuda_backend() -> Option<crate::backend::cuda::CudaBackend> {
    match crate::backend::cuda::CudaBackend::new(0) {
        Ok(be) => Some(be),
        Err(e) => {
            if cuda_required() {
                panic!("RCAFFE_REQUIRE_CUDA=1 but the CUDA backend cannot start: {e}");
            }
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// Deterministic values in [-2, 2) with a few exact zeros (xorshift), the
/// inputs of the GPU-vs-CPU operation tests.
pub fn test_data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            if i % 97 == 3 {
                0.0
            } else {
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            }
        })
        .collect()
}

/// Assert `rel_err(gpu, cpu) <= tol`, naming the check.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f64) {
    let e = rel_err(gpu, cpu);
    assert!(e <= tol, "{what}: ‖gpu−cpu‖/‖cpu‖ = {e:e} > {tol:e}");
}

/// Relative L2 difference `‖got − want‖ / ‖want‖` (the absolute norm when
/// `want` is all zeros). Positions where both are equal (infinities
/// included) or both NaN count as no difference; a NaN on one side only
/// makes the result NaN, which fails every `<=` comparison.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "rel_err: lengths differ");
    let (mut d, mut c) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        if g == w || (g.is_nan() && w.is_nan()) {
            if w.is_finite() {
                c += f64::from(w).powi(2);
            }
            continue;
        }
        d += (f64::from(g) - f64::from(w)).powi(2);
        c += f64::from(w).powi(2);
    }
    if c == 0.0 {
        d.sqrt()
    } else {
        (d / c).sqrt()
    }
}

/// Generate a CPU and a CUDA test from each function `fn name(be: Arc<dyn
/// Backend>)`: `#[test] fn name_cpu()` runs it on [`cpu()`], and `#[test]
/// fn name_cuda()` on [`cuda()`] (or returns after `SKIPPED`, see there).
///
/// ```ignore
/// fn relu_gradient(be: Arc<dyn Backend>) { ... }
/// rcaffe::backend_tests!(relu_gradient, lenet_matches_cpu);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $crate::testing::backends::paste::paste! {
            $(
                #[test]
                fn [<$name _cpu>]() {
                    $name($crate::testing::backends::cpu());
                }

                #[test]
                fn [<$name _cuda>]() {
                    if let Some(be) = $crate::testing::backends::cuda() {
                        $name(be);
                    }
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_err_cases() {
        assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((rel_err(&[3.0, 4.0], &[0.0, 0.0]) - 5.0).abs() < 1e-12);
        assert!((rel_err(&[1.0, 0.0], &[1.0, 1.0]) - (0.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(
            rel_err(&[f32::NAN, f32::INFINITY], &[f32::NAN, f32::INFINITY]),
            0.0
        );
        assert!(rel_err(&[f32::NAN], &[1.0]).is_nan());
        assert!(rel_err(&[1.0], &[f32::NAN]).is_nan());
    }

    fn blob_round_trip(be: Arc<dyn Backend>) {
        let mut b = crate::tensor::Blob::new(&*be, &[3]);
        b.set_data(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(b.data_vec(), vec![1.0, 2.0, 3.0]);
    }

    crate::backend_tests!(blob_round_trip);

    #[test]
    fn cuda_is_opened_once() {
        // Either both calls give the same backend or both give none.
        match (cuda(), cuda()) {
            (Some(a), Some(b)) => assert!(Arc::ptr_eq(&a, &b)),
            (None, None) => {}
            _ => panic!("cuda() changed its answer"),
        }
    }
}
