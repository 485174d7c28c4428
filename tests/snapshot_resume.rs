//! Snapshots that never lose work, through `rcaffe train`:
//!
//! - 25 iterations + snapshot + resume to 50 gives the weights of 50
//!   uninterrupted iterations bit for bit (the data positions saved beside
//!   the solver state; Dropout reseeded per iteration), and without the
//!   position file the run restarts its data as Caffe does (and differs);
//! - a process killed (SIGKILL) in the middle of a snapshot leaves the
//!   previous snapshot loadable and no half-written file under a snapshot
//!   name;
//! - `debug_info` reports the time training waited on data;
//! - `snapshot_format: HDF5` snapshots resume (feature `hdf5`), or a clear
//!   error names the feature.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use prost::Message;
use rcaffe::data::{create_writer, DbBackend};
use rcaffe::proto::binary;
use rcaffe::proto::caffe::Datum;

fn rcaffe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcaffe"))
}

/// Run `rcaffe train --solver <solver> <args>` in `dir`: (exit code, log).
fn train(dir: &Path, solver: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = rcaffe()
        .args(["train", "--solver", solver])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An LMDB of `n` 1×14×14 images in key order (no shuffling anywhere):
/// record i has label i % 10 and a pattern that depends on i.
fn make_lmdb(path: &Path, n: usize) {
    let mut w = create_writer(DbBackend::Lmdb, path).unwrap();
    for i in 0..n {
        let data: Vec<u8> = (0..14 * 14)
            .map(|p| {
                let (y, x) = (p / 14, p % 14);
                ((i * 37 + y * 11 + x * 5 + (i * x * y) % 13 + (i % 10) * 20) % 256) as u8
            })
            .collect();
        let d = Datum {
            channels: Some(1),
            height: Some(14),
            width: Some(14),
            data: Some(data),
            label: Some((i % 10) as i32),
            ..Default::default()
        };
        w.put(format!("{i:08}").as_bytes(), &d.encode_to_vec());
    }
    w.finish().unwrap();
}

/// A LeNet-type net over `db`: random crop + mirror in TRAIN (so the
/// transformer's random stream matters), Dropout (so the net's does), a
/// TEST-phase Data layer over the same database.
fn lenet_net(db: &Path) -> String {
    let src = db.display();
    format!(
        r#"name: "ResumeNet"
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 crop_size: 12 mirror: true }}
  data_param {{ source: "{src}" batch_size: 16 backend: LMDB }} }}
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 crop_size: 12 }}
  data_param {{ source: "{src}" batch_size: 20 backend: LMDB }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 8 kernel_size: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param {{ num_output: 32 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param {{ dropout_ratio: 0.5 }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 10 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"#
    )
}

/// SGD with momentum, a step policy (so `current_step` matters), tests
/// every 20 iterations.
fn solver(max_iter: i32, snapshot: i32, prefix: &str, extra: &str) -> String {
    format!(
        "net: \"net.prototxt\"\ntest_iter: 3\ntest_interval: 20\nbase_lr: 0.05\n\
         momentum: 0.9\nweight_decay: 0.0005\nlr_policy: \"step\"\ngamma: 0.5\n\
         stepsize: 20\ndisplay: 5\nmax_iter: {max_iter}\nsnapshot: {snapshot}\n\
         snapshot_prefix: \"{prefix}\"\nrandom_seed: 7\nsolver_mode: CPU\n{extra}"
    )
}

/// A scratch folder with a 150-record LMDB (batches of 16 leave the
/// cursor mid-pass at iteration 25) and the net.
fn stage() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    make_lmdb(&db, 150);
    std::fs::write(dir.path().join("net.prototxt"), lenet_net(&db)).unwrap();
    dir
}

/// Every learnable value of a binary caffemodel, as bits.
fn weight_bits(path: &Path) -> Vec<u32> {
    let net = binary::read_net_binary(path).unwrap();
    let bits: Vec<u32> = net
        .layer
        .iter()
        .flat_map(|l| &l.blobs)
        .flat_map(|b| &b.data)
        .map(|v| v.to_bits())
        .collect();
    assert!(!bits.is_empty(), "{}", path.display());
    bits
}

fn max_abs_diff(a: &[u32], b: &[u32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f32::from_bits(*x) - f32::from_bits(*y)).abs())
        .fold(0.0, f32::max)
}

