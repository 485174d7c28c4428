//! The data side against real Caffe's files in `../shared/golden/train/`:
//! LevelDB reading and writing, `convert_imageset`, `compute_image_mean`,
//! the ImageData and MemoryData layers, and the parallel decode pipeline.
use std::path::{Path, PathBuf};

use std::sync::Arc;

use prost::Message;
use rcaffe::backend::cpu::CpuBackend;
use rcaffe::data::{create_writer, open_source, DbBackend};
use rcaffe::layers::data::memory_feed;
use rcaffe::layers::{create_layer, Ctx, Io, Layer};
use rcaffe::proto::binary::read_blob_proto;
use rcaffe::proto::binary::read_blob_proto_vector;
use rcaffe::proto::caffe::Datum;
use rcaffe::proto::caffe::{LayerParameter, Phase};
use rcaffe::tensor::Blob;
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

/// A layer with no bottoms set up over a two-blob arena (data, label).
struct Harness {
    layer: Box<dyn Layer>,
    cx: Ctx,
    blobs: Vec<Blob>,
}

impl Harness {
    fn new(lp: &LayerParameter, phase: Phase, seed: u64) -> rcaffe::Result<Self> {
        let layer = create_layer(lp)?;
        let mut h = Harness {
            layer,
            cx: Ctx::new(Arc::new(CpuBackend::new()), phase, seed),
            blobs: vec![Blob::default(); 2],
        };
        h.layer.arity().check(0, 2)?;
        let mut io = Io::new(&mut h.blobs, &[], &[0, 1], &[]);
        h.layer.setup(&mut h.cx, &mut io)?;
        h.layer.reshape(&mut h.cx, &mut io)?;
        Ok(h)
    }
    fn forward(&mut self) -> rcaffe::Result<()> {
        let mut io = Io::new(&mut self.blobs, &[], &[0, 1], &[]);
        self.layer.reshape(&mut self.cx, &mut io)?;
        self.layer.forward(&mut self.cx, &mut io)
    }
    fn shape(&self, i: usize) -> Vec<usize> {
        self.blobs[i].shape().to_vec()
    }
}

fn layer_from_text(text: &str) -> LayerParameter {
    let net = rcaffe::proto::text::parse_net_text(text, "test.prototxt").unwrap();
    net.layer[0].clone()
}

fn image_data_layer(list: &Path, root: &str, extra: &str, transform: &str) -> LayerParameter {
    layer_from_text(&format!(
        "layer {{ name: \"data\" type: \"ImageData\" top: \"data\" top: \"label\" \
         transform_param {{ {transform} }} \
         image_data_param {{ source: \"{}\" root_folder: \"{root}\" {extra} }} }}",
        list.display()
    ))
}

#[test]
fn golden_imagedata_resize32_matches_opencv_bit_for_bit() {
    let case = golden().join("data_layer/imagedata_resize32");
    let lp = image_data_layer(
        &data_dir().join("images/list.txt"),
        &images_root(),
        "batch_size: 16 new_height: 32 new_width: 32 is_color: true",
        "",
    );
    let mut h = Harness::new(&lp, Phase::Test, 1701).unwrap();
    h.forward().unwrap();
    let want = read_blob_proto_vector(&case.join("batch0.binaryproto")).unwrap();
    let dims: Vec<usize> = want.blobs[0]
        .shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|&d| d as usize)
        .collect();
    assert_eq!(h.shape(0), dims);
    assert_eq!(dims, vec![16, 3, 32, 32]);
    // Labels exactly.
    assert_eq!(h.blobs[1].data_vec(), want.blobs[1].data);
    let got = h.blobs[0].data_vec();
    let diffs: Vec<f32> = got
        .iter()
        .zip(&want.blobs[0].data)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let worst = diffs.iter().cloned().fold(0.0, f32::max);
    let exact = diffs.iter().filter(|&&d| d == 0.0).count();
    // OpenCV's INTER_LINEAR reproduced with its SSE2 vertical pass: every
    // value equal (the exact-rounding formula alone gets 91% and ±1).
    assert_eq!(exact, diffs.len(), "max diff {worst}");
}

