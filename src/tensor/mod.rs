//! N-d arrays: shapes and `Blob` (data + diff), convertible to and from
//! Caffe's `BlobProto`.
pub mod blob;
pub mod shape;

pub use blob::Blob;
pub use shape::{canonical_axis, count, count_range, shape_string, MAX_BLOB_AXES};
