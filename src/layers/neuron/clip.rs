//! Clip: `y = max(min, min(x, max))`; the gradient passes where
//! `min ≤ x ≤ max` (bounds included).
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::layer_err;
use crate::proto::caffe::LayerParameter;

pub fn new(lp: &LayerParameter) -> Result<Pointwise> {
    // Like Caffe, a missing clip_param reads as min = max = 0.
    let p = lp.clip_param.unwrap_or_default();
    let (min, max) = (p.min, p.max);
    if min.is_nan() || max.is_nan() || min > max {
        return Err(layer_err!(
            "clip_param needs min <= max, got min {min} and max {max}"
        ));
    }
    Ok(Pointwise::new("Clip", Unary::Clip { min, max }))
}
