//! The data side against real Caffe's files in `../shared/golden/train/`:
//! LevelDB reading and writing, `convert_imageset`, `compute_image_mean`,
//! the ImageData and MemoryData layers, and the parallel decode pipeline.
use std::path::{Path, PathBuf};

use prost::Message;
use rcaffe::data::{create_writer, open_source, DbBackend};
use rcaffe::proto::binary::read_blob_proto;
use rcaffe::proto::caffe::Datum;
use rcaffe::tools::{compute_image_mean, convert_imageset, ConvertOptions};

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
    assert_eq!(
        listing(&ldb),
        before,
        "nothing written next to the golden db"
    );
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

fn images_root() -> String {
    format!("{}/", data_dir().join("images").display())
}

#[test]
fn convert_imageset_encoded_reproduces_caffes_encoded_lmdb() {
    let tmp = tempfile::tempdir().unwrap();
    let theirs = all_records(DbBackend::Lmdb, &data_dir().join("encoded_lmdb"));
    let list = data_dir().join("images/list.txt");
    let o = ConvertOptions {
        encoded: true,
        ..Default::default()
    };
    for backend in [DbBackend::Lmdb, DbBackend::LevelDb] {
        let db = tmp.path().join(backend.name());
        let o = ConvertOptions {
            backend,
            ..o.clone()
        };
        assert_eq!(
            convert_imageset(&images_root(), &list, &db, &o).unwrap(),
            16
        );
        let ours = all_records(backend, &db);
        let keys: Vec<String> = ours
            .iter()
            .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
            .collect();
        assert_eq!(keys[0], "00000000_00.jpg");
        assert_eq!(keys[15], "00000015_15.png");
        // Same keys, same Datum bytes (the files themselves, label, encoded).
        assert!(
            ours == theirs,
            "{}: records differ from Caffe's",
            backend.name()
        );
    }
}

#[test]
fn convert_imageset_raw_resized_gray_and_shuffled() {
    let tmp = tempfile::tempdir().unwrap();
    let list = data_dir().join("images/list.txt");
    let o = ConvertOptions {
        gray: true,
        resize_height: 13,
        resize_width: 15,
        check_size: true,
        shuffle: true,
        seed: 5,
        ..Default::default()
    };
    let db = tmp.path().join("raw");
    convert_imageset(&images_root(), &list, &db, &o).unwrap();
    let recs = all_records(DbBackend::Lmdb, &db);
    assert_eq!(recs.len(), 16);
    let names: Vec<String> = recs
        .iter()
        .map(|(k, _)| String::from_utf8(k[9..].to_vec()).unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_ne!(names, sorted, "shuffled");
    assert_eq!(sorted[0], "00.jpg");
    for (_, v) in &recs {
        let d = Datum::decode(v.as_slice()).unwrap();
        // CVMatToDatum sets encoded = false explicitly.
        assert_eq!(
            (d.channels, d.height, d.width),
            (Some(1), Some(13), Some(15))
        );
        assert_eq!(d.encoded, Some(false));
        assert_eq!(d.data().len(), 13 * 15);
    }
    // The same seed gives the same order.
    let db2 = tmp.path().join("raw2");
    convert_imageset(&images_root(), &list, &db2, &o).unwrap();
    assert!(all_records(DbBackend::Lmdb, &db2) == recs);
}

#[test]
fn convert_imageset_stops_on_a_missing_file_and_leaves_no_db() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, "00.jpg 1\n01.png 2\nnope.png 3\n").unwrap();
    let db = tmp.path().join("db");
    let e = convert_imageset(&images_root(), &list, &db, &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("list.txt:3:") && e.contains("nope.png"), "{e}");
    assert!(!db.exists(), "no half-written database");
}

#[test]
fn compute_image_mean_equals_caffes_mean_binaryproto() {
    let want = read_blob_proto(&data_dir().join("mean.binaryproto")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mean.binaryproto");
    let ours =
        compute_image_mean(&data_dir().join("train_lmdb"), DbBackend::Lmdb, Some(&out)).unwrap();
    assert_eq!(
        (ours.num, ours.channels, ours.height, ours.width),
        (want.num, want.channels, want.height, want.width)
    );
    // Float sums in Caffe's order: bit for bit, and so is the file.
    assert_eq!(ours.data, want.data);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(data_dir().join("mean.binaryproto")).unwrap()
    );
    // The LevelDB copy of the same records gives the same mean.
    let ldb =
        compute_image_mean(&data_dir().join("train_leveldb"), DbBackend::LevelDb, None).unwrap();
    assert_eq!(ldb.data, want.data);
}

#[test]
fn cli_tools_run_with_gflags_spellings() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("enc_ldb");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["convert_imageset", "-encoded", "--backend=leveldb"])
        .arg(images_root())
        .arg(data_dir().join("images/list.txt"))
        .arg(&db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("A total of 16 images.") && err.contains("Processed 16 files."),
        "{err}"
    );
    assert!(
        err.contains(&format!("Opened leveldb {}", db.display())),
        "{err}"
    );
    let mean = tmp.path().join("m.binaryproto");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["compute_image_mean", "-backend", "leveldb"])
        .arg(&db)
        .arg(&mean)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for want in [
        "Decoding Datum",
        "Starting iteration",
        "Processed 16 files.",
        "Number of channels: 3",
        "mean_value channel [2]: ",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    let m = read_blob_proto(&mean).unwrap();
    assert_eq!(
        (m.channels, m.height, m.width),
        (Some(3), Some(26), Some(30))
    );
    // Caffe's log for the golden mean.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["compute_image_mean"])
        .arg(data_dir().join("train_lmdb"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("compute_image_mean.cpp:119] mean_value channel [0]: 72.4043"),
        "{err}"
    );
}
