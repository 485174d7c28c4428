//! `rcaffe convert_mnist_data`: Caffe's tool of the same name — IDX image
//! and label files (plain or gzipped) into a new database of raw Datums.
//! The library logs Caffe's lines (items, rows/cols, processed).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rcaffe::data::{convert_mnist_data, DbBackend};

#[derive(Debug, Args)]
pub struct ConvertMnistArgs {
    /// The IDX3 image file (e.g. train-images-idx3-ubyte[.gz])
    pub images: PathBuf,
    /// The IDX1 label file (e.g. train-labels-idx1-ubyte[.gz])
    pub labels: PathBuf,
    /// The database to create (must not exist)
    pub db: PathBuf,
    /// The db backend: lmdb or leveldb
    #[arg(long, default_value = "lmdb")]
    pub backend: String,
}

pub fn run(a: &ConvertMnistArgs) -> anyhow::Result<ExitCode> {
    let backend: DbBackend = a.backend.parse()?;
    convert_mnist_data(&a.images, &a.labels, &a.db, backend)?;
    Ok(ExitCode::SUCCESS)
}