/// The test-output lines of the test at `iter` (after "Iteration iter,
/// Testing net").
fn test_outputs(log: &str, iter: i32) -> Vec<String> {
    let start = format!("] Iteration {iter}, Testing net (#0)");
    let mut lines = log.lines().skip_while(|l| !l.contains(&start));
    lines.next();
    lines
        .take_while(|l| l.contains("Test net output"))
        .map(|l| l.split_once("] ").unwrap().1.to_string())
        .collect()
}

#[test]
fn resume_from_a_snapshot_is_bit_identical_to_an_uninterrupted_run() {
    let dir = stage();
    let d = dir.path();
    std::fs::write(d.join("a.prototxt"), solver(50, 25, "a", "")).unwrap();
    std::fs::write(d.join("b.prototxt"), solver(50, 25, "b", "")).unwrap();
    std::fs::write(d.join("c.prototxt"), solver(50, 25, "c", "")).unwrap();

    // Uninterrupted: 50 iterations (it snapshots at 25 on the way).
    let (code, full) = train(d, "a.prototxt", &[]);
    assert_eq!(code, Some(0), "{full}");
    for f in [
        "a_iter_25.caffemodel",
        "a_iter_25.solverstate",
        "a_iter_25.datapos",
    ] {
        assert!(d.join(f).exists(), "{f}");
    }
    // The solver state is Caffe's message, untouched by the data position.
    let state = binary::read_solver_state(&d.join("a_iter_25.solverstate")).unwrap();
    assert_eq!(state.iter, Some(25));
    assert_eq!(state.learned_net.as_deref(), Some("a_iter_25.caffemodel"));
    let pos: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("a_iter_25.datapos")).unwrap()).unwrap();
    // 25 batches of 16 from 150 records: 400 visited, 2 wrap-arounds, the
    // next record is 400 - 300 = 100.
    let train_pos = &pos["train_net"]["data"];
    assert_eq!(train_pos["offset"], 400, "{pos}");
    assert_eq!(train_pos["restarts"], 2, "{pos}");
    assert_eq!(train_pos["key_hex"], hex("00000100"), "{pos}");
    // The test net ran twice (iterations 0 and 20), 3 batches of 20 each.
    assert_eq!(pos["test_nets"][0]["data"]["offset"], 120, "{pos}");

    // Resumed from the snapshot at 25, to 50.
    let (code, resumed) = train(d, "b.prototxt", &["--snapshot", "a_iter_25.solverstate"]);
    assert_eq!(code, Some(0), "{resumed}");
    assert!(
        resumed.contains(
            "] Restoring data positions from a_iter_25.datapos: layer 'data' (train net), \
             layer 'data' (test net #0)\n"
        ),
        "{resumed}"
    );
    let want = weight_bits(&d.join("a_iter_50.caffemodel"));
    let got = weight_bits(&d.join("b_iter_50.caffemodel"));
    assert_eq!(want.len(), got.len());
    let diff = max_abs_diff(&want, &got);
    eprintln!(
        "resume 25 -> 50 vs 50 uninterrupted: {} weights, max |diff| = {diff:e}, identical: {}",
        want.len(),
        want == got
    );
    assert!(want == got, "resumed weights differ (max |diff| {diff:e})");
    assert_eq!(
        std::fs::read(d.join("a_iter_50.caffemodel")).unwrap(),
        std::fs::read(d.join("b_iter_50.caffemodel")).unwrap()
    );
    // The test at 40 saw the same batches with the same weights.
    let (t_full, t_resumed) = (test_outputs(&full, 40), test_outputs(&resumed, 40));
    assert_eq!(t_full.len(), 2, "{full}");
    assert_eq!(t_full, t_resumed);

    // Without the position file the data restarts at record 0, as in
    // Caffe: the run goes on, says so, and ends elsewhere.
    std::fs::remove_file(d.join("a_iter_25.datapos")).unwrap();
    let (code, caffe_like) = train(d, "c.prototxt", &["--snapshot", "a_iter_25.solverstate"]);
    assert_eq!(code, Some(0), "{caffe_like}");
    assert!(
        caffe_like.contains(
            "] No data position file a_iter_25.datapos beside the solver state: the data \
             layers restart from their first record, as Caffe's do\n"
        ),
        "{caffe_like}"
    );
    let other = weight_bits(&d.join("c_iter_50.caffemodel"));
    assert_ne!(other, want, "the data position must matter in this test");
    eprintln!(
        "without the data position (Caffe's resume): max |diff| = {:e}",
        max_abs_diff(&want, &other)
    );
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Start `rcaffe train` with the snapshot test hook, kill it (SIGKILL)
/// while it pauses before renaming `victim` into place; returns the log.
fn kill_during_write(dir: &Path, solver: &str, args: &[&str], victim: &str) -> String {
    let mut child = rcaffe()
        .args(["train", "--solver", solver])
        .args(args)
        .current_dir(dir)
        .env("RCAFFE_TEST_SNAPSHOT_DELAY_MS", "1500")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let mut killed = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("RCAFFE_TEST_SNAPSHOT_DELAY_MS: pausing")
            && line.ends_with(&format!(" to {victim}"))
        {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "never paused before {victim}:\n{log}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{log}");
    log
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_kill_during_a_snapshot_leaves_the_previous_snapshot_loadable() {
    let dir = stage();
    let d = dir.path();
    std::fs::write(d.join("s5.prototxt"), solver(5, 5, "k", "")).unwrap();
    std::fs::write(d.join("s10.prototxt"), solver(10, 5, "k", "")).unwrap();
    std::fs::write(d.join("s7.prototxt"), solver(7, 0, "r", "")).unwrap();
    let (code, log) = train(d, "s5.prototxt", &[]);
    assert_eq!(code, Some(0), "{log}");

    // Killed while the model of iteration 10 waits for its rename, then
    // while its solver state does (model and positions already in place).
    for (victim, present, absent) in [
        (
            "k_iter_10.caffemodel",
            &[][..],
            &[
                "k_iter_10.caffemodel",
                "k_iter_10.datapos",
                "k_iter_10.solverstate",
            ][..],
        ),
        (
            "k_iter_10.solverstate",
            &["k_iter_10.caffemodel", "k_iter_10.datapos"][..],
            &["k_iter_10.solverstate"][..],
        ),
    ] {
        for f in names(d).iter().filter(|n| n.contains("iter_10")) {
            std::fs::remove_file(d.join(f)).unwrap();
        }
        let log = kill_during_write(
            d,
            "s10.prototxt",
            &["--snapshot", "k_iter_5.solverstate"],
            victim,
        );
        let all = names(d);
        for f in present {
            assert!(all.contains(&f.to_string()), "{f} missing: {all:?}\n{log}");
        }
        for f in absent {
            assert!(!all.contains(&f.to_string()), "{f} present: {all:?}\n{log}");
        }
        // The half-done write is a hidden temporary, never a snapshot name.
        let leftovers: Vec<&String> = all.iter().filter(|n| n.ends_with(".tmp")).collect();
        assert_eq!(leftovers.len(), 1, "{all:?}");
        assert!(leftovers[0].starts_with(&format!(".{victim}.")), "{all:?}");

        // The previous snapshot is intact and resumes.
        binary::read_net_binary(&d.join("k_iter_5.caffemodel")).unwrap();
        let st = binary::read_solver_state(&d.join("k_iter_5.solverstate")).unwrap();
        assert_eq!(st.iter, Some(5));
        let (code, log) = train(d, "s7.prototxt", &["--snapshot", "k_iter_5.solverstate"]);
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.contains("] Restoring data positions from k_iter_5.datapos"),
            "{log}"
        );
        assert!(d.join("r_iter_7.caffemodel").exists());
        std::fs::remove_file(d.join("r_iter_7.caffemodel")).unwrap();
        std::fs::remove_file(d.join("r_iter_7.solverstate")).unwrap();
        let _ = std::fs::remove_file(d.join("r_iter_7.datapos"));
    }
    // The model whose solver state never landed is refused for --snapshot
    // with what to pass instead.
    let (code, log) = train(d, "s7.prototxt", &["--snapshot", "k_iter_10.caffemodel"]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("k_iter_10.caffemodel is a model, not a solver state, and there is no"),
        "{log}"
    );
}

