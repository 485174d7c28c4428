//! `rcaffe convert_mnist_data`: Caffe's tool of the same name — IDX image
//! and label files (plain or gzipped) into a database of raw Datums.
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rcaffe::data::{convert_mnist_data, DbBackend};
use rcaffe::log::{info, site};

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

/// Items, rows and columns from an IDX3 header (for Caffe's log lines).
fn idx3_header(path: &Path) -> anyhow::Result<(u32, u32, u32)> {
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut peek = std::io::BufReader::new(f);
    let gz = peek.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(peek))
    } else {
        Box::new(peek)
    };
    let mut h = [0u8; 16];
    reader
        .read_exact(&mut h)
        .with_context(|| format!("{}: too short for an IDX3 header", path.display()))?;
    let word = |i: usize| u32::from_be_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]]);
    Ok((word(1), word(2), word(3)))
}

pub fn run(a: &ConvertMnistArgs) -> anyhow::Result<ExitCode> {
    let backend: DbBackend = a.backend.parse()?;
    // The library validates the files fully; the header is read here only
    // for Caffe's log lines, and a bad file is reported by the conversion.
    if let Ok((items, rows, cols)) = idx3_header(&a.images) {
        info(site::MNIST_TOTAL, &format!("A total of {items} items."));
        info(site::MNIST_ROWS_COLS, &format!("Rows: {rows} Cols: {cols}"));
    }
    let n = convert_mnist_data(&a.images, &a.labels, &a.db, backend)?;
    info(site::MNIST_PROCESSED, &format!("Processed {n} files."));
    Ok(ExitCode::SUCCESS)
}
