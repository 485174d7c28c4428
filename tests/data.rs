//! The Data layer and its pieces against real Caffe output in
//! `../shared/golden/train/data*`: LMDB reading, MNIST conversion
//! byte-for-byte, transformer batches, prefetch errors and wrap-around.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::data::mnist::{read_idx_images, read_idx_labels};
use rcaffe::data::{
    convert_mnist_data, decode_datum, ColorMode, DbBackend, LmdbSource, LmdbWriter, Pixels,
    RecordSource,
};
use rcaffe::layers::{create_layer, Ctx, Io, Layer};
use rcaffe::proto::binary::read_blob_proto_vector;
use rcaffe::proto::caffe::{LayerParameter, Phase};
use rcaffe::tensor::Blob;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/train")
}

fn data_dir() -> PathBuf {
    golden().join("data")
}

/// Every (key, value) of an LMDB, in key order, once.
fn all_records(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut src = LmdbSource::open(path).unwrap();
    let mut out = Vec::new();
    loop {
        out.push((src.key().to_vec(), src.value().to_vec()));
        if src.advance().unwrap() {
            return out;
        }
    }
}

#[test]
fn golden_test_lmdb_matches_idx() {
    let recs = all_records(&data_dir().join("test_lmdb"));
    assert_eq!(recs.len(), 500);
    let idx = data_dir().join("idx");
    let images = read_idx_images(&idx.join("t10k-500-images-idx3-ubyte.gz")).unwrap();
    let labels = read_idx_labels(&idx.join("t10k-500-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (500, 28, 28));
    for (i, (k, v)) in recs.iter().enumerate() {
        assert_eq!(k, format!("{i:08}").as_bytes());
        if i % 97 == 0 {
            let d = decode_datum(v, k, ColorMode::Native).unwrap();
            assert_eq!((d.channels, d.height, d.width), (1, 28, 28));
            assert_eq!(d.label, labels[i] as i32);
            assert_eq!(d.pixels, Pixels::U8(images.image(i).to_vec()));
        }
    }
}

#[test]
fn convert_mnist_data_reproduces_caffe_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = data_dir().join("idx");
    for (prefix, n, golden_db) in [
        ("train-2000", 2000, "train_lmdb"),
        ("t10k-500", 500, "test_lmdb"),
    ] {
        let db = tmp.path().join(golden_db);
        let count = convert_mnist_data(
            &idx.join(format!("{prefix}-images-idx3-ubyte.gz")),
            &idx.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            &db,
            DbBackend::Lmdb,
        )
        .unwrap();
        assert_eq!(count, n);
        let ours = all_records(&db);
        let theirs = all_records(&data_dir().join(golden_db));
        assert_eq!(ours.len(), n);
        assert!(ours == theirs, "{golden_db}: records differ from Caffe's");
    }
    // Caffe refuses to overwrite an existing database.
    let e = convert_mnist_data(
        &idx.join("t10k-500-images-idx3-ubyte.gz"),
        &idx.join("t10k-500-labels-idx1-ubyte.gz"),
        &tmp.path().join("test_lmdb"),
        DbBackend::Lmdb,
    )
    .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

fn cpu_ctx(phase: Phase, seed: u64) -> Ctx {
    Ctx::new(Arc::new(CpuBackend::new()), phase, seed)
}

/// The single layer of a golden data-layer net, with its relative paths
/// resolved against the net's folder (Caffe resolves them against the
/// working directory, which was that folder).
fn golden_layer(case: &str) -> LayerParameter {
    let dir = golden().join("data_layer").join(case);
    let net = rcaffe::proto::text::read_net_text(&dir.join("net.prototxt")).unwrap();
    let mut lp = net.layer[0].clone();
    let resolve = |p: &str| dir.join(p).display().to_string();
    let dp = lp.data_param.as_mut().unwrap();
    dp.source = Some(resolve(dp.source()));
    if let Some(tp) = lp.transform_param.as_mut() {
        if let Some(m) = tp.mean_file.as_mut() {
            *m = resolve(m);
        }
    }
    lp
}

/// A layer set up over a two-blob arena (data, label) or one (data).
struct Harness {
    layer: Box<dyn Layer>,
    cx: Ctx,
    blobs: Vec<Blob>,
    tops: Vec<usize>,
}

impl Harness {
    fn new(lp: &LayerParameter, cx: Ctx, n_tops: usize) -> rcaffe::Result<Self> {
        let layer = create_layer(lp)?;
        let mut h = Harness {
            layer,
            cx,
            blobs: vec![Blob::default(); n_tops],
            tops: (0..n_tops).collect(),
        };
        let mut io = Io::new(&mut h.blobs, &[], &h.tops, &[]);
        h.layer.arity().check(0, n_tops)?;
        let params = h.layer.setup(&mut h.cx, &mut io)?;
        assert!(params.is_empty());
        h.layer.reshape(&mut h.cx, &mut io)?;
        Ok(h)
    }
    fn forward(&mut self) -> rcaffe::Result<()> {
        let mut io = Io::new(&mut self.blobs, &[], &self.tops, &[]);
        self.layer.reshape(&mut self.cx, &mut io)?;
        self.layer.forward(&mut self.cx, &mut io)
    }
    fn labels(&self) -> Vec<f32> {
        self.blobs[1].data_vec()
    }
}

fn check_golden_batches(case: &str) {
    let lp = golden_layer(case);
    let mut h = Harness::new(&lp, cpu_ctx(Phase::Test, 1701), 2).unwrap();
    let dir = golden().join("data_layer").join(case);
    for b in 0..2 {
        h.forward().unwrap();
        let want = read_blob_proto_vector(&dir.join(format!("batch{b}.binaryproto"))).unwrap();
        assert_eq!(want.blobs.len(), 2);
        for (top, proto) in want.blobs.iter().enumerate() {
            let blob = &h.blobs[top];
            let shape: Vec<i64> = blob.shape().iter().map(|&d| d as i64).collect();
            assert_eq!(
                shape,
                proto.shape.as_ref().unwrap().dim,
                "{case} batch{b} top {top}"
            );
            let got = blob.data_vec();
            let worst = got
                .iter()
                .zip(&proto.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{case} batch{b} top {top}: max diff {worst}");
        }
    }
}

#[test]
fn golden_mean_file_crop24_batches() {
    check_golden_batches("mean_file_crop24");
}

#[test]
fn golden_mean_value_mirror_batches_follow_caffes_rng() {
    // Exact only if the per-image mirror draws are Caffe's (mt19937 seeded
    // like Caffe's transformer under random_seed 1701).
    check_golden_batches("mean_value_mirror");
}

#[test]
fn golden_encoded_batch() {
    let lp = golden_layer("encoded");
    let mut h = Harness::new(&lp, cpu_ctx(Phase::Test, 1701), 2).unwrap();
    h.forward().unwrap();
    let want =
        read_blob_proto_vector(&golden().join("data_layer/encoded/batch0.binaryproto")).unwrap();
    assert_eq!(
        want.blobs[0].shape.as_ref().unwrap().dim,
        vec![16, 3, 26, 30]
    );
    let dims = &want.blobs[0].shape.as_ref().unwrap().dim;
    let shape: Vec<i64> = h.blobs[0].shape().iter().map(|&d| d as i64).collect();
    assert_eq!(&shape, dims);
    assert_eq!(h.labels(), want.blobs[1].data);
    // JPEG (even records) through our libjpeg-exact decoder and PNG (odd)
    // both match OpenCV's decode exactly.
    assert!(h.blobs[0].data_vec() == want.blobs[0].data);
}

/// A small LMDB of `n` 1×2×2 records labelled 0..n, with a corrupt value at
/// record `bad` if given.
fn small_db(dir: &Path, n: usize, bad: Option<usize>) -> PathBuf {
    let path = dir.join("db");
    let mut w = LmdbWriter::create(&path).unwrap();
    for i in 0..n {
        let v = if Some(i) == bad {
            vec![0xff, 0xff, 0xff]
        } else {
            rcaffe::data::datum::encode_raw_datum(1, 2, 2, &[i as u8; 4], i as i32)
        };
        w.put(format!("{i:08}").as_bytes(), &v);
    }
    w.finish().unwrap();
    path
}

fn data_layer(source: &Path, batch: u32, extra: &str) -> LayerParameter {
    let text = format!(
        "layer {{ name: 'd' type: 'Data' top: 'data' top: 'label' \
         data_param {{ source: '{}' batch_size: {batch} backend: LMDB {extra} }} }}",
        source.display()
    );
    rcaffe::proto::text::parse_net_text(&text, "test")
        .unwrap()
        .layer[0]
        .clone()
}

#[test]
fn wraps_around_at_the_end_of_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let db = small_db(tmp.path(), 5, None);
    let mut h = Harness::new(&data_layer(&db, 3, ""), cpu_ctx(Phase::Test, 1), 2).unwrap();
    assert_eq!(h.blobs[0].shape(), &[3, 1, 2, 2]);
    assert_eq!(h.blobs[1].shape(), &[3]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        h.forward().unwrap();
        seen.extend(h.labels());
        // data values equal the label (every pixel is the record index)
        let d = h.blobs[0].data_vec();
        assert_eq!(d[0], h.labels()[0]);
    }
    let want: Vec<f32> = (0..12).map(|i| (i % 5) as f32).collect();
    assert_eq!(seen, want);
}

#[test]
fn train_replicas_keep_every_world_th_record() {
    let tmp = tempfile::tempdir().unwrap();
    let db = small_db(tmp.path(), 5, None);
    let lp = data_layer(&db, 3, "prefetch: 1");
    let mut per_rank = Vec::new();
    for rank in 0..2 {
        let mut cx = cpu_ctx(Phase::Train, 1);
        cx.rank = rank;
        cx.world = 2;
        let mut h = Harness::new(&lp, cx, 2).unwrap();
        h.forward().unwrap();
        let mut l = h.labels();
        h.forward().unwrap();
        l.extend(h.labels());
        per_rank.push(l);
    }
    // offsets 0..12 over records 0..4 repeating; rank r keeps offset%2==r.
    assert_eq!(per_rank[0], vec![0.0, 2.0, 4.0, 1.0, 3.0, 0.0]);
    assert_eq!(per_rank[1], vec![1.0, 3.0, 0.0, 2.0, 4.0, 1.0]);
    // TEST phase does not shard.
    let mut cx = cpu_ctx(Phase::Test, 1);
    cx.rank = 1;
    cx.world = 2;
    let mut h = Harness::new(&lp, cx, 2).unwrap();
    h.forward().unwrap();
    assert_eq!(h.labels(), vec![0.0, 1.0, 2.0]);
}

#[test]
fn corrupt_record_is_an_error_naming_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let db = small_db(tmp.path(), 6, Some(3));
    let mut h = Harness::new(&data_layer(&db, 2, ""), cpu_ctx(Phase::Test, 1), 1).unwrap();
    h.forward().unwrap();
    assert_eq!(h.blobs[0].shape(), &[2, 1, 2, 2]);
    let e = h.forward().unwrap_err().to_string();
    assert!(
        e.contains("00000003") && e.contains(&db.display().to_string()),
        "{e}"
    );
    // Later forwards keep failing (no hang), and dropping the layer stops
    // the thread.
    assert!(h.forward().is_err());
    drop(h);
}

#[test]
fn setup_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no_such_lmdb");
    let lp = data_layer(&missing, 4, "");
    let e = Harness::new(&lp, cpu_ctx(Phase::Test, 1), 2)
        .err()
        .unwrap()
        .in_layer("d", "Data")
        .to_string();
    assert!(e.contains("no_such_lmdb") && e.contains("'d'"), "{e}");

    let mut lp = data_layer(&missing, 4, "");
    lp.data_param.as_mut().unwrap().backend = None; // LEVELDB by default
    let e = create_layer(&lp).err().unwrap().to_string();
    assert!(e.contains("'d'") && e.contains("LevelDB"), "{e}");

    let lp = data_layer(&missing, 0, "");
    assert!(create_layer(&lp).is_err());
}
/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_caffes_data_layer_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let db = small_db(tmp.path(), 3, None);
    let cap = Captured::default();
    let prev = rcaffe::log::set_sink(Some(Box::new(cap.clone())));
    let mut h = Harness::new(&data_layer(&db, 2, ""), cpu_ctx(Phase::Test, 1), 2).unwrap();
    h.forward().unwrap();
    h.forward().unwrap();
    drop(h);
    rcaffe::log::set_sink(prev);
    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    // Other tests may log meanwhile: look for our lines only.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&db.display().to_string()) || l.contains("data_layer.cpp"))
        .map(|l| l.split_once("] ").unwrap().1)
        .collect();
    assert!(
        ours.contains(&format!("Opened lmdb {}", db.display()).as_str()),
        "{text}"
    );
    assert!(ours.contains(&"output data size: 2,1,2,2"), "{text}");
    assert!(
        ours.contains(&"Restarting data prefetching from start."),
        "{text}"
    );
    assert!(text.contains(" db_lmdb.cpp:35] ") && text.contains(" data_layer.cpp:45] "));
}

