//! The shape layer family: layers that move, pick or reduce values without
//! learned arithmetic (Slice, Reshape, Tile, Crop, Reduction, ArgMax, Filter,
//! BatchReindex, Silence), plus Embed (a learned lookup table) and Parameter
//! (a learned blob exposed as a top).
mod argmax;
mod batch_reindex;
mod crop;
mod embed;
mod filter;
mod parameter;
mod reduction;
mod reshape;
mod silence;
mod slice;
#[cfg(test)]
mod tests;
mod tile;

use super::Layer;
use crate::error::Result;
use crate::layer_err;
use crate::proto::caffe::LayerParameter;

pub use argmax::ArgMax;
pub use batch_reindex::BatchReindex;
pub use crop::Crop;
pub use embed::Embed;
pub use filter::Filter;
pub use parameter::Parameter;
pub use reduction::Reduction;
pub use reshape::Reshape;
pub use silence::Silence;
pub use slice::Slice;
pub use tile::Tile;

/// Layer types of this family.
pub const TYPES: &[&str] = &[
    "ArgMax",
    "BatchReindex",
    "Crop",
    "Embed",
    "Filter",
    "Parameter",
    "Reduction",
    "Reshape",
    "Silence",
    "Slice",
    "Tile",
];

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    fn boxed<L: Layer + 'static>(r: Result<L>) -> Result<Box<dyn Layer>> {
        r.map(|l| Box::new(l) as Box<dyn Layer>)
    }
    Some(match ty {
        "ArgMax" => boxed(ArgMax::new(lp)),
        "BatchReindex" => boxed(Ok(BatchReindex::default())),
        "Crop" => boxed(Crop::new(lp)),
        "Embed" => boxed(Embed::new(lp)),
        "Filter" => boxed(Ok(Filter::default())),
        "Parameter" => boxed(Parameter::new(lp)),
        "Reduction" => boxed(Reduction::new(lp)),
        "Reshape" => boxed(Reshape::new(lp)),
        "Silence" => boxed(Ok(Silence)),
        "Slice" => boxed(Slice::new(lp)),
        "Tile" => boxed(Tile::new(lp)),
        _ => return None,
    })
}

/// Small integer inputs (indices, labels) read on the host: Caffe's
/// `static_cast<int>` (truncation), checked against `[0, bound)`.
pub(crate) fn host_indices(values: &[f32], bound: usize, what: &str) -> Result<Vec<usize>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = v as i64;
            if v.is_finite() && k >= 0 && (k as usize) < bound {
                Ok(k as usize)
            } else {
                Err(layer_err!(
                    "{what} {i} is {v}, outside the valid range [0, {bound})"
                ))
            }
        })
        .collect()
}
