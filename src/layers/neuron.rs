//! The neuron layer family: element-wise layers with one bottom and one top
//! of the same shape, all allowed to run in place.
mod absval;
mod activation;
mod bnll;
mod clip;
mod dropout;
mod elu;
mod exp;
mod log;
mod pointwise;
mod power;
mod prelu;
mod swish;
#[cfg(test)]
mod tests;
mod threshold;

use super::Layer;
use crate::backend::Unary;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub use activation::Activation;
pub use dropout::Dropout;
pub use pointwise::Pointwise;
pub use prelu::PReLU;

/// Layer types of this family.
pub const TYPES: &[&str] = &[
    "AbsVal",
    "BNLL",
    "Clip",
    "Dropout",
    "ELU",
    "Exp",
    "Log",
    "PReLU",
    "Power",
    "ReLU",
    "Sigmoid",
    "Swish",
    "TanH",
    "Threshold",
];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    let act = |name: &'static str, op: Unary| -> Result<Box<dyn Layer>> {
        Ok(Box::new(Activation::new(name, op)))
    };
    let pointwise = |l: Result<Pointwise>| l.map(|l| Box::new(l) as Box<dyn Layer>);
    Some(match ty {
        "ReLU" => {
            let slope = lp.relu_param.as_ref().map_or(0.0, |p| p.negative_slope());
            act("ReLU", Unary::ReLU { slope })
        }
        "Sigmoid" => act("Sigmoid", Unary::Sigmoid),
        "TanH" => act("TanH", Unary::TanH),
        "Dropout" => Dropout::new(lp).map(|l| Box::new(l) as Box<dyn Layer>),
        "PReLU" => PReLU::new(lp).map(|l| Box::new(l) as Box<dyn Layer>),
        "ELU" => pointwise(elu::new(lp)),
        "AbsVal" => pointwise(absval::new(lp)),
        "BNLL" => pointwise(bnll::new(lp)),
        "Power" => pointwise(power::new(lp)),
        "Exp" => pointwise(exp::new(lp)),
        "Log" => pointwise(log::new(lp)),
        "Threshold" => pointwise(threshold::new(lp)),
        "Clip" => pointwise(clip::new(lp)),
        "Swish" => pointwise(swish::new(lp)),
        _ => return None,
    })
}
