//! Element-wise selection kernels that Math cannot express: Eltwise MAX
//! keeps, per element, which bottom won.
use super::{Math, View, ViewMut};

pub trait EltwiseOps: Math {
    /// Fold bottom `index` (≥ 1) into the running maximum `y`, recording the
    /// winner in `mask` (bottom indices stored as floats). The caller starts
    /// with `y = bottom 0`, `mask = 0`. Caffe's tie rule: bottom 1 replaces
    /// bottom 0 unless bottom 0 is strictly greater; later bottoms replace
    /// the maximum only when strictly greater.
    fn eltwise_max_forward(&self, n: usize, index: usize, x: View, y: ViewMut, mask: ViewMut);
    /// `dx = dy` where `mask == index`, else 0 (overwrites `dx`).
    fn eltwise_max_backward(&self, n: usize, index: usize, dy: View, mask: View, dx: ViewMut);
}
