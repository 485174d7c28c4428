//! Channel-wise kernels for the normalization family (BatchNorm, Scale,
//! Bias, MVN) and PReLU.
//!
//! Tensors are viewed as `[outer, channels, inner]` (row-major): a
//! per-channel vector `v[c]` is broadcast over `outer` and `inner`, and
//! reductions sum over them. MVN's per-row statistics are the case
//! `outer = 1`.
use super::{Binary, Math, View, ViewMut};

pub trait NormOps: Math {
    /// `out[c] = alpha · Σ_{o,i} x[o,c,i] + beta · out[c]`. With `beta == 0`
    /// `out` is overwritten (its old values are never read).
    #[allow(clippy::too_many_arguments)]
    fn channel_sum(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        alpha: f32,
        x: View,
        beta: f32,
        out: ViewMut,
    );
    /// `out[c] = alpha · Σ_{o,i} a[o,c,i]·b[o,c,i] + beta · out[c]` (same
    /// rule for `beta == 0`).
    #[allow(clippy::too_many_arguments)]
    fn channel_dot(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        alpha: f32,
        a: View,
        b: View,
        beta: f32,
        out: ViewMut,
    );
    /// `y[o,c,i] = x[o,c,i] ∘ v[c]`.
    #[allow(clippy::too_many_arguments)]
    fn channel_broadcast(
        &self,
        op: Binary,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        v: View,
        y: ViewMut,
    );
    /// `y[o,c,i] = y[o,c,i] ∘ v[c]`.
    fn channel_broadcast_inplace(
        &self,
        op: Binary,
        outer: usize,
        channels: usize,
        inner: usize,
        v: View,
        y: ViewMut,
    );
    /// `y[o,c,i] = y[o,c,i]·s[c] + b[c]` (Scale with a bias, in one pass
    /// where the backend fuses it; the same two roundings as two passes).
    fn channel_affine(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        s: View,
        b: View,
        mut y: ViewMut,
    ) {
        self.channel_broadcast_inplace(Binary::Mul, outer, channels, inner, s, y.rb());
        self.channel_broadcast_inplace(Binary::Add, outer, channels, inner, b, y);
    }
    /// `y = f · x` with `f = 1/s[0]`, or 0 when `s[0] == 0` (BatchNorm's
    /// global statistics from running sums; the factor stays on the device).
    fn scale_by_inverse(&self, n: usize, s: View, x: View, y: ViewMut);
    /// PReLU: `y = max(x, 0) + slope[c] · min(x, 0)`.
    #[allow(clippy::too_many_arguments)]
    fn prelu_forward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        slope: View,
        y: ViewMut,
    );
    /// PReLU slope gradient: `slope_diff[c] += Σ dy · x · [x ≤ 0]`.
    #[allow(clippy::too_many_arguments)]
    fn prelu_backward_slope(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        dy: View,
        slope_diff: ViewMut,
    );
    /// PReLU input gradient: `dx = dy · ([x > 0] + slope[c] · [x ≤ 0])`.
    #[allow(clippy::too_many_arguments)]
    fn prelu_backward_data(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        dy: View,
        slope: View,
        dx: ViewMut,
    );
}
