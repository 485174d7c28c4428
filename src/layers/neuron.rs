//! The neuron layer family: element-wise layers with one bottom and one top
//! of the same shape, all allowed to run in place.
mod activation;
mod dropout;
#[cfg(test)]
mod tests;

use super::Layer;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub use activation::Activation;
pub use dropout::Dropout;

/// Layer types of this family.
pub const TYPES: &[&str] = &["Dropout", "ReLU", "Sigmoid", "TanH"];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    let act = |name: &'static str, op: Unary| -> Result<Box<dyn Layer>> {
        Ok(Box::new(Activation::new(name, op)))
    };
    Some(match ty {
        "ReLU" => {
            let slope = lp.relu_param.as_ref().map_or(0.0, |p| p.negative_slope());
            act("ReLU", Unary::ReLU { slope })
        }
        "Sigmoid" => act("Sigmoid", Unary::Sigmoid),
        "TanH" => act("TanH", Unary::TanH),
        "Dropout" => Dropout::new(lp).map(|l| Box::new(l) as Box<dyn Layer>),
        _ => return None,
    })
}
