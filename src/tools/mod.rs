//! Caffe's data tools as library calls (the CLI wraps them):
//! `convert_imageset` (a list of image files → a database of `Datum`s) and
//! `compute_image_mean` (a database → its mean image as a `BlobProto`).
pub mod compute_image_mean;
pub mod convert_imageset;

pub use compute_image_mean::compute_image_mean;
pub use convert_imageset::{convert_imageset, parse_list_file, ConvertOptions, ListEntry};
