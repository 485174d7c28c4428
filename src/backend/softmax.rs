//! Softmax kernels: the softmax itself (Softmax, SoftmaxWithLoss's inner
//! softmax) and the multinomial log-loss on its probabilities.
//!
//! Blobs are viewed as `(outer, channels, inner)`: the softmax runs along
//! `channels` independently for each of the `outer·inner` columns.
use super::{Math, View, ViewMut};
use crate::error::Result;

pub trait SoftmaxOps: Math {
    /// In-place softmax: `x` holds the input on entry and the probabilities
    /// on exit. Each column's maximum is subtracted before `exp` (Caffe).
    fn softmax_forward(&self, outer: usize, channels: usize, inner: usize, x: ViewMut);
    /// In-place backward: `d` holds `dy` on entry and
    /// `dx = (dy − Σ_c dy·y) ⊙ y` on exit.
    fn softmax_backward(&self, outer: usize, channels: usize, inner: usize, y: View, d: ViewMut);
    /// `(Σ −log(max(p[label], FLT_MIN)), valid count)` over the columns
    /// whose `int(label)` is not `ignore_label`. `label` holds one value per
    /// column. A label outside `[0, channels)` is an error.
    #[allow(clippy::too_many_arguments)]
    fn softmax_loss_forward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        prob: View,
        label: View,
        ignore_label: Option<i32>,
    ) -> Result<(f32, usize)>;
    /// `dx = p − onehot(label)`, zero across all channels of ignored columns
    /// (unscaled: the layer applies loss weight / normalizer). Returns the
    /// valid count.
    #[allow(clippy::too_many_arguments)]
    fn softmax_loss_backward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        prob: View,
        label: View,
        ignore_label: Option<i32>,
        dx: ViewMut,
    ) -> Result<usize>;
    /// Caffe's Accuracy on `score` `(outer, channels, inner)` and `label`
    /// (one value per column). A column whose `int(label)` is not
    /// `ignore_label` is correct when at most `top_k` scores are `>=` its
    /// true class's score, that score included (ties count against the
    /// true class; a NaN true score matches nothing, so it is correct).
    /// Writes the fraction of correct columns (0 with none counted) to
    /// `acc[0]` and, when given, each class's fraction (0 for a class no
    /// column has) to `per_class[0..channels]`. A label outside
    /// `[0, channels)` is an error (`label {v} is outside [0, {channels})`,
    /// naming the first in column order) and leaves the outputs unspecified.
    #[allow(clippy::too_many_arguments)]
    fn accuracy(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        top_k: usize,
        ignore_label: Option<i32>,
        score: View,
        label: View,
        acc: ViewMut,
        per_class: Option<ViewMut>,
    ) -> Result<()>;
}