#[test]
fn image_data_shuffles_skips_wraps_and_transforms() {
    let list = data_dir().join("images/list.txt");
    let labels: Vec<f32> = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9]
        .iter()
        .map(|&v| v as f32)
        .collect();
    // No shuffle, batch 5: three batches wrap around the 16 images.
    let lp = image_data_layer(
        &list,
        &images_root(),
        "batch_size: 5 is_color: false",
        "crop_size: 20 mirror: true scale: 0.5",
    );
    let mut h = Harness::new(&lp, Phase::Train, 3).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        h.forward().unwrap();
        assert_eq!(h.shape(0), vec![5, 1, 20, 20]);
        seen.extend(h.blobs[1].data_vec());
        assert!(h.blobs[0]
            .data_vec()
            .iter()
            .all(|&v| (0.0..=127.5).contains(&v)));
    }
    let want: Vec<f32> = (0..20).map(|i| labels[i % 16]).collect();
    assert_eq!(seen, want);

    // Shuffled: every pass is a permutation of the list, the same for the
    // same seed, different for another.
    let run = |seed: u64| {
        let lp = image_data_layer(&list, &images_root(), "batch_size: 8 shuffle: true", "");
        let mut h = Harness::new(&lp, Phase::Train, seed).unwrap();
        let mut out = Vec::new();
        for _ in 0..4 {
            h.forward().unwrap();
            out.extend(h.blobs[1].data_vec());
        }
        out
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    for pass in a.chunks(16) {
        let mut p = pass.to_vec();
        p.sort_by(f32::total_cmp);
        let mut l = labels.clone();
        l.sort_by(f32::total_cmp);
        assert_eq!(p, l);
    }

    // rand_skip starts inside the list.
    let lp = image_data_layer(&list, &images_root(), "batch_size: 16 rand_skip: 10", "");
    let mut h = Harness::new(&lp, Phase::Test, 1701).unwrap();
    h.forward().unwrap();
    let got = h.blobs[1].data_vec();
    let k = (0..16)
        .find(|&k| (0..16).all(|i| got[i] == labels[(k + i) % 16]))
        .expect("a rotation");
    assert!(k < 10);
}