/// libjpeg-turbo 2.1.5 references (made with its C API: 21×13 synthetic
/// image, quality 80): name, channels, FNV-1a of the planar RGB (or grey)
/// output, FNV-1a of the JCS_GRAYSCALE output, the JPEG file in hex.
const LIBJPEG_CASES: &[(&str, usize, u64, u64, &str)] = &[
    (
        "420_restart",
        3,
        0x32f3a6f86f52b52d,
        0x6c219593cb65ce14,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828\
         2828282828282828282828282828282828282828282828282828ffc0001108000d0015030122000211010311\
         01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303\
         020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024\
         33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566\
         6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7\
         b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400\
         1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407\
         05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a\
         162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
         6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9\
         bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffdd00040001ff\
         da000c03010002110311003f00aba6d95868be1dbbb5d125136a938c4171098a6897700aca4e4f3b431c60fa\
         d497166348d2a086d56d751d5b529544d22dc26eb6901cef28a08fbe47040e98efc5ff0014c326897ba5681a\
         73c705b5c235cbcd1ab24cac3380ac186d18523a7f11f6a9fc596834a9f44b28c453a6af6a7ed125c216932d\
         c330604658e4f273cf6eb96eacef1a937cded1b6d3dddafbf4d1ad168aeafb3336f4f64b5bc6315e7cdab6de\
         f6e5fb3dd79b3fffd0afad5ee99a4cd1c3addedbb6b4e37dd096d65c8181b0feed4272be9e94575565e0cd3d\
         e311b160b08f2d428006324ff3268a88675848c6d2936ffc2bfc8f2f199fd5a35e7468622a46306e292692f7\
         74d172bb2d2f6b9fffd9",
    ),
    (
        "422",
        3,
        0x2ee23f9e3603e183,
        0x6c219593cb65ce14,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828\
         2828282828282828282828282828282828282828282828282828ffc0001108000d0015030121000211010311\
         01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303\
         020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024\
         33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566\
         6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7\
         b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400\
         1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407\
         05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a\
         162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
         6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9\
         bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c030100\
         02110311003f00aba6d95868be1dbbb5d125136a938c4171098a6897700aca4e4f3b431c60fad497166348d2\
         a086d56d751d5b529544d22dc26eb6901cef28a08fbe47040e98efc5ac54abd69fb793bce5796bb456a94f64\
         f54f58fc2deb78e8a39a5ec792a2b49d3d5eba464eca2d69cadb5a77e65e8375abdd33499a3875bbdb76d69c\
         6fba12dacb9030361fdda84e57d3d28aefa329548292e549dedfbd9276be975d1db75d0dab712e778192c360\
         68c5d28a5cb7b5ed65de69fde8d1f14c326897ba5681a73c705b5c235cbcd1ab24cac3380ac186d18523a7f1\
         1f6a9fc596834a9f44b28c453a6af6a7ed125c216932dc330604658e4f273cf6eb9f2e4ef0a3cdf13bbbab27\
         74dc74d1da3a68ba26e3aa7a73c9f3cd42eff79ecdb7a5eca2a495edb5d5fef34acbc19a7bc62362c1611e5a\
         85000c649fe64d15e57fac1895a46725e4a4adf2bc5bfc4f98ccb33ad3c6d772d7df97e12691ffd9",
    ),
    (
        "440",
        3,
        0x7f6457ab290b0c32,
        0x6c219593cb65ce14,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828\
         2828282828282828282828282828282828282828282828282828ffc0001108000d0015030112000211010311\
         01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303\
         020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024\
         33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566\
         6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7\
         b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400\
         1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407\
         05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a\
         162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
         6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9\
         bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c030100\
         02110311003f00aba6d95868be1dbbb5d125136a938c4171098a6897700aca4e4f3b431c60fad69f8a619344\
         bdd2b40d39e382dae11ae5e68d59265619c0560c368c291d3f88fb569fbcc7ce78aa936d437e7d6cf56ae93b\
         495937d75e9df2e674b031549f37b4bc6f2b59256e65cbaddbe6493f36ee9a450b8b31a46950436ab6ba8ead\
         a94aa26916e1375b480e77945047df2382074c77e35bc596834a9f44b28c453a6af6a7ed125c216932dc3306\
         04658e4f273cf6eb9ca9629d5739d4f7d46ea37da364db6969756bfbb27aa4d5f6bd566aaa8e5d0d52b4a4f6\
         495da4924d732bc6f66ada4575663eb57ba66933470eb77b6edad38df7425b59720606c3fbb509cafa7a5755\
         65e0cd3de311b160b08f2d428006324ff326b3a59c6160e5ed24dbbbd145696d1eeb7bef66d7639f35cebea3\
         5fea385ab382a695f96d14dc92968ad2d126bcefcde47fffd9",
    ),
    (
        "444",
        3,
        0xe4f5a334f87212a0,
        0x6c219593cb65ce14,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828\
         2828282828282828282828282828282828282828282828282828ffc0001108000d0015030111000211010311\
         01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303\
         020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024\
         33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566\
         6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7\
         b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400\
         1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407\
         05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a\
         162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
         6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9\
         bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c030100\
         02110311003f00aba6d95868be1dbbb5d125136a938c4171098a6897700aca4e4f3b431c60fad18fc656c662\
         dd5c636a31dd4db72696dac15a31beb74d3d1cbec24f3a139d3cb675f191b41ae4e56dc64dcb4bad35b5efbe\
         b66892e2cc691a5410daadaea3ab6a52a89a45b84dd6d2039de51411f7c8e081d31df8da35d63272facca5ec\
         e8abc79a57525aad1ab5a36d5c9a72f8795290f12f9b2c8d197b906d249a7ef416beeb6d3d39629b57d25af4\
         1bad5ee99a4cd1c3addedbb6b4e37dd096d65c8181b0feed4272be9e95be1aacabca6e9a4a17d2f51c5f9dd2\
         76dfaad25f1753aeae739865142952ca6927069bd5decaf656bc93d5f36f7dbb58d1f14c326897ba5681a73c\
         705b5c235cbcd1ab24cac3380ac186d18523a7f11f6ac72fbce8d6af5ad274b4b5928b4d4a56e5e8b4be8efc\
         d695fdd48e1ae962b0b87ad5755cd2f75d9c5d94526eeafa73beb6f227f165a0d2a7d12ca3114e9abda9fb44\
         97085a4cb70cc181196393c9cf3dbae7cec3c94d55acaea49b6adcabe18b96b68eaee9d9f4e6bd9b572e7278\
         bcc2119b6a3422a514ac95dca57e9b5a115656dbccd2b2f0669ef188d8b0584796a140031927f9935c5fdbf8\
         8837083946cda7cb2b26d3b5ecd4ade89d9744789c499b622a66b56337751504bc972a76f3d5bdcfffd9",
    ),
    (
        "411",
        3,
        0x0962421983697b1b,
        0x6c219593cb65ce14,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828\
         2828282828282828282828282828282828282828282828282828ffc0001108000d0015030141000211010311\
         01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303\
         020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024\
         33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566\
         6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7\
         b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc400\
         1f0100030101010101010101010000000000000102030405060708090a0bffc400b511000201020404030407\
         05040400010277000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a\
         162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
         6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9\
         bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c030100\
         02110311003f00aba6d95868be1dbbb5d125136a938c4171098a6897700aca4e4f3b431c60fad497166348d2\
         a086d56d751d5b529544d22dc26eb6901cef28a08fbe47040e98efc375abdd33499a3875bbdb76d69c6fba12\
         dacb9030361fdda84e57d3d28aebc35695693937ef3bfc5371eb7dd6fac9df4dd37b340b34c765d0f6d81a6a\
         551d934fb6b77aca3d55bc9a6bd347c530c9a25ee95a069cf1c16d708d72f346ac932b0ce02b061b46148e9f\
         c47daa7f165a0d2a7d12ca3114e9abda9fb4497085a4cb70cc181196393c9cf3dbae74acbc19a7bc62362c16\
         11e5a85000c649fe64d15e462b31a983b3a6da72b5ecd2fb317fcaf7bebd74478f9b62a74a97bbd656fbaefa\
         5bf999ffd9",
    ),
    (
        "gray",
        1,
        0x05f16610aa98c47a,
        0x05f16610aa98c47a,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffc0000b08000d001501011100ffc4001f0000010501010101010100000000000000000102030405060708\
         090a0bffc400b5100002010303020403050504040000017d0102030004110512213141061351610722711432\
         8191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a43444546474849\
         4a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3\
         a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9ea\
         f1f2f3f4f5f6f7f8f9faffda0008010100003f00cff0ddbc1e1df83daccd3c713c9796a74f862794465de61e\
         59db9077155667da3a843d39225d76d7fb33e14d86991fd9bcdd5ef6185e290fef0c51fef59d064747488138\
         2007c7520d68f8a3c7da97c36d2f43d37c3b6da6dcdedcc2d71751dec12b7971e42c454ab28e4acb91927e51\
         d32330f8eedda2d2bc0ba6a498b2b89ae2e258f60f9a48d635439ea30259380707773d062d78cadda5f1ff00\
         85b4d7933656fa62dc451ec1f2c924aeae73d4e4451f04e06de3a9ce2fc4cb76bdf889ab417326f8ac61b5b7\
         b75d806c8cc2b211c75f9e4739393ce3a002bfffd9",
    ),
    (
        "420_multiscan",
        3,
        0x32f3a6f86f52b52d,
        0x6c219593cb65ce14,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828\
         2828282828282828282828282828282828282828282828282828ffc0001108000d0015030122000211010311\
         01ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303\
         020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024\
         33627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566\
         6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7\
         b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda00\
         08010100003f00aba6d95868be1dbbb5d125136a938c4171098a6897700aca4e4f3b431c60fad497166348d2\
         a086d56d751d5b529544d22dc26eb6901cef28a08fbe47040e98efc375abdd33499a3875bbdb76d69c6fba12\
         dacb9030361fdda84e57d3d2b47c530c9a25ee95a069cf1c16d708d72f346ac932b0ce02b061b46148e9fc47\
         daa7f165a0d2a7d12ca3114e9abda9fb4497085a4cb70cc181196393c9cf3dbae74acbc19a7bc62362c1611e\
         5a85000c649fe64d7fffc4001f0100030101010101010101010000000000000102030405060708090a0bffc4\
         00b51100020102040403040705040400010277000102031104052131061241510761711322328108144291a1\
         b1c109233352f0156272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455\
         565758595a636465666768696a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6\
         a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5\
         f6f7f8f9faffda0008010211003f006eacef1a937cded1b6d3dddafbf4d1ad168aeafb3338675848c6d2936f\
         fc2bfc8fffda0008010311003f00cdbd3d92d6f18c579f36adb7bdb97ecf75e6cf3f199fd5a35e7468622a46\
         306e292692f774d172bb2d2f6b9fffd9",
    ),
    (
        "420_progressive",
        3,
        0x32f3a6f86f52b52d,
        0x6c219593cb65ce14,
        "ffd8ffe000104a46494600010100000100010000ffdb00430006040506050406060506070706080a100a0a09\
         090a140e0f0c1017141818171416161a1d251f1a1b231c1616202c20232627292a29191f2d302d2830252829\
         28ffdb0043010707070a080a130a0a13281a161a282828282828282828282828282828282828282828282828\
         2828282828282828282828282828282828282828282828282828ffc2001108000d0015030122000211010311\
         01ffc4001800000203000000000000000000000000000003020405ffc4001601010101000000000000000000\
         00000000020004ffda000c03010002100310000001549ec8d335439fffc40019100003010101000000000000\
         0000000000010203041311ffda00080101000105029a2473b272959e723a818beb5e4531cfcfffc4001f1100\
         0201020700000000000000000000000102000391042141616281e1ffda0008010301013f01e3b017f3495b1e\
         c8e512a30032b753ffc4001b110001040300000000000000000000000001000212210304a1ffda0008010201\
         013f0191a71b921bb880b3c5ffc4002110000104010403010000000000000000000100020311311213212232\
         4251c1ffda0008010100063f0273613729c38510806e992590f275789404cf6ef7b5b4fe28a08e835ddac654\
         2c14775bd8bb2abe70bfffc4001c10000202030101000000000000000000000111002131516191a1ffda0008\
         010100013f21d5fad4e88f1c45c5940f621d86ec3bf2b05885482121102785d63eca58d61db25ee14c6aa53f\
         ffda000c03010002000300000010282fffc4001b110101000203010000000000000000000001110021314161\
         a1ffda0008010301013f105d4ee83de4abccfa1eb8b6850081d34543565cffc4001b11010002020300000000\
         0000000000000001112100314171d1ffda0008010201013f10674d8a8ed89df14945124e9c8a22f4f33fffc4\
         001c10010100020301010000000000000000000111002131415161b1ffda0008010100013f1019618c9410d7\
         70a47dc0384a0536c9399a4389de8618cad085e8dfc7984fdac22c0044471dbe609e7d469a004aabb6efae69\
         a4010004abfab9ffd9",
    ),
];

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn jpeg_decoder_matches_libjpeg_turbo() {
    use rcaffe::data::jpeg::{decode_jpeg, JpegOut};
    for &(name, channels, rgb, gray, hex) in LIBJPEG_CASES {
        let bytes = unhex(hex);
        if name.ends_with("progressive") {
            // Not handled here: the general decoder takes over.
            assert!(decode_jpeg(&bytes, JpegOut::Native).unwrap().is_none());
            let d = rcaffe::data::decode_image(&bytes, ColorMode::Native).unwrap();
            assert_eq!((d.channels, d.height, d.width), (3, 13, 21));
            continue;
        }
        let img = decode_jpeg(&bytes, JpegOut::Native).unwrap().unwrap();
        assert_eq!(
            (img.width, img.height, img.planes.len()),
            (21, 13, channels)
        );
        assert_eq!(fnv1a(&img.planes.concat()), rgb, "{name}");
        let g = decode_jpeg(&bytes, JpegOut::Gray).unwrap().unwrap();
        assert_eq!(fnv1a(&g.planes.concat()), gray, "{name} as grey");
        // BGR order through decode_image.
        let d = rcaffe::data::decode_image(&bytes, ColorMode::Color).unwrap();
        let Pixels::U8(px) = d.pixels else { panic!() };
        let plane = 21 * 13;
        let want_r = &img.planes[0];
        assert_eq!(&px[2 * plane..], &want_r[..], "{name}: R is the last plane");
    }
}

#[test]
fn corrupt_jpegs_are_errors_not_panics() {
    use rcaffe::data::jpeg::{decode_jpeg, JpegOut};
    let bytes = unhex(LIBJPEG_CASES[0].4);
    for cut in (2..bytes.len()).step_by(7) {
        let _ = decode_jpeg(&bytes[..cut], JpegOut::Native);
    }
    let mut state = 12345u32;
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..3 {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            let i = 2 + (state as usize >> 8) % (b.len() - 2);
            b[i] = (state >> 24) as u8;
        }
        let _ = decode_jpeg(&b, JpegOut::Native);
    }
}
