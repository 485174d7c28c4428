//! The operations every layer and solver is written against. A backend is a
//! set of kernels; layers never contain device code (no `cfg`, no host loops
//! over device memory). The CPU backend implements everything; the CUDA
//! backend (`cuda/`, feature `cuda`) overrides the same traits.
//!
//! Families of operations live in one trait each, so a kernel family is one
//! file here plus one file per backend:
//! - `Math` (this file): BLAS-like and element-wise operations on views.
//! - `ConvOps` (conv.rs): im2col/col2im and convolution passes.
//! - `PoolOps` (pool.rs), `LrnOps` (lrn.rs), `SoftmaxOps` (softmax.rs),
//!   `EltwiseOps` (eltwise.rs), `NormOps` (norm.rs), `ShapeOps` (shape.rs),
//!   `RecurrentOps` (recurrent.rs), `SolverOps` (solver.rs): the remaining
//!   kernels.
pub mod buffer;
pub mod conv;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod eltwise;
pub mod lrn;
pub mod norm;
pub mod pool;
pub mod recurrent;
pub mod shape;
pub mod softmax;
pub mod solver;
pub mod unary;

pub use buffer::{Buffer, Location, View, ViewMut};
pub use conv::{ConvGeometry, ConvOps, Engine};
pub use eltwise::EltwiseOps;
pub use lrn::LrnOps;
pub use norm::NormOps;
pub use pool::PoolOps;
pub use recurrent::RecurrentOps;
pub use shape::ShapeOps;
pub use softmax::SoftmaxOps;
pub use solver::SolverOps;
pub use unary::Unary;

/// Element-wise binary operations `y = a ∘ b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
}

/// BLAS-like and element-wise operations. Matrices are row-major; `gemm` and
/// `gemv` keep BLAS's meaning of alpha and beta (`C = alpha·op(A)·op(B) + beta·C`).
/// All lengths are in elements; views carry their offsets.
pub trait Math {
    /// A zero-filled buffer on this backend's device.
    fn alloc(&self, n: usize) -> Buffer;
    /// `C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: View,
        b: View,
        beta: f32,
        c: ViewMut,
    );
    /// `y = alpha · op(A) · x + beta · y`, A is `m×n` (op(A) is `n×m` when transposed).
    #[allow(clippy::too_many_arguments)]
    fn gemv(
        &self,
        trans_a: bool,
        m: usize,
        n: usize,
        alpha: f32,
        a: View,
        x: View,
        beta: f32,
        y: ViewMut,
    );
    /// `y += alpha · x`
    fn axpy(&self, n: usize, alpha: f32, x: View, y: ViewMut);
    /// `y = alpha · x + beta · y`
    fn axpby(&self, n: usize, alpha: f32, x: View, beta: f32, y: ViewMut);
    /// `x *= alpha`
    fn scal(&self, n: usize, alpha: f32, x: ViewMut);
    /// `x = v`
    fn set(&self, n: usize, v: f32, x: ViewMut);
    /// `x += v`
    fn add_scalar(&self, n: usize, v: f32, x: ViewMut);
    /// `y = x`
    fn copy(&self, n: usize, x: View, y: ViewMut);
    /// `Σ x·y`
    fn dot(&self, n: usize, x: View, y: View) -> f32;
    /// `Σ |x|`
    fn asum(&self, n: usize, x: View) -> f32;
    /// `y = a ∘ b`
    fn binary(&self, op: Binary, n: usize, a: View, b: View, y: ViewMut);
    /// `y = a ∘ y` (in place on the second operand)
    fn binary_inplace(&self, op: Binary, n: usize, a: View, y: ViewMut);
    /// `y = f(x)`
    fn unary(&self, op: Unary, n: usize, x: View, y: ViewMut);
    /// `x = f(x)`
    fn unary_inplace(&self, op: Unary, n: usize, x: ViewMut);
    /// `dx = f'(x, y) · dy`
    fn unary_grad(&self, op: Unary, n: usize, x: View, y: View, dy: View, dx: ViewMut);
    /// In-place backward: `y` is both bottom and top data, `d` holds dy on entry and dx on exit.
    fn unary_grad_inplace(&self, op: Unary, n: usize, y: View, d: ViewMut);
    /// Dropout mask: `mask[i] = scale` if `r(seed, i) > threshold`, else 0.
    /// `r(seed, i)` is the high 32 bits of SplitMix64 at counter `i + 1`
    /// (`z = seed + (i+1)·0x9E3779B97F4A7C15`, then the two xor-shift-multiply
    /// rounds and a final `z ^= z >> 31`): a pure function of `(seed, i)`, so
    /// every backend and any threading give bit-identical masks. As in
    /// Caffe's GPU DropoutLayer, `threshold = (u32::MAX as f64 · ratio) as u32`
    /// and an element is kept iff `r > threshold`.
    fn dropout_mask(&self, n: usize, seed: u64, threshold: u32, scale: f32, mask: ViewMut);
    /// Wait for queued work (a no-op on the CPU).
    fn synchronize(&self) {}
}

/// A complete backend: every family of operations, shareable across threads.
pub trait Backend:
    Math
    + ConvOps
    + PoolOps
    + LrnOps
    + SoftmaxOps
    + EltwiseOps
    + NormOps
    + RecurrentOps
    + ShapeOps
    + SolverOps
    + Send
    + Sync
{
    /// A short description for logs and `device_query`.
    fn describe(&self) -> String;
    /// The first error an earlier asynchronous operation recorded on the
    /// device (a failed kernel launch, cuBLAS or cuDNN call), taken so it is
    /// reported once. The CPU backend runs synchronously and has none; the
    /// solver and `time` ask once per iteration, so a device failure ends
    /// the run with its error instead of training on garbage.
    fn take_device_error(&self) -> Option<String> {
        None
    }
}