/// `Data wait: 0.0123 ms/iter (10 iterations, 10 batches, 0.123 ms in all)`
fn data_waits(log: &str) -> Vec<(f64, u32)> {
    log.lines()
        .filter_map(|l| l.split_once("] Data wait: "))
        .map(|(_, rest)| {
            let ms: f64 = rest.split(' ').next().unwrap().parse().unwrap();
            let iters: u32 = rest
                .split_once('(')
                .unwrap()
                .1
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (ms, iters)
        })
        .collect()
}

#[test]
fn debug_info_reports_that_lenet_does_not_wait_on_data() {
    // The golden LeNet (batch 64 from the 2000-record golden LMDB).
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/train");
    let data = golden.join("data").canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = std::fs::read_to_string(golden.join("sgd/net.prototxt"))
        .unwrap()
        .replace("\"../data/", &format!("\"{}/", data.display()));
    std::fs::write(dir.path().join("net.prototxt"), net).unwrap();
    std::fs::write(
        dir.path().join("solver.prototxt"),
        "net: \"net.prototxt\"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: \"fixed\"\n\
         display: 10\nmax_iter: 60\ndebug_info: true\nsnapshot_after_train: false\n\
         random_seed: 1\n",
    )
    .unwrap();
    let init = golden.join("init.caffemodel").display().to_string();
    let (code, log) = train(dir.path(), "solver.prototxt", &["--weights", &init]);
    assert_eq!(code, Some(0), "{log}");
    let waits = data_waits(&log);
    // Displays at 0, 10, ..., 50: the first covers iteration 0, the others
    // the 10 iterations since.
    let iters: Vec<u32> = waits.iter().map(|w| w.1).collect();
    assert_eq!(iters, vec![1, 10, 10, 10, 10, 10], "{log}");
    // Iteration time from the display lines ("(x iter/s, ...").
    let rates: Vec<f64> = log
        .lines()
        .filter_map(|l| l.split_once(" iter/s, "))
        .filter_map(|(a, _)| a.rsplit_once('(').and_then(|(_, r)| r.parse().ok()))
        .collect();
    // The first display's rate covers no iteration (as in Caffe).
    assert_eq!(rates.len(), 6, "{log}");
    let ms_per_iter = rates[1..].iter().map(|r| 1e3 / r).sum::<f64>() / 5.0;
    let steady: Vec<f64> = waits[1..].iter().map(|w| w.0).collect();
    let mean = steady.iter().sum::<f64>() / steady.len() as f64;
    eprintln!(
        "LeNet data wait: {mean:.4} ms/iter over 50 iterations (per display window: \
         {steady:?}); one iteration takes {ms_per_iter:.1} ms; first iteration waited {:.3} ms",
        waits[0].0
    );
    // Never waiting means: a small fraction of an iteration, even on a busy
    // 2-core machine.
    assert!(
        mean < 0.05 * ms_per_iter,
        "{mean} ms/iter of {ms_per_iter} ms"
    );
}

