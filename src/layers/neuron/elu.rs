//! ELU: `y = x` for x > 0, else `alpha·(eˣ − 1)`; `dx = dy·(y + alpha)` on
//! the negative side (Caffe's form, which also works in place).
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub fn new(lp: &LayerParameter) -> Result<Pointwise> {
    let alpha = lp.elu_param.unwrap_or_default().alpha();
    Ok(Pointwise::new("ELU", Unary::ELU { alpha }))
}
