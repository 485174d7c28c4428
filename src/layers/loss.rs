//! The loss family: Softmax, SoftmaxWithLoss and Accuracy.
mod accuracy;
mod softmax;
mod softmax_loss;
#[cfg(test)]
mod tests;

use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub use accuracy::Accuracy;
pub use softmax::Softmax;
pub use softmax_loss::SoftmaxWithLoss;

/// Layer types of this family.
pub const TYPES: &[&str] = &["Accuracy", "Softmax", "SoftmaxWithLoss"];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    fn boxed<L: Layer + 'static>(r: Result<L>) -> Result<Box<dyn Layer>> {
        r.map(|l| Box::new(l) as Box<dyn Layer>)
    }
    Some(match ty {
        "Softmax" => boxed(Softmax::new(lp)),
        "SoftmaxWithLoss" => boxed(SoftmaxWithLoss::new(lp)),
        "Accuracy" => boxed(Accuracy::new(lp)),
        _ => return None,
    })
}
