//! The norm layer family.
use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

/// Layer types of this family.
pub const TYPES: &[&str] = &[];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(_ty: &str, _lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    None
}
