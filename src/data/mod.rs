//! Data input: record databases (`source`: LMDB in `lmdb`, LevelDB in
//! `leveldb`, writers for both behind `DbWriter`), Caffe's `Datum`
//! (`datum`), image files and OpenCV's bilinear resize (`image`,
//! `resize`), the `DataTransformer` (`transform`), parallel decode +
//! transform (`workers`), background batch preparation (`prefetch`),
//! Caffe's random streams (`rng`), stream positions saved with snapshots
//! (`position`), HDF5 files (`hdf5`, feature `hdf5`) and
//! MNIST conversion (`mnist`). The image tools are in `crate::tools`.
//!
//! Flow: `RecordSource` (cursor, wrap-around) → `ShardedReader` (replica
//! rank of world) → random draws in record order → `ItemLoader` workers
//! (`decode_datum` + `DataTransformer`) → `Prefetcher` → the Data layer's
//! tops.
pub mod datum;
#[cfg(feature = "hdf5")]
pub mod hdf5;
pub mod image;
pub mod jpeg;
pub mod leveldb;
pub mod lmdb;
pub mod mnist;
pub mod position;
pub mod prefetch;
pub mod resize;
pub mod rng;
pub mod source;
pub mod transform;
pub mod workers;

pub use datum::{decode_datum, decode_image, ColorMode, DecodedDatum, Pixels};
pub use leveldb::{LevelDbSource, LevelDbWriter};
pub use lmdb::{LmdbSource, LmdbWriter};
pub use mnist::convert_mnist_data;
pub use position::{ReaderPos, StreamPos};
pub use prefetch::{wait_stats, Batch, Prefetcher, WaitStats};
pub use source::{
    create_writer, log_opened, open_source, DbBackend, DbWriter, Record, RecordSource,
    ShardedReader,
};
pub use transform::{DataTransformer, Draws};
pub use workers::{assemble_batch, default_workers, Item, ItemJob, ItemLoader, WorkerPool};
