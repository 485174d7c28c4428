//! `rcaffe compute_image_mean [FLAGS] INPUT_DB [OUTPUT_FILE]`: Caffe's tool
//! of the same name (see `rcaffe::tools::compute_image_mean`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rcaffe::data::DbBackend;
use rcaffe::tools::compute_image_mean;

#[derive(Debug, Args)]
pub struct ComputeImageMeanArgs {
    /// The database of Datums
    pub input_db: PathBuf,
    /// Where to write the mean as a BlobProto (.binaryproto); without it
    /// only the per-channel means are logged
    pub output_file: Option<PathBuf>,
    /// The backend {leveldb, lmdb} containing the images
    #[arg(long, default_value = "lmdb")]
    pub backend: String,
}

pub fn run(a: &ComputeImageMeanArgs) -> anyhow::Result<ExitCode> {
    let backend: DbBackend = a.backend.parse()?;
    compute_image_mean(&a.input_db, backend, a.output_file.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