#[test]
fn image_data_errors_name_the_line_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, "00.jpg 1\n01.png 2\nmissing.png 3\n").unwrap();
    let lp = image_data_layer(&list, &images_root(), "batch_size: 3", "");
    let mut h = Harness::new(&lp, Phase::Test, 1).unwrap();
    let e = h.forward().unwrap_err().to_string();
    assert!(e.contains("list.txt:3") && e.contains("missing.png"), "{e}");
    // Different sizes in one batch need a crop.
    std::fs::write(tmp.path().join("small.png"), {
        let mut v = Vec::new();
        image::RgbImage::new(4, 4)
            .write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
            .unwrap();
        v
    })
    .unwrap();
    std::fs::write(
        &list,
        format!(
            "{}00.jpg 1\n{}/small.png 2\n",
            images_root(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let lp = image_data_layer(&list, "", "batch_size: 2", "");
    let mut h = Harness::new(&lp, Phase::Test, 1).unwrap();
    let e = h.forward().unwrap_err().to_string();
    assert!(e.contains("small.png") && e.contains("crop_size"), "{e}");
    std::fs::write(&list, "").unwrap();
    assert!(Harness::new(&lp, Phase::Test, 1)
        .err()
        .unwrap()
        .to_string()
        .contains("empty"));
    let lp = image_data_layer(&list, "", "new_height: 3", "");
    assert!(create_layer(&lp)
        .err()
        .unwrap()
        .to_string()
        .contains("together"));
}

#[test]
fn memory_data_serves_reset_arrays_in_batches() {
    let lp = layer_from_text(
        "layer { name: \"mem_test_a\" type: \"MemoryData\" top: \"data\" top: \"label\" \
         memory_data_param { batch_size: 2 channels: 1 height: 1 width: 3 } }",
    );
    let mut h = Harness::new(&lp, Phase::Train, 1).unwrap();
    assert_eq!(h.shape(0), vec![2, 1, 1, 3]);
    let e = h.forward().unwrap_err().to_string();
    assert!(e.contains("reset"), "{e}");
    let feed = memory_feed("mem_test_a");
    assert_eq!(feed.dims(), Some([2, 1, 1, 3]));
    assert!(
        feed.reset(vec![0.0; 9], vec![0.0; 3]).is_err(),
        "3 items, batch 2"
    );
    assert!(
        feed.reset(vec![0.0; 8], vec![0.0; 4]).is_err(),
        "8 values for 4x3"
    );
    feed.reset(
        (0..12).map(|v| v as f32).collect(),
        vec![10.0, 11.0, 12.0, 13.0],
    )
    .unwrap();
    for (b, first) in [(0, 0.0), (1, 6.0), (0, 0.0)] {
        h.forward().unwrap();
        assert_eq!(h.blobs[0].data_vec()[0], first);
        assert_eq!(
            h.blobs[1].data_vec(),
            vec![10.0 + 2.0 * b as f32, 11.0 + 2.0 * b as f32]
        );
    }
    feed.set_batch_size(4).unwrap();
    h.forward().unwrap();
    assert_eq!(h.shape(0), vec![4, 1, 1, 3]);

    // add_datums applies the layer's transform (scale here).
    let lp = layer_from_text(
        "layer { name: \"mem_test_b\" type: \"MemoryData\" top: \"data\" top: \"label\" \
         transform_param { scale: 0.5 } \
         memory_data_param { batch_size: 1 channels: 1 height: 1 width: 2 } }",
    );
    let mut h = Harness::new(&lp, Phase::Test, 1).unwrap();
    let d = rcaffe::data::DecodedDatum {
        channels: 1,
        height: 1,
        width: 2,
        pixels: rcaffe::data::Pixels::U8(vec![4, 8]),
        label: 7,
    };
    memory_feed("mem_test_b").add_datums(&[d]).unwrap();
    h.forward().unwrap();
    assert_eq!(h.blobs[0].data_vec(), vec![2.0, 4.0]);
    assert_eq!(h.blobs[1].data_vec(), vec![7.0]);
}

#[test]
fn window_data_is_refused_with_a_reason() {
    let lp =
        layer_from_text("layer { name: \"w\" type: \"WindowData\" top: \"data\" top: \"label\" }");
    let e = create_layer(&lp).err().unwrap().to_string();
    assert!(
        e.contains("WindowData is not supported") && e.contains("window file"),
        "{e}"
    );
}

#[test]
fn data_layer_reads_leveldb_by_default() {
    // No backend: LEVELDB, Caffe's default.
    let lp = layer_from_text(&format!(
        "layer {{ name: \"d\" type: \"Data\" top: \"data\" top: \"label\" \
         data_param {{ source: \"{}\" batch_size: 16 }} }}",
        data_dir().join("train_leveldb").display()
    ));
    let mut h = Harness::new(&lp, Phase::Test, 1701).unwrap();
    h.forward().unwrap();
    assert_eq!(h.shape(0), vec![16, 1, 28, 28]);
    let first = rcaffe::data::decode_datum(
        &all_records(DbBackend::Lmdb, &data_dir().join("train_lmdb"))[0].1,
        b"k",
        rcaffe::data::ColorMode::Native,
    )
    .unwrap();
    assert_eq!(h.blobs[1].data_vec()[0], first.label as f32);
    assert_eq!(
        h.blobs[0].data_vec()[..784],
        (0..784).map(|i| first.pixels.get(i)).collect::<Vec<_>>()[..]
    );
}

/// Throughput of decode + transform (256×256 JPEG Datums, crop 227 and
/// mirror, TRAIN) with 1 and 2 workers. Run with
/// `cargo test --release --test data_tools throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_decode_transform_256_jpeg() {
    use rcaffe::data::{decode_datum, ColorMode, DataTransformer, ItemJob, ItemLoader, Record};
    use rcaffe::proto::caffe::TransformationParameter;
    let records: Vec<Record> = (0..64u32)
        .map(|k| {
            let img = image::RgbImage::from_fn(256, 256, |x, y| {
                let v = |s: u32| ((x * s + y * (s + 3) + k * 17 + (x * y) % 29) % 256) as u8;
                image::Rgb([v(1), v(2), v(3)])
            });
            let mut jpg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 90)
                .encode_image(&img)
                .unwrap();
            Record {
                key: format!("{k:08}").into_bytes(),
                value: Datum {
                    data: Some(jpg),
                    label: Some(k as i32),
                    encoded: Some(true),
                    ..Default::default()
                }
                .encode_to_vec(),
            }
        })
        .collect();
    let tp = TransformationParameter {
        crop_size: Some(227),
        mirror: Some(true),
        ..Default::default()
    };
    let n = 1024;
    for workers in [1, 2] {
        let mut t = DataTransformer::new(&tp, Phase::Train, 1).unwrap();
        let loader = ItemLoader::new(workers, "bench", t.clone(), |r: Record| {
            decode_datum(&r.value, &r.key, ColorMode::Native)
        })
        .unwrap();
        let start = std::time::Instant::now();
        for b in 0..n / 64 {
            let jobs = records
                .iter()
                .map(|r| ItemJob {
                    src: r.clone(),
                    draws: t.draw(),
                    name: format!("batch {b}"),
                })
                .collect();
            for item in loader.run(jobs) {
                assert_eq!(item.unwrap().shape, [3, 227, 227]);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "decode+transform 256x256 JPEG, crop 227 + mirror: {workers} worker(s): {:.0} images/s",
            n as f64 / secs
        );
    }
}

/// LeNet training (the golden SGD net, batch 64, on the golden LMDB) never
/// waits on its Data layer: the time `forward` spends blocked on the
/// prefetch queue, per iteration, after the first. Run alone with
/// `cargo test --test data_tools lenet_never_waits -- --ignored --nocapture`
/// (the counter is process-wide).
#[test]
#[ignore]
fn lenet_never_waits_on_data() {
    use rcaffe::data::wait_stats;
    use rcaffe::solver::Solver;
    let dir = golden().join("sgd");
    let mut sp = rcaffe::proto::text::read_solver_text(&dir.join("solver.prototxt")).unwrap();
    let mut np = rcaffe::proto::text::read_net_text(&dir.join("net.prototxt")).unwrap();
    for l in &mut np.layer {
        if let Some(dp) = l.data_param.as_mut() {
            dp.source = Some(dir.join(dp.source()).display().to_string());
        }
    }
    sp.net = None;
    sp.net_param = Some(np);
    sp.test_iter.clear();
    sp.test_interval = Some(0);
    sp.snapshot = Some(0);
    sp.display = Some(0);
    let mut s = Solver::new(sp, Arc::new(CpuBackend::new())).unwrap();
    s.step(1).unwrap();
    let before = wait_stats();
    let t = std::time::Instant::now();
    let iters = 49;
    s.step(iters).unwrap();
    let total = t.elapsed();
    let after = wait_stats();
    let waited = after.waited - before.waited;
    eprintln!(
        "LeNet: {iters} iterations in {:.2} s ({:.1} ms/iter); blocked on the data queue \
         {:.3} ms/iter ({} batches)",
        total.as_secs_f64(),
        total.as_secs_f64() * 1e3 / iters as f64,
        waited.as_secs_f64() * 1e3 / iters as f64,
        after.batches - before.batches
    );
    assert!(waited.as_secs_f64() < 0.01 * total.as_secs_f64());
}

#[cfg(feature = "hdf5")]
mod hdf5_layers {
    use super::*;
    use rcaffe::solver::Solver;

    /// A 2-class problem of 4 features (the hdf5_classification example's
    /// shape): label 1 when x0 + x1 - x2 > 0. Written as `rows` rows split
    /// over `files` HDF5 files; returns the list file.
    fn write_h5(dir: &Path, stem: &str, rows: usize, files: usize, seed: u32) -> PathBuf {
        let mut g = rcaffe::data::rng::Mt19937::new(seed);
        let mut list = String::new();
        for f in 0..files {
            let n = rows / files;
            let mut data = Vec::with_capacity(n * 4);
            let mut label = Vec::with_capacity(n);
            for _ in 0..n {
                let x: Vec<f32> = (0..4)
                    .map(|_| g.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0)
                    .collect();
                label.push(if x[0] + x[1] - x[2] > 0.0 { 1.0 } else { 0.0 });
                data.extend(x);
            }
            let path = dir.join(format!("{stem}{f}.h5"));
            let file = hdf5::File::create(&path).unwrap();
            // Features as float64, as h5py writes numpy's default: read as float.
            let d64: Vec<f64> = data.iter().map(|&v| v as f64).collect();
            file.new_dataset::<f64>()
                .shape([n, 4])
                .create("data")
                .unwrap()
                .write_raw(&d64)
                .unwrap();
            file.new_dataset::<f32>()
                .shape([n])
                .create("label")
                .unwrap()
                .write_raw(&label)
                .unwrap();
            list.push_str(&format!("{}\n", path.display()));
        }
        let l = dir.join(format!("{stem}.txt"));
        std::fs::write(&l, list).unwrap();
        l
    }

    fn zoo_net(file: &str, train: &Path, test: &Path) -> rcaffe::proto::caffe::NetParameter {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/zoo/bvlc_hdf5_classification");
        let mut np = rcaffe::proto::text::read_net_text(&dir.join(file)).unwrap();
        for l in &mut np.layer {
            if let Some(p) = l.hdf5_data_param.as_mut() {
                let test_phase = p.source().contains("test");
                p.source = Some(if test_phase { test } else { train }.display().to_string());
            }
        }
        np
    }

    fn train_and_score(net: rcaffe::proto::caffe::NetParameter, iters: i32) -> f32 {
        let mut sp = rcaffe::proto::text::parse_solver_text(
            "test_iter: 25 test_interval: 100000 base_lr: 0.01 momentum: 0.9 \
             weight_decay: 0.0005 lr_policy: \"fixed\" display: 0 max_iter: 1000 \
             snapshot: 0 random_seed: 1 solver_mode: CPU",
            "solver.prototxt",
        )
        .unwrap();
        sp.net_param = Some(net);
        let mut s = Solver::new(sp, Arc::new(CpuBackend::new())).unwrap();
        s.step(iters).unwrap();
        s.test(0).unwrap();
        let scores = s.test_scores();
        let last = scores.last().unwrap();
        last.iter().find(|t| t.name == "accuracy").unwrap().value
    }

    #[test]
    fn hdf5_classification_nets_learn_from_hdf5_files() {
        let tmp = tempfile::tempdir().unwrap();
        let train = write_h5(tmp.path(), "train", 1000, 2, 1);
        let test = write_h5(tmp.path(), "test", 250, 1, 2);
        let acc = train_and_score(zoo_net("train_val.prototxt", &train, &test), 600);
        eprintln!("logistic regression accuracy {acc}");
        assert!(acc > 0.9, "accuracy {acc}");
        let acc = train_and_score(zoo_net("nonlinear_train_val.prototxt", &train, &test), 600);
        eprintln!("nonlinear net accuracy {acc}");
        assert!(acc > 0.9, "accuracy {acc}");
    }

    #[test]
    fn hdf5_data_shuffles_files_and_rows_and_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let list = write_h5(tmp.path(), "s", 30, 3, 3);
        let lp = layer_from_text(&format!(
            "layer {{ name: \"h\" type: \"HDF5Data\" top: \"data\" top: \"label\" \
             hdf5_data_param {{ source: \"{}\" batch_size: 7 shuffle: true }} }}",
            list.display()
        ));
        let mut h = Harness::new(&lp, Phase::Train, 1).unwrap();
        assert_eq!((h.shape(0), h.shape(1)), (vec![7, 4], vec![7]));
        // Every pass (30 rows) visits each row once.
        let mut rows = Vec::new();
        for _ in 0..30 {
            h.forward().unwrap();
            rows.extend(
                h.blobs[0]
                    .data_vec()
                    .chunks(4)
                    .map(|r| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>()),
            );
        }
        for pass in rows.chunks(30) {
            let mut p = pass.to_vec();
            p.sort();
            p.dedup();
            assert_eq!(p.len(), 30);
        }
        assert_ne!(rows[..30], rows[30..60], "reshuffled each pass");

        std::fs::write(
            &list,
            format!("{}\n", tmp.path().join("missing.h5").display()),
        )
        .unwrap();
        let e = Harness::new(&lp, Phase::Train, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing.h5"), "{e}");
        let lp = layer_from_text(&format!(
            "layer {{ name: \"h\" type: \"HDF5Data\" top: \"data\" top: \"nolabel\" \
             hdf5_data_param {{ source: \"{}\" batch_size: 7 }} }}",
            write_h5(tmp.path(), "t", 10, 1, 4).display()
        ));
        let e = Harness::new(&lp, Phase::Train, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no dataset 'nolabel'"), "{e}");
    }

    #[test]
    fn hdf5_output_appends_every_forward() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.h5");
        let lp = layer_from_text(&format!(
            "layer {{ name: \"o\" type: \"HDF5Output\" bottom: \"data\" bottom: \"label\" \
             hdf5_output_param {{ file_name: \"{}\" }} }}",
            out.display()
        ));
        let mut layer = create_layer(&lp).unwrap();
        let mut cx = Ctx::new(Arc::new(CpuBackend::new()), Phase::Test, 1);
        let mut blobs = vec![Blob::default(), Blob::default()];
        blobs[0].reshape(&[2, 3]).unwrap();
        blobs[1].reshape(&[2]).unwrap();
        {
            let mut io = Io::new(&mut blobs, &[0, 1], &[], &[]);
            layer.setup(&mut cx, &mut io).unwrap();
        }
        for k in 0..2 {
            blobs[0].set_data(&[k as f32; 6]).unwrap();
            blobs[1].set_data(&[10.0 + k as f32; 2]).unwrap();
            let mut io = Io::new(&mut blobs, &[0, 1], &[], &[]);
            layer.reshape(&mut cx, &mut io).unwrap();
            layer.forward(&mut cx, &mut io).unwrap();
        }
        drop(layer);
        let f = hdf5::File::open(&out).unwrap();
        let d = f.dataset("data").unwrap();
        assert_eq!(d.shape(), vec![4, 3, 1, 1]);
        assert_eq!(
            d.read_raw::<f32>().unwrap(),
            [[0.0f32; 6], [1.0; 6]].concat()
        );
        let l = f.dataset("label").unwrap();
        assert_eq!(l.shape(), vec![4, 1, 1, 1]);
        assert_eq!(l.read_raw::<f32>().unwrap(), vec![10.0, 10.0, 11.0, 11.0]);
    }
}
