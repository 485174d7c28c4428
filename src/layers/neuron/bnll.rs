//! BNLL (binomial normal log likelihood): `y = log(1 + eˣ)`, computed as
//! `x + log(1 + e⁻ˣ)` for x > 0 so it never overflows.
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub fn new(_lp: &LayerParameter) -> Result<Pointwise> {
    Ok(Pointwise::new("BNLL", Unary::BNLL))
}
