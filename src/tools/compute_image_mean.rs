//! Caffe's `compute_image_mean INPUT_DB [OUTPUT_FILE]`: the element-wise
//! mean of every record of a database, as a `BlobProto` with the legacy
//! dims `1 × C × H × W`, computed in float exactly as Caffe does (running
//! float sums in record order, then one division by the count), so the
//! output equals Caffe's bit for bit. Encoded records are decoded as
//! stored (`DecodeDatumNative`).
use std::path::Path;

use crate::data::datum::{decode_datum, ColorMode, Pixels};
use crate::data::source::{key_string, log_opened, open_source, DbBackend};
use crate::error::{Error, Result};
use crate::log;
use crate::proto::binary::write_blob_proto;
use crate::proto::caffe::{BlobProto, Datum};

const SITE_DECODING: &str = "compute_image_mean.cpp:57";
const SITE_STARTING: &str = "compute_image_mean.cpp:70";
const SITE_PROCESSED: &str = "compute_image_mean.cpp:95";
const SITE_PROCESSED_LAST: &str = "compute_image_mean.cpp:101";
const SITE_WRITE: &str = "compute_image_mean.cpp:108";
const SITE_CHANNELS: &str = "compute_image_mean.cpp:114";
const SITE_MEAN_VALUE: &str = "compute_image_mean.cpp:119";

/// Compute the mean of the database at `db`; write it to `out` when given.
/// Logs Caffe's lines, including the per-channel means.
pub fn compute_image_mean(db: &Path, backend: DbBackend, out: Option<&Path>) -> Result<BlobProto> {
    let mut src = open_source(backend, db)?;
    log_opened(backend, db);
    let in_db = |key: &[u8], msg: String| {
        Error::Data(format!(
            "{}: record '{}': {msg}",
            db.display(),
            key_string(key)
        ))
    };
    let is_encoded = |v: &[u8]| {
        use prost::Message;
        Datum::decode(v).map(|d| d.encoded()).unwrap_or(false)
    };
    if is_encoded(src.value()) {
        log::info(SITE_DECODING, "Decoding Datum");
    }
    let first = decode_datum(src.value(), src.key(), ColorMode::Native)
        .map_err(|e| Error::Data(format!("{}: {e}", db.display())))?;
    let dims = [first.channels, first.height, first.width];
    let size = dims.iter().product::<usize>();
    let mut sum = vec![0f32; first.pixels.len()];
    log::info(SITE_STARTING, "Starting iteration");
    let mut count: usize = 0;
    loop {
        let d = decode_datum(src.value(), src.key(), ColorMode::Native)
            .map_err(|e| Error::Data(format!("{}: {e}", db.display())))?;
        if d.pixels.len() != size {
            return Err(in_db(
                src.key(),
                format!(
                    "Incorrect data field size {} (the first record has {}x{}x{} = {size})",
                    d.pixels.len(),
                    dims[0],
                    dims[1],
                    dims[2]
                ),
            ));
        }
        match &d.pixels {
            Pixels::U8(v) => sum.iter_mut().zip(v).for_each(|(s, &x)| *s += x as f32),
            Pixels::F32(v) => sum.iter_mut().zip(v).for_each(|(s, &x)| *s += x),
        }
        count += 1;
        if count.is_multiple_of(10000) {
            log::info(SITE_PROCESSED, &format!("Processed {count} files."));
        }
        if src.advance()? {
            break;
        }
    }
    if !count.is_multiple_of(10000) {
        log::info(SITE_PROCESSED_LAST, &format!("Processed {count} files."));
    }
    // Caffe divides the float sums by the int count.
    let mean: Vec<f32> = sum.iter().map(|&s| s / count as f32).collect();
    let blob = BlobProto {
        num: Some(1),
        channels: Some(dims[0] as i32),
        height: Some(dims[1] as i32),
        width: Some(dims[2] as i32),
        data: mean,
        ..Default::default()
    };
    if let Some(out) = out {
        log::info(SITE_WRITE, &format!("Write to {}", out.display()));
        write_blob_proto(out, &blob)?;
    }
    let dim = dims[1] * dims[2];
    log::info(SITE_CHANNELS, &format!("Number of channels: {}", dims[0]));
    for c in 0..dims[0] {
        let m: f32 = blob.data[c * dim..(c + 1) * dim].iter().sum();
        log::info(
            SITE_MEAN_VALUE,
            &format!("mean_value channel [{c}]: {}", log::g(m / dim as f32)),
        );
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::datum::encode_raw_datum;
    use crate::data::source::create_writer;

    #[test]
    fn mean_of_raw_records_and_size_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let mut w = create_writer(DbBackend::Lmdb, &db).unwrap();
        w.put(b"0", &encode_raw_datum(1, 1, 2, &[1, 2], 0));
        w.put(b"1", &encode_raw_datum(1, 1, 2, &[2, 5], 0));
        w.finish().unwrap();
        let out = dir.path().join("mean.binaryproto");
        let b = compute_image_mean(&db, DbBackend::Lmdb, Some(&out)).unwrap();
        assert_eq!(b.data, vec![1.5, 3.5]);
        assert_eq!((b.num(), b.channels(), b.height(), b.width()), (1, 1, 1, 2));
        assert_eq!(crate::proto::binary::read_blob_proto(&out).unwrap(), b);

        let bad = dir.path().join("bad");
        let mut w = create_writer(DbBackend::LevelDb, &bad).unwrap();
        w.put(b"a", &encode_raw_datum(1, 1, 2, &[1, 2], 0));
        w.put(b"b", &encode_raw_datum(1, 1, 3, &[1, 2, 3], 0));
        w.finish().unwrap();
        let e = compute_image_mean(&bad, DbBackend::LevelDb, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("record 'b'") && e.contains("Incorrect data field size 3"),
            "{e}"
        );
    }
}
