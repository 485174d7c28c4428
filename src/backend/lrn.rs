//! Local response normalization kernels (Caffe's LRN, both regions).
use super::{Math, View, ViewMut};

/// LRN settings (Caffe's LRNParameter, validated by the layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrnParams {
    /// Window size n (odd).
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    /// Added to the ACROSS_CHANNELS scale (WITHIN_CHANNEL ignores it, as Caffe).
    pub k: f32,
}

/// LRN over `num` images of `channels × spatial` values (ACROSS_CHANNELS)
/// or over `planes` channel planes of `height × width` (WITHIN_CHANNEL).
#[allow(clippy::too_many_arguments)]
pub trait LrnOps: Math {
    /// `scale = k + α/n · Σ_{|c'−c| ≤ (n−1)/2} x[c']²`, `y = x · scale^−β`
    /// (Caffe's running window over channels). `scale` is kept for backward.
    fn lrn_across_forward(
        &self,
        p: &LrnParams,
        num: usize,
        channels: usize,
        spatial: usize,
        x: View,
        scale: ViewMut,
        y: ViewMut,
    );
    /// `dx = dy·scale^−β − (2αβ/n) · x · Σ_window dy·y/scale` (overwrites `dx`).
    fn lrn_across_backward(
        &self,
        p: &LrnParams,
        num: usize,
        channels: usize,
        spatial: usize,
        x: View,
        y: View,
        scale: View,
        dy: View,
        dx: ViewMut,
    );
    /// Caffe's WITHIN_CHANNEL composition: `avg` = AVE pooling (kernel n,
    /// pad (n−1)/2, stride 1) of `x²`, `scale = (1 + α·avg)^−β`,
    /// `y = x · scale`; `avg` and `scale` are kept for backward.
    fn lrn_within_forward(
        &self,
        p: &LrnParams,
        planes: usize,
        height: usize,
        width: usize,
        x: View,
        avg: ViewMut,
        scale: ViewMut,
        y: ViewMut,
    );
    /// The backward of that composition, in its order (overwrites `dx`).
    fn lrn_within_backward(
        &self,
        p: &LrnParams,
        planes: usize,
        height: usize,
        width: usize,
        x: View,
        avg: View,
        scale: View,
        dy: View,
        dx: ViewMut,
    );
}
