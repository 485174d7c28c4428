//! Pooling kernels (Caffe's 2-D MAX and AVE pooling over channel planes).
use super::{Math, View, ViewMut};

/// One pooling window layout, resolved in `reshape` (Caffe's output-size
/// rules are the layer's business; kernels only follow the geometry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolGeometry {
    pub height: usize,
    pub width: usize,
    pub pooled_height: usize,
    pub pooled_width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

impl PoolGeometry {
    /// Values per input plane.
    pub fn in_plane(&self) -> usize {
        self.height * self.width
    }
    /// Values per output plane.
    pub fn out_plane(&self) -> usize {
        self.pooled_height * self.pooled_width
    }
}

/// Pooling over `planes` contiguous channel planes (num × channels).
pub trait PoolOps: Math {
    /// MAX pooling: `y` = window maxima (padding never wins; the first
    /// maximum in row-major order wins ties), `mask` = the flat index
    /// `h·W + w` of each maximum inside its plane, as a float (−1 when no
    /// value exceeded −FLT_MAX).
    fn max_pool_forward(&self, g: &PoolGeometry, planes: usize, x: View, y: ViewMut, mask: ViewMut);
    /// Route each `dy` to its `mask` position; `dx` is overwritten.
    fn max_pool_backward(&self, g: &PoolGeometry, planes: usize, dy: View, mask: View, dx: ViewMut);
    /// AVE pooling: the sum over the window's real values divided by the
    /// window size clipped to the padded extent (Caffe's divisor).
    fn ave_pool_forward(&self, g: &PoolGeometry, planes: usize, x: View, y: ViewMut);
    /// Spread `dy / pool_size` over each window's real values; `dx` is overwritten.
    fn ave_pool_backward(&self, g: &PoolGeometry, planes: usize, dy: View, dx: ViewMut);
}
