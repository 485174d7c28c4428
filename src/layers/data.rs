//! The data layer family: layers with no bottoms that read examples from
//! a source (see `crate::data`).
mod data_layer;

use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

pub use data_layer::DataLayer;

/// Layer types of this family.
pub const TYPES: &[&str] = &["Data"];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    match ty {
        "Data" => Some(DataLayer::new(lp).map(|l| Box::new(l) as Box<dyn Layer>)),
        _ => None,
    }
}