#[cfg(not(feature = "hdf5"))]
#[test]
fn hdf5_snapshots_need_the_feature() {
    let dir = stage();
    let d = dir.path();
    std::fs::write(
        d.join("h.prototxt"),
        solver(2, 2, "h", "snapshot_format: HDF5\n"),
    )
    .unwrap();
    let (code, log) = train(d, "h.prototxt", &[]);
    assert_eq!(code, Some(1), "{log}");
    let last = log.lines().last().unwrap();
    assert!(
        last.contains("snapshot_format: HDF5 needs HDF5 support")
            && last.contains("--features hdf5"),
        "{last}"
    );
}

#[cfg(feature = "hdf5")]
mod hdf5_snapshots {
    use super::*;
    use std::path::PathBuf;

    /// The hdf5_classification example's data: 4 features, 2 classes
    /// (label 1 when x0 + x1 > x2), `rows` rows in one file; returns the
    /// list file.
    fn write_h5(dir: &Path, stem: &str, rows: usize, seed: u32) -> PathBuf {
        let mut g = rcaffe::data::rng::Mt19937::new(seed);
        let mut data = Vec::with_capacity(rows * 4);
        let mut label = Vec::with_capacity(rows);
        for _ in 0..rows {
            let x: Vec<f32> = (0..4)
                .map(|_| g.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0)
                .collect();
            label.push(if x[0] + x[1] > x[2] { 1.0f32 } else { 0.0 });
            data.extend(x);
        }
        let path = dir.join(format!("{stem}.h5"));
        let f = hdf5::File::create(&path).unwrap();
        f.new_dataset::<f32>()
            .shape([rows, 4])
            .create("data")
            .unwrap()
            .write_raw(&data)
            .unwrap();
        f.new_dataset::<f32>()
            .shape([rows])
            .create("label")
            .unwrap()
            .write_raw(&label)
            .unwrap();
        let list = dir.join(format!("{stem}.txt"));
        std::fs::write(&list, format!("{}\n", path.display())).unwrap();
        list
    }

