//! Exp: `y = base^(shift + scale·x)`, base −1 meaning e. Computed as Caffe
//! does: `outer · exp(inner · x)` with `inner = ln(base)·scale` and
//! `outer = base^shift`.
use super::pointwise::Pointwise;
use crate::backend::Unary;
use crate::error::Result;
use crate::layer_err;
use crate::proto::caffe::LayerParameter;

/// ln(base) for Exp/Log: exactly 1 for the default base −1 (e).
pub(super) fn log_base(base: f32) -> Result<f32> {
    if base == -1.0 {
        return Ok(1.0);
    }
    if base.is_nan() || base <= 0.0 {
        return Err(layer_err!("base must be strictly positive, got {base}"));
    }
    let l = base.ln();
    if !l.is_finite() {
        return Err(layer_err!("ln(base) = ln({base}) = {l} is not finite"));
    }
    Ok(l)
}

pub fn new(lp: &LayerParameter) -> Result<Pointwise> {
    let p = lp.exp_param.unwrap_or_default();
    let (base, scale, shift) = (p.base(), p.scale(), p.shift());
    let inner = log_base(base)? * scale;
    let outer = if shift == 0.0 {
        1.0
    } else if base == -1.0 {
        shift.exp()
    } else {
        base.powf(shift)
    };
    Ok(Pointwise::new("Exp", Unary::Exp { inner, outer }))
}
