//! Swish: `y = x·sigmoid(beta·x)`, `dx = dy·(beta·y + σ(beta·x)·(1 − beta·y))`.
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub fn new(lp: &LayerParameter) -> Result<Pointwise> {
    let beta = lp.swish_param.unwrap_or_default().beta();
    Ok(Pointwise::new("Swish", Unary::Swish { beta }))
}
