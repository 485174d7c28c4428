//! The normalization family: BatchNorm, MVN, and the broadcasting Scale and
//! Bias (a learned or second-bottom operand applied along `axis`).
mod batch_norm;
mod bias;
mod mvn;
mod scale;
#[cfg(test)]
mod tests;

use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub use batch_norm::BatchNorm;
pub use bias::Bias;
pub use mvn::Mvn;
pub use scale::Scale;

/// Layer types of this family.
pub const TYPES: &[&str] = &["BatchNorm", "Bias", "MVN", "Scale"];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    fn boxed<L: Layer + 'static>(l: Result<L>) -> Result<Box<dyn Layer>> {
        l.map(|l| Box::new(l) as Box<dyn Layer>)
    }
    Some(match ty {
        "BatchNorm" => boxed(BatchNorm::new(lp)),
        "Bias" => boxed(Bias::new(lp)),
        "MVN" => boxed(Mvn::new(lp)),
        "Scale" => boxed(Scale::new(lp)),
        _ => return None,
    })
}
