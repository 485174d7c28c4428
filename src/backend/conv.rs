//! Convolution kernels: im2col/col2im and the convolution passes.
use super::Math;

/// The geometry of one convolution (2-D or N-D), resolved once in `reshape`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvGeometry {}

pub trait ConvOps: Math {}
