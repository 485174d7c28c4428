//! Caffe's `convert_mnist_data`: IDX image + label files (plain or gzip)
//! → a database of raw `Datum`s keyed `%08d`.
use std::io::Read;
use std::path::Path;

use super::datum::encode_raw_datum;
use super::source::{create_writer, log_opened, DbBackend};
use crate::error::{Error, Result};
use crate::log::{self, site};

const IMAGE_MAGIC: u32 = 2051;
const LABEL_MAGIC: u32 = 2049;
/// Records per write transaction, as in Caffe's tool.
const COMMIT_EVERY: usize = 1000;

/// The images of an IDX3 file, `count × rows × cols` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// The whole file, gunzipped when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Read an IDX3 image file (magic 2051).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let b = read_maybe_gz(path)?;
    if b.len() < 16 {
        return Err(Error::format(path, "too short for an IDX image header"));
    }
    if be_u32(&b, 0) != IMAGE_MAGIC {
        return Err(Error::format(
            path,
            format!(
                "incorrect image file magic {} (expected {IMAGE_MAGIC})",
                be_u32(&b, 0)
            ),
        ));
    }
    let [count, rows, cols] = [1, 2, 3].map(|i| be_u32(&b, i) as usize);
    let need = count
        .checked_mul(rows)
        .and_then(|n| n.checked_mul(cols))
        .filter(|&n| n <= b.len() - 16)
        .ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "truncated: {count} images of {rows}x{cols} need more than the {} bytes present",
                    b.len() - 16
                ),
            )
        })?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: b[16..16 + need].to_vec(),
    })
}

/// Read an IDX1 label file (magic 2049).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let b = read_maybe_gz(path)?;
    if b.len() < 8 {
        return Err(Error::format(path, "too short for an IDX label header"));
    }
    if be_u32(&b, 0) != LABEL_MAGIC {
        return Err(Error::format(
            path,
            format!(
                "incorrect label file magic {} (expected {LABEL_MAGIC})",
                be_u32(&b, 0)
            ),
        ));
    }
    let count = be_u32(&b, 1) as usize;
    if b.len() - 8 < count {
        return Err(Error::format(
            path,
            format!("truncated: {count} labels, {} bytes present", b.len() - 8),
        ));
    }
    Ok(b[8..8 + count].to_vec())
}

/// Convert MNIST-style IDX files into a new database at `db` (refused if it
/// exists). Record `i` has key `%08d` and a Datum with channels 1, the
/// file's height and width, the raw pixel bytes and the label, byte for
/// byte as Caffe's tool writes it. Returns the number of records.
pub fn convert_mnist_data(
    images: &Path,
    labels: &Path,
    db: &Path,
    backend: DbBackend,
) -> Result<usize> {
    let imgs = read_idx_images(images)?;
    let labs = read_idx_labels(labels)?;
    if imgs.count != labs.len() {
        return Err(Error::Data(format!(
            "{} holds {} images but {} holds {} labels",
            images.display(),
            imgs.count,
            labels.display(),
            labs.len()
        )));
    }
    let mut w = create_writer(backend, db)?;
    log_opened(backend, db);
    log::info(
        site::MNIST_TOTAL,
        &format!("A total of {} items.", imgs.count),
    );
    log::info(
        site::MNIST_ROWS_COLS,
        &format!("Rows: {} Cols: {}", imgs.rows, imgs.cols),
    );
    for (i, &label) in labs.iter().enumerate() {
        let value = encode_raw_datum(1, imgs.rows, imgs.cols, imgs.image(i), label as i32);
        w.put(format!("{i:08}").as_bytes(), &value);
        if (i + 1) % COMMIT_EVERY == 0 {
            w.commit()?;
        }
    }
    w.finish()?;
    log::info(
        site::MNIST_PROCESSED,
        &format!("Processed {} files.", imgs.count),
    );
    Ok(imgs.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::datum::{decode_datum, ColorMode, Pixels};
    use crate::data::lmdb::LmdbSource;
    use crate::data::source::RecordSource;
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(body);
        v
    }

    #[test]
    fn converts_plain_and_gzipped_idx() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        let lab = dir.path().join("lab.gz");
        std::fs::write(&img, idx(2051, &[3, 2, 2], &(0..12).collect::<Vec<u8>>())).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&idx(2049, &[3], &[7, 8, 9])).unwrap();
        std::fs::write(&lab, gz.finish().unwrap()).unwrap();

        let db = dir.path().join("db");
        assert_eq!(
            convert_mnist_data(&img, &lab, &db, DbBackend::Lmdb).unwrap(),
            3
        );
        let e = convert_mnist_data(&img, &lab, &db, DbBackend::Lmdb).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");

        let mut src = LmdbSource::open(&db).unwrap();
        for i in 0..3u8 {
            assert_eq!(src.key(), format!("{i:08}").as_bytes());
            let d = decode_datum(src.value(), src.key(), ColorMode::Native).unwrap();
            assert_eq!(
                (d.channels, d.height, d.width, d.label),
                (1, 2, 2, 7 + i as i32)
            );
            assert_eq!(d.pixels, Pixels::U8((4 * i..4 * i + 4).collect()));
            src.advance().unwrap();
        }
    }

    #[test]
    fn bad_inputs_are_refused_before_creating_the_db() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        let lab = dir.path().join("lab");
        let db = dir.path().join("db");
        std::fs::write(&img, idx(2051, &[2, 2, 2], &[0; 8])).unwrap();
        std::fs::write(&lab, idx(2049, &[3], &[1, 2, 3])).unwrap();
        let e = convert_mnist_data(&img, &lab, &db, DbBackend::Lmdb).unwrap_err();
        assert!(e.to_string().contains("2 images") && e.to_string().contains("3 labels"));
        std::fs::write(&img, idx(2049, &[2, 2, 2], &[0; 8])).unwrap();
        let e = convert_mnist_data(&img, &lab, &db, DbBackend::Lmdb).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
        std::fs::write(&img, idx(2051, &[3, 2, 2], &[0; 11])).unwrap();
        let e = convert_mnist_data(&img, &lab, &db, DbBackend::Lmdb).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(!db.exists());
    }
}
