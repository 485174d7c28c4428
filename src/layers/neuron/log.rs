//! Log: `y = log_base(shift + scale·x)`, base −1 meaning e.
use super::exp::log_base;
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub fn new(lp: &LayerParameter) -> Result<Pointwise> {
    let p = lp.log_param.unwrap_or_default();
    let (scale, shift) = (p.scale(), p.shift());
    let lb = log_base(p.base())?;
    Ok(Pointwise::new(
        "Log",
        Unary::Log {
            scale,
            shift,
            base_scale: 1.0 / lb,
            back_scale: scale / lb,
        },
    ))
}
