//! The CPU backend: GEMM through the `gemm` crate, with kernels of our own
//! where it is slow (`packed`: the convolution passes; `skinny`: small-batch
//! InnerProduct; `depthwise`), rayon across batch items and channels, and
//! chunked element-wise loops elsewhere.
mod conv;
mod depthwise;
mod eltwise;
mod lrn;
mod math;
mod norm;
mod packed;
mod pool;
mod pool_rows;
mod recurrent;
mod shape;
mod skinny;
mod softmax;
mod solver;

use super::Backend;

/// Run `$body` with `$f` bound to the closure of the `Binary` operation
/// `$op`: one match arm per operation, so each loop in `$body` is compiled
/// (and vectorised) for its own expression instead of matching per element.
macro_rules! with_binary {
    ($op:expr, |$f:ident| $body:expr) => {
        match $op {
            $crate::backend::Binary::Add => {
                let $f = |a: f32, b: f32| a + b;
                $body
            }
            $crate::backend::Binary::Sub => {
                let $f = |a: f32, b: f32| a - b;
                $body
            }
            $crate::backend::Binary::Mul => {
                let $f = |a: f32, b: f32| a * b;
                $body
            }
            $crate::backend::Binary::Div => {
                let $f = |a: f32, b: f32| a / b;
                $body
            }
            $crate::backend::Binary::Max => {
                let $f = |a: f32, b: f32| a.max(b);
                $body
            }
        }
    };
}
pub(crate) use with_binary;

/// Work below this many elements stays on the calling thread: rayon's
/// overhead beats the gain on small tensors.
pub(crate) const PAR_MIN: usize = 1 << 15;

#[derive(Debug, Clone, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }
}
