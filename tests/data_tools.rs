//! The data side against real Caffe's files in `../shared/golden/train/`:
//! LevelDB reading and writing, `convert_imageset`, `compute_image_mean`,
//! the ImageData and MemoryData layers, and the parallel decode pipeline.
use std::path::{Path, PathBuf};

use rcaffe::data::{create_writer, open_source, DbBackend, RecordSource};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/train")
}

fn data_dir() -> PathBuf {
    golden().join("data")
}

/// Every record of a database, in key order (one pass, no wrap).
fn all_records(backend: DbBackend, path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut src = open_source(backend, path).unwrap();
    let mut out = Vec::new();
    loop {
        out.push((src.key().to_vec(), src.value().to_vec()));
        if src.advance().unwrap() {
            return out;
        }
    }
}

#[test]
fn golden_leveldb_reads_back_the_same_datums_as_the_lmdb() {
    // Caffe wrote train_leveldb with its records still in the log file; the
    // folder is read-only without a LOCK: it must be read without writing.
    let ldb = data_dir().join("train_leveldb");
    let listing = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing(&ldb);
    let from_ldb = all_records(DbBackend::LevelDb, &ldb);
    let from_lmdb = all_records(DbBackend::Lmdb, &data_dir().join("train_lmdb"));
    assert_eq!(from_ldb.len(), 2000);
    assert!(from_ldb == from_lmdb, "LevelDB and LMDB records differ");
    assert_eq!(listing(&ldb), before, "nothing written next to the golden db");
}

#[test]
fn leveldb_written_by_us_reads_back_like_the_lmdb() {
    let tmp = tempfile::tempdir().unwrap();
    let recs = all_records(DbBackend::Lmdb, &data_dir().join("train_lmdb"));
    let path = tmp.path().join("ldb");
    let mut w = create_writer(DbBackend::LevelDb, &path).unwrap();
    for (i, (k, v)) in recs.iter().enumerate() {
        w.put(k, v);
        if (i + 1) % 1000 == 0 {
            w.commit().unwrap();
        }
    }
    w.finish().unwrap();
    assert!(all_records(DbBackend::LevelDb, &path) == recs);
}
