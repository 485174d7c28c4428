//! The data layer family: layers with no bottoms that read examples from
//! a source (see `crate::data`).
mod data_layer;
#[cfg(feature = "hdf5")]
mod hdf5_data;
#[cfg(feature = "hdf5")]
mod hdf5_output;
mod image_data;
mod memory_data;

use super::Layer;
use crate::error::Result;
use crate::layer_err;
use crate::proto::caffe::LayerParameter;

pub use data_layer::DataLayer;
#[cfg(feature = "hdf5")]
pub use hdf5_data::HDF5DataLayer;
#[cfg(feature = "hdf5")]
pub use hdf5_output::HDF5OutputLayer;
pub use image_data::ImageDataLayer;
pub use memory_data::{memory_feed, MemoryDataLayer, MemoryFeed};

/// Layer types of this family.
#[cfg(feature = "hdf5")]
pub const TYPES: &[&str] = &["Data", "HDF5Data", "HDF5Output", "ImageData", "MemoryData"];
#[cfg(not(feature = "hdf5"))]
pub const TYPES: &[&str] = &["Data", "ImageData", "MemoryData"];

fn boxed<L: Layer + 'static>(r: Result<L>) -> Result<Box<dyn Layer>> {
    r.map(|l| Box::new(l) as Box<dyn Layer>)
}

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    match ty {
        "Data" => Some(boxed(DataLayer::new(lp))),
        "ImageData" => Some(boxed(ImageDataLayer::new(lp))),
        "MemoryData" => Some(boxed(MemoryDataLayer::new(lp))),
        #[cfg(feature = "hdf5")]
        "HDF5Data" => Some(boxed(HDF5DataLayer::new(lp))),
        #[cfg(feature = "hdf5")]
        "HDF5Output" => Some(boxed(HDF5OutputLayer::new(lp))),
        #[cfg(not(feature = "hdf5"))]
        "HDF5Data" | "HDF5Output" => Some(Err(layer_err!(
            "{ty} needs HDF5 support, which this rcaffe was built without: rebuild with \
             `cargo build --features hdf5` (needs the system libhdf5, Debian: libhdf5-dev)"
        ))),
        // Known, and refused on purpose: say why instead of "unknown type".
        "WindowData" => Some(Err(layer_err!(
            "WindowData is not supported: it is R-CNN's detection-era layer, which samples \
             foreground/background windows from a window file and crops them with \
             OpenCV-specific warping and context padding; convert the windows to an image \
             list (ImageData) or a database (Data) instead"
        ))),
        _ => None,
    }
}
