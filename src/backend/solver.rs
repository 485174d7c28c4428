//! SolverOps: the fused per-parameter kernels of the solvers (Caffe's
//! `*_update_gpu` kernels, one pass each).
//!
//! Each `*_update` kernel reads the gradient `g` from `diff` (already
//! normalised and regularised), updates the history, writes the step into
//! `diff` (as Caffe's `ComputeUpdateValue` does, so a snapshot with
//! `snapshot_diff` shows it) and subtracts it from `data` (Caffe's
//! `Net::Update`). `lr` is the local rate (`rate · lr_mult`).
//!
//! Implementations follow the operation order of Caffe's CPU code (the
//! documented formulas), including where it rounds: the CPU backend's
//! module notes list the details (fused multiply-adds, libm `powf`).
use super::{Math, View, ViewMut};

/// Weight-decay flavour (`regularization_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regularization {
    L2,
    L1,
}

pub trait SolverOps: Math {
    /// `Σ x²` of `n` values (Caffe's `Blob::sumsq_diff`, for gradient
    /// clipping), accumulated in double: Caffe's BLAS `sdot` keeps many
    /// partial sums and lands within ~1e-7 of the exact value, while a
    /// single float running sum over 10⁵ values is off by ~1e-4.
    fn sumsq(&self, n: usize, x: View) -> f32;

    /// Caffe's Regularize: `diff += decay · data` (L2) or
    /// `diff += decay · sign(data)` (L1, sign(0) = 0).
    fn regularize(&self, n: usize, kind: Regularization, decay: f32, data: View, diff: ViewMut);

    /// SGD with momentum: `h = μ·h + lr·g; diff = h; data -= h`.
    #[allow(clippy::too_many_arguments)]
    fn sgd_update(
        &self,
        n: usize,
        momentum: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    );

    /// Nesterov: `h' = μ·h + lr·g; diff = (1+μ)·h' − μ·h; data -= diff`.
    #[allow(clippy::too_many_arguments)]
    fn nesterov_update(
        &self,
        n: usize,
        momentum: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    );

    /// AdaGrad: `h += g²; diff = lr · g / (sqrt(h) + δ); data -= diff`.
    #[allow(clippy::too_many_arguments)]
    fn adagrad_update(
        &self,
        n: usize,
        delta: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    );

    /// RMSProp: `h = ρ·h + (1−ρ)·g²; diff = lr · g / (sqrt(h) + δ); data -= diff`.
    #[allow(clippy::too_many_arguments)]
    fn rmsprop_update(
        &self,
        n: usize,
        rms_decay: f32,
        delta: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    );

    /// AdaDelta: `h = μ·h + (1−μ)·g²; Δ = g·sqrt((h2+δ)/(h+δ));
    /// h2 = μ·h2 + (1−μ)·Δ²; diff = lr·Δ; data -= diff`.
    #[allow(clippy::too_many_arguments)]
    fn adadelta_update(
        &self,
        n: usize,
        momentum: f32,
        delta: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        history2: ViewMut,
        data: ViewMut,
    );

    /// Adam with the bias correction folded into `corrected_lr`
    /// (`lr · sqrt(1−β2^t)/(1−β1^t)`): `m = β1·m + (1−β1)·g;
    /// v = β2·v + (1−β2)·g²; diff = corrected_lr · m / (sqrt(v) + ε); data -= diff`.
    #[allow(clippy::too_many_arguments)]
    fn adam_update(
        &self,
        n: usize,
        beta1: f32,
        beta2: f32,
        eps_hat: f32,
        corrected_lr: f32,
        diff: ViewMut,
        m: ViewMut,
        v: ViewMut,
        data: ViewMut,
    );
}