    fn weights(path: &Path) -> Vec<(String, Vec<u32>)> {
        let net = rcaffe::data::hdf5::read_net_hdf5(path).unwrap();
        net.layer
            .iter()
            .filter(|l| !l.blobs.is_empty())
            .map(|l| {
                let bits = l.blobs.iter().flat_map(|b| &b.data).map(|v| v.to_bits());
                (l.name().to_string(), bits.collect())
            })
            .collect()
    }

    #[test]
    fn hdf5_snapshots_have_caffes_layout_and_resume_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 230 rows in batches of 10: the position at 25 is mid-file.
        let train_list = write_h5(d, "train", 230, 1);
        let test_list = write_h5(d, "test", 100, 2);
        let zoo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/zoo/bvlc_hdf5_classification/nonlinear_train_val.prototxt");
        let net = std::fs::read_to_string(zoo)
            .unwrap()
            .replace(
                "examples/hdf5_classification/data/train.txt",
                &train_list.display().to_string(),
            )
            .replace(
                "examples/hdf5_classification/data/test.txt",
                &test_list.display().to_string(),
            );
        std::fs::write(d.join("net.prototxt"), net).unwrap();
        let s = |prefix: &str| {
            solver(50, 25, prefix, "snapshot_format: HDF5\n")
                .replace("test_iter: 3", "test_iter: 10")
        };
        std::fs::write(d.join("a.prototxt"), s("a")).unwrap();
        std::fs::write(d.join("b.prototxt"), s("b")).unwrap();

