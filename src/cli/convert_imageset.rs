//! `rcaffe convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME`: Caffe's
//! tool of the same name, with its flags and defaults (see
//! `rcaffe::tools::convert_imageset`).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rcaffe::data::DbBackend;
use rcaffe::tools::{convert_imageset, ConvertOptions};

#[derive(Debug, Args)]
pub struct ConvertImagesetArgs {
    /// The folder the listed paths are relative to (prefixed as a string:
    /// end it with '/')
    pub root_folder: String,
    /// The list file: one `path label` per line
    pub list_file: PathBuf,
    /// The database to create (must not exist)
    pub db_name: PathBuf,
    /// When this option is on, treat images as grayscale ones
    #[arg(long)]
    pub gray: bool,
    /// Randomly shuffle the order of images and their labels
    #[arg(long)]
    pub shuffle: bool,
    /// The backend {lmdb, leveldb} for storing the result
    #[arg(long, default_value = "lmdb")]
    pub backend: String,
    /// Width images are resized to
    #[arg(
        long = "resize_width",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub resize_width: i32,
    /// Height images are resized to
    #[arg(
        long = "resize_height",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub resize_height: i32,
    /// When this option is on, check that all the datum have the same size
    #[arg(long = "check_size")]
    pub check_size: bool,
    /// When this option is on, the encoded image will be save in datum
    #[arg(long)]
    pub encoded: bool,
    /// Optional: What type should we encode the image as ('png','jpg',...).
    #[arg(long = "encode_type", default_value = "")]
    pub encode_type: String,
    /// rcaffe only: seed of --shuffle (default: a random seed, as Caffe)
    #[arg(long = "shuffle_seed")]
    pub shuffle_seed: Option<u32>,
}

pub fn run(a: &ConvertImagesetArgs) -> anyhow::Result<ExitCode> {
    let backend: DbBackend = a.backend.parse()?;
    let seed = a.shuffle_seed.unwrap_or_else(|| {
        // Caffe's unseeded RNG: a different order on every run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u32) ^ std::process::id()
    });
    let o = ConvertOptions {
        gray: a.gray,
        shuffle: a.shuffle,
        seed,
        backend,
        resize_height: a.resize_height,
        resize_width: a.resize_width,
        check_size: a.check_size,
        encoded: a.encoded,
        encode_type: a.encode_type.clone(),
    };
    convert_imageset(&a.root_folder, &a.list_file, &a.db_name, &o)?;
    Ok(ExitCode::SUCCESS)
}
