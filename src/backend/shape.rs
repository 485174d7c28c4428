//! Kernels of the shape layers (Slice, Tile, Crop, Reduction, ArgMax, Embed,
//! Filter, BatchReindex) and of the losses whose per-element rules Math
//! cannot express (SigmoidCrossEntropy, Hinge, MultinomialLogistic,
//! Infogain, Contrastive).
//!
//! Small integer inputs (labels, row indices, similarity flags) arrive as
//! host slices: the layers read them with `Blob::data_vec` and validate them,
//! so the kernels can trust them (a device backend uploads them).
use super::{Math, View, ViewMut};

/// What `reduce_rows` computes per row (Caffe's MEAN is SUM with `coeff/dim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Asum,
    SumSq,
}

/// What ArgMax writes for each of the `k` winners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgMaxOut {
    /// The indices (as floats).
    Indices,
    /// The values.
    Values,
    /// Per slice: the `k` indices, then the `k` values (ArgMax without `axis`
    /// and with `out_max_val`).
    IndicesThenValues,
}

pub trait ShapeOps: Math {
    /// For `b` in `0..blocks`: `y[b·y_stride ..][..len] = x[b·x_stride ..][..len]`
    /// (`+=` when `accumulate`). Offsets come with the views.
    #[allow(clippy::too_many_arguments)]
    fn copy_blocks(
        &self,
        blocks: usize,
        len: usize,
        x: View,
        x_stride: usize,
        y: ViewMut,
        y_stride: usize,
        accumulate: bool,
    );
    /// Row `i` of `dst` = row `idx[i]` of `src` (rows of `row` values).
    fn gather_rows(&self, idx: &[usize], row: usize, src: View, dst: ViewMut);
    /// Row `idx[i]` of `dst` += row `i` of `src`, in order (repeats accumulate).
    fn scatter_add_rows(&self, idx: &[usize], row: usize, src: View, dst: ViewMut);
    /// N-d crop: `y` (shape `out_shape`) = the window of `x` (shape
    /// `in_shape`) starting at `offsets`. All three have the same length.
    fn crop_forward(
        &self,
        in_shape: &[usize],
        out_shape: &[usize],
        offsets: &[usize],
        x: View,
        y: ViewMut,
    );
    /// The window of `dx` (shape `in_shape`) at `offsets` = `dy` (shape
    /// `out_shape`); the rest of `dx` is left as it is (callers zero it).
    fn crop_backward(
        &self,
        in_shape: &[usize],
        out_shape: &[usize],
        offsets: &[usize],
        dy: View,
        dx: ViewMut,
    );
    /// `y[i] = coeff · op(row i of x)` for `rows` rows of `dim` values.
    #[allow(clippy::too_many_arguments)]
    fn reduce_rows(&self, op: Reduce, rows: usize, dim: usize, coeff: f32, x: View, y: ViewMut);
    /// `dx` (overwritten) = `coeff · dy[i] · op'(x)` along row `i`:
    /// 1 (Sum), sign(x) (Asum, sign(0) = 0), 2x (SumSq).
    #[allow(clippy::too_many_arguments)]
    fn reduce_rows_backward(
        &self,
        op: Reduce,
        rows: usize,
        dim: usize,
        coeff: f32,
        x: View,
        dy: View,
        dx: ViewMut,
    );
    /// Top-`k` along the middle axis of `(outer, dim, inner)`, largest first,
    /// ties to the larger index (Caffe's `partial_sort` with `greater<pair>`).
    /// Output element `j` of column `(o, i)` goes to `(o·k + j)·inner + i`,
    /// except `IndicesThenValues` (needs `inner == 1`): indices at
    /// `2·o·k + j`, values at `2·o·k + k + j`.
    #[allow(clippy::too_many_arguments)]
    fn argmax(
        &self,
        outer: usize,
        dim: usize,
        inner: usize,
        k: usize,
        out: ArgMaxOut,
        x: View,
        y: ViewMut,
    );

    /// Σ over kept elements of `max(x,0) − x·t + log(1 + e^(−|x|))` (Caffe's
    /// stable form); `keep[i] == false` marks an ignored element (all kept
    /// when `keep` is empty).
    fn sigmoid_ce_loss(&self, n: usize, x: View, t: View, keep: &[bool]) -> f32;
    /// `dx = scale · (σ(x) − t)`, 0 where ignored.
    fn sigmoid_ce_grad(&self, n: usize, x: View, t: View, keep: &[bool], scale: f32, dx: ViewMut);

    /// Hinge margins `v = max(0, 1 + s·x)` with `s = −1` at each row's label
    /// and `+1` elsewhere (`labels.len()` rows of `dim`).
    fn hinge_margins(&self, dim: usize, labels: &[usize], x: View, v: ViewMut);
    /// `dx = scale · sign(s·v)` (L1) or `scale · 2·s·v` (L2).
    fn hinge_grad(&self, dim: usize, labels: &[usize], l2: bool, scale: f32, v: View, dx: ViewMut);

    /// `Σ_i −log(max(p[i, label_i], 1e−20))` over `labels.len()` rows of `dim`.
    fn multinomial_logistic_loss(&self, dim: usize, labels: &[usize], p: View) -> f32;
    /// `dx = scale / max(p, 1e−20)` at each label, 0 elsewhere.
    fn multinomial_logistic_grad(
        &self,
        dim: usize,
        labels: &[usize],
        scale: f32,
        p: View,
        dx: ViewMut,
    );

    /// Infogain on probabilities `p` viewed as `(outer, ch, inner)`, one label
    /// per column (`None`: ignored): `−Σ_cols Σ_l H[label, l]·log(max(p_l, 1e−20))`.
    fn infogain_loss(
        &self,
        ch: usize,
        inner: usize,
        labels: &[Option<usize>],
        p: View,
        h: View,
    ) -> f32;
    /// `dx_l = scale · (p_l · Σ_m H[label, m] − H[label, l])`, 0 across
    /// ignored columns.
    #[allow(clippy::too_many_arguments)]
    fn infogain_grad(
        &self,
        ch: usize,
        inner: usize,
        labels: &[Option<usize>],
        scale: f32,
        p: View,
        h: View,
        dx: ViewMut,
    );

    /// Contrastive loss sum (before the `1/2N`) from `diff = a − b`
    /// (`similar.len()` rows of `ch`); stores each row's `‖a−b‖²` in `dist_sq`.
    /// Dissimilar rows add `max(margin − d, 0)²`, or `max(margin − d², 0)`
    /// when `legacy`.
    #[allow(clippy::too_many_arguments)]
    fn contrastive_loss(
        &self,
        ch: usize,
        similar: &[bool],
        margin: f32,
        legacy: bool,
        diff: View,
        dist_sq: ViewMut,
    ) -> f32;
    /// Gradient for `a` with `alpha = ±lw/N` (`−` gives b's): similar rows
    /// `alpha·diff`; dissimilar rows inside the margin `−alpha·diff`
    /// (legacy) or `−alpha·(margin − d)/(d + 1e−4)·diff`; else 0.
    #[allow(clippy::too_many_arguments)]
    fn contrastive_grad(
        &self,
        ch: usize,
        similar: &[bool],
        margin: f32,
        legacy: bool,
        alpha: f32,
        diff: View,
        dist_sq: View,
        dx: ViewMut,
    );
}