        let (code, full) = train(d, "a.prototxt", &[]);
        assert_eq!(code, Some(0), "{full}");
        assert!(
            full.contains("] Snapshotting to HDF5 file a_iter_25.caffemodel.h5\n"),
            "{full}"
        );
        assert!(
            full.contains("] Snapshotting solver state to HDF5 file a_iter_25.solverstate.h5\n"),
            "{full}"
        );
        // Caffe's layout.
        let f = hdf5::File::open(d.join("a_iter_25.solverstate.h5")).unwrap();
        assert_eq!(f.dataset("iter").unwrap().read_scalar::<i32>().unwrap(), 25);
        assert_eq!(
            f.dataset("current_step")
                .unwrap()
                .read_scalar::<i32>()
                .unwrap(),
            1
        );
        // SGD: one history blob per parameter (fc1, fc2: weight and bias).
        assert_eq!(f.group("history").unwrap().member_names().unwrap().len(), 4);
        let m = hdf5::File::open(d.join("a_iter_25.caffemodel.h5")).unwrap();
        assert_eq!(m.dataset("data/fc1/0").unwrap().shape(), vec![40, 4]);
        assert!(m.group("data/loss").is_ok(), "a group for every layer");

        // Resumed through the model's name (its .solverstate.h5 is used).
        let (code, resumed) = train(d, "b.prototxt", &["--snapshot", "a_iter_25.caffemodel.h5"]);
        assert_eq!(code, Some(0), "{resumed}");
        assert!(
            resumed.contains(
                "] Restoring data positions from a_iter_25.datapos: layer 'data' \
                              (train net), layer 'data' (test net #0)\n"
            ),
            "{resumed}"
        );
        let want = weights(&d.join("a_iter_50.caffemodel.h5"));
        let got = weights(&d.join("b_iter_50.caffemodel.h5"));
        assert_eq!(want.len(), 2);
        assert_eq!(want, got, "resumed HDF5 run differs");
        assert_eq!(test_outputs(&full, 40), test_outputs(&resumed, 40));

        // --weights takes an HDF5 model too.
        std::fs::write(
            d.join("w.prototxt"),
            s("w").replace("max_iter: 50", "max_iter: 1"),
        )
        .unwrap();
        let (code, log) = train(d, "w.prototxt", &["--weights", "a_iter_50.caffemodel.h5"]);
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.contains("] Finetuning from a_iter_50.caffemodel.h5\n"),
            "{log}"
        );
        // And `rcaffe test --weights` (Caffe's CopyTrainedLayersFrom).
        let out = rcaffe()
            .args(["test", "--model", "net.prototxt", "--weights"])
            .args(["a_iter_50.caffemodel.h5", "--iterations", "2"])
            .current_dir(d)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(log.contains("] accuracy = "), "{log}");
    }
}

/// Layer-level: a data layer built afresh and given the position another
/// one reached continues with exactly that layer's batches.
mod layer_positions {
    use super::*;
    use rcaffe::backend::cpu::CpuBackend;
    use rcaffe::layers::{create_layer, Ctx, Io, Layer};
    use rcaffe::proto::caffe::{LayerParameter, Phase};
    use rcaffe::tensor::Blob;
    use std::sync::Arc;

    struct Harness {
        layer: Box<dyn Layer>,
        cx: Ctx,
        blobs: Vec<Blob>,
    }

    impl Harness {
        fn new(lp: &LayerParameter, phase: Phase, rank: usize, world: usize) -> Self {
            let mut cx = Ctx::new(Arc::new(CpuBackend::new()), phase, 11);
            (cx.rank, cx.world) = (rank, world);
            let mut h = Harness {
                layer: create_layer(lp).unwrap(),
                cx,
                blobs: vec![Blob::default(), Blob::default()],
            };
            let mut io = Io::new(&mut h.blobs, &[], &[0, 1], &[]);
            h.layer.setup(&mut h.cx, &mut io).unwrap();
            h
        }
        /// One batch: data and labels, as bits.
        fn forward(&mut self) -> (Vec<u32>, Vec<u32>) {
            let mut io = Io::new(&mut self.blobs, &[], &[0, 1], &[]);
            self.layer.reshape(&mut self.cx, &mut io).unwrap();
            self.layer.forward(&mut self.cx, &mut io).unwrap();
            let bits = |b: &Blob| b.data_vec().iter().map(|v| v.to_bits()).collect();
            (bits(&self.blobs[0]), bits(&self.blobs[1]))
        }
    }

