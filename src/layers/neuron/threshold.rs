//! Threshold: `y = 1` if x > threshold (strictly) else 0. Forward only, as
//! in Caffe: backward through it is an error.
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub fn new(lp: &LayerParameter) -> Result<Pointwise> {
    let threshold = lp.threshold_param.unwrap_or_default().threshold();
    Ok(Pointwise::forward_only(
        "Threshold",
        Unary::Threshold { threshold },
    ))
}
