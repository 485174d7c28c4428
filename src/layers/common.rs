//! The common family: blob plumbing (Split, Concat, Flatten), element-wise
//! combination (Eltwise) and blob sources without bottoms (Input, DummyData).
mod concat;
mod dummy_data;
mod eltwise;
mod flatten;
mod input;
mod split;
#[cfg(test)]
mod tests;

use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub use concat::Concat;
pub use dummy_data::DummyData;
pub use eltwise::Eltwise;
pub use flatten::Flatten;
pub use input::Input;
pub use split::Split;

/// Layer types of this family.
pub const TYPES: &[&str] = &[
    "Concat",
    "DummyData",
    "Eltwise",
    "Flatten",
    "Input",
    "Split",
];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    fn boxed<L: Layer + 'static>(r: Result<L>) -> Result<Box<dyn Layer>> {
        r.map(|l| Box::new(l) as Box<dyn Layer>)
    }
    Some(match ty {
        "Split" => boxed(Ok(Split)),
        "Concat" => boxed(Concat::new(lp)),
        "Flatten" => boxed(Flatten::new(lp)),
        "Eltwise" => boxed(Eltwise::new(lp)),
        "Input" => boxed(Input::new(lp)),
        "DummyData" => boxed(DummyData::new(lp)),
        _ => return None,
    })
}