    fn layer(text: &str) -> LayerParameter {
        rcaffe::proto::text::parse_net_text(text, "t.prototxt")
            .unwrap()
            .layer[0]
            .clone()
    }

    /// Run `before` batches, save the position, run `after` more; a fresh
    /// layer restored to the position must give the same `after` batches.
    fn check(lp: &LayerParameter, rank: usize, world: usize, before: usize, after: usize) {
        let mut a = Harness::new(lp, Phase::Train, rank, world);
        for _ in 0..before {
            a.forward();
        }
        let pos = a.layer.data_position().expect("a data position");
        let want: Vec<_> = (0..after).map(|_| a.forward()).collect();
        let mut b = Harness::new(lp, Phase::Train, rank, world);
        b.forward(); // moves it off its start: the restore must override
        b.layer.restore_data_position(&pos).unwrap();
        let got: Vec<_> = (0..after).map(|_| b.forward()).collect();
        assert!(want == got, "restored layer diverges (position {pos})");
        // And the batches really move on (the check can fail).
        assert_ne!(want[0], want[1]);
        // Another replica's position is refused.
        let mut c = Harness::new(lp, Phase::Train, (rank + 1) % world.max(2), world.max(2));
        let e = c.layer.restore_data_position(&pos).unwrap_err().to_string();
        assert!(e.contains("replica"), "{e}");
    }

    #[test]
    fn image_data_continues_after_reshuffles_and_shards() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = String::new();
        for i in 0..7u32 {
            let img = image::GrayImage::from_fn(9, 8, |x, y| {
                image::Luma([(x * 20 + y * 7 + i * 31) as u8])
            });
            let name = format!("img{i}.png");
            img.save(dir.path().join(&name)).unwrap();
            list.push_str(&format!("{name} {i}\n"));
        }
        let list_path = dir.path().join("list.txt");
        std::fs::write(&list_path, list).unwrap();
        let lp = layer(&format!(
            "layer {{ name: \"data\" type: \"ImageData\" top: \"data\" top: \"label\" \
             transform_param {{ crop_size: 6 mirror: true }} \
             image_data_param {{ source: \"{}\" root_folder: \"{}/\" batch_size: 3 \
             shuffle: true is_color: false }} }}",
            list_path.display(),
            dir.path().display()
        ));
        // 3 items of 7 per batch: positions after several reshuffles.
        check(&lp, 0, 1, 5, 6);
        check(&lp, 1, 2, 4, 5);
        // A list that changed since the position was saved is refused.
        let mut a = Harness::new(&lp, Phase::Train, 0, 1);
        a.forward();
        let pos = a.layer.data_position().unwrap();
        let text = std::fs::read_to_string(&list_path).unwrap();
        std::fs::write(&list_path, format!("{text}img0.png 0\n")).unwrap();
        let mut b = Harness::new(&lp, Phase::Train, 0, 1);
        let e = b.layer.restore_data_position(&pos).unwrap_err().to_string();
        assert!(
            e.contains("lists 8 images but the saved data position is for a list of 7"),
            "{e}"
        );
    }

    #[test]
    fn data_layer_continues_mid_pass_and_sharded() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        make_lmdb(&db, 23);
        let lp = layer(&format!(
            "layer {{ name: \"data\" type: \"Data\" top: \"data\" top: \"label\" \
             transform_param {{ crop_size: 10 mirror: true }} \
             data_param {{ source: \"{}\" batch_size: 5 backend: LMDB prefetch: 3 }} }}",
            db.display()
        ));
        check(&lp, 0, 1, 7, 6);
        check(&lp, 1, 3, 3, 4);
    }
}
