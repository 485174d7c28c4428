//! AbsVal: `y = |x|`, `dx = sign(x)·dy` with sign(0) = 0. Caffe refuses to
//! run it in place; here in place is allowed (the input is kept for backward).
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub fn new(_lp: &LayerParameter) -> Result<Pointwise> {
    Ok(Pointwise::new("AbsVal", Unary::AbsVal))
}
