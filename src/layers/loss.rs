//! The loss family: Softmax, SoftmaxWithLoss and Accuracy.
mod accuracy;
mod contrastive;
mod euclidean;
mod hinge;
mod infogain;
mod multinomial_logistic;
mod sigmoid_cross_entropy;
mod softmax;
mod softmax_loss;
#[cfg(test)]
mod tests;

use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub use accuracy::Accuracy;
pub use contrastive::ContrastiveLoss;
pub use euclidean::EuclideanLoss;
pub use hinge::HingeLoss;
pub use infogain::InfogainLoss;
pub use multinomial_logistic::MultinomialLogisticLoss;
pub use sigmoid_cross_entropy::SigmoidCrossEntropyLoss;
pub use softmax::Softmax;
pub use softmax_loss::SoftmaxWithLoss;

/// Layer types of this family.
pub const TYPES: &[&str] = &[
    "Accuracy",
    "ContrastiveLoss",
    "EuclideanLoss",
    "HingeLoss",
    "InfogainLoss",
    "MultinomialLogisticLoss",
    "SigmoidCrossEntropyLoss",
    "Softmax",
    "SoftmaxWithLoss",
];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    fn boxed<L: Layer + 'static>(r: Result<L>) -> Result<Box<dyn Layer>> {
        r.map(|l| Box::new(l) as Box<dyn Layer>)
    }
    Some(match ty {
        "Softmax" => boxed(Softmax::new(lp)),
        "SoftmaxWithLoss" => boxed(SoftmaxWithLoss::new(lp)),
        "Accuracy" => boxed(Accuracy::new(lp)),
        "ContrastiveLoss" => boxed(ContrastiveLoss::new(lp)),
        "EuclideanLoss" => boxed(EuclideanLoss::new(lp)),
        "HingeLoss" => boxed(HingeLoss::new(lp)),
        "InfogainLoss" => boxed(InfogainLoss::new(lp)),
        "MultinomialLogisticLoss" => boxed(MultinomialLogisticLoss::new(lp)),
        "SigmoidCrossEntropyLoss" => boxed(SigmoidCrossEntropyLoss::new(lp)),
        _ => return None,
    })
}
