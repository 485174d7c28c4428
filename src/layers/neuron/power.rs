//! Power: `y = (shift + scale·x)^power`, a constant when `power·scale == 0`.
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub fn new(lp: &LayerParameter) -> Result<Pointwise> {
    let p = lp.power_param.unwrap_or_default();
    let (power, scale, shift) = (p.power(), p.scale(), p.shift());
    Ok(Pointwise::new(
        "Power",
        Unary::Power {
            power,
            scale,
            shift,
        },
    ))
}
