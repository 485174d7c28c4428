//! The real binary end to end: Caffe's own trained LeNet scored on the full
//! Fashion-MNIST test set (converted by our `convert_mnist_data`), and bad
//! inputs that must give one clear error line and a non-zero exit.
use std::path::{Path, PathBuf};
use std::process::Command;

fn rcaffe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcaffe"))
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden")
}

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Run and return (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run rcaffe");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Caffe's `caffe test` on lenet_iter_10000.caffemodel printed accuracy
/// 0.8974 and loss 0.319115 (float32 0.31911454): see
/// golden/train/trained/expected.json.
#[test]
fn caffe_trained_lenet_scores_like_caffe_on_full_test_set() {
    let images = Path::new(FMNIST).join("t10k-images-idx3-ubyte.gz");
    if !images.exists() {
        // CI installs Debian's dataset-fashion-mnist (.ci/run); there the data must exist.
        assert!(
            std::env::var_os("CI").is_none(),
            "{} missing on CI",
            images.display()
        );
        eprintln!("skipped: {} not installed", images.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("test_lmdb");
    let (ok, log) = run(rcaffe().args([
        "convert_mnist_data",
        images.to_str().unwrap(),
        &format!("{FMNIST}/t10k-labels-idx1-ubyte.gz"),
        db.to_str().unwrap(),
        "--backend=lmdb",
    ]));
    assert!(ok, "{log}");
    let trained = golden().join("train/trained");
    let net = std::fs::read_to_string(trained.join("lenet_train_test.prototxt"))
        .unwrap()
        .replace("@FMNIST_TEST_LMDB@", db.to_str().unwrap());
    let model = tmp.path().join("net.prototxt");
    std::fs::write(&model, net).unwrap();
    // gflags spelling, as Caffe users' scripts write it.
    let (ok, log) = run(rcaffe().args([
        "test",
        "-model",
        model.to_str().unwrap(),
        "-weights",
        trained
            .join("lenet_iter_10000.caffemodel")
            .to_str()
            .unwrap(),
        "-iterations",
        "100",
    ]));
    assert!(ok, "{log}");
    assert!(log.contains("] accuracy = 0.8974\n"), "{log}");
    let loss: f64 = log
        .lines()
        .find_map(|l| l.split("] Loss: ").nth(1))
        .expect("Loss line")
        .trim()
        .parse()
        .unwrap();
    // Caffe's float32 mean is 0.31911454; summation order (BLAS) moves the
    // last bits, so allow 1e-6.
    assert!((loss - 0.319_114_54).abs() < 1e-6, "loss {loss}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// One line `rcaffe: ...`, non-zero exit, no panic; returns the line.
fn fails(cmd: &mut Command) -> String {
    let (ok, log) = run(cmd);
    assert!(!ok, "expected failure:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let last = log.lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("rcaffe: "), "{log}");
    last
}

#[test]
fn missing_lmdb_names_the_path_and_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let net = std::fs::read_to_string(golden().join("train/trained/lenet_train_test.prototxt"))
        .unwrap()
        .replace("@FMNIST_TEST_LMDB@", "/nonexistent/test_lmdb");
    let model = write(tmp.path(), "net.prototxt", &net);
    let weights = golden().join("train/trained/lenet_iter_10000.caffemodel");
    let line = fails(rcaffe().args([
        "test",
        "--model",
        model.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
    ]));
    assert!(
        line.contains("/nonexistent/test_lmdb") && line.contains("'mnist'"),
        "{line}"
    );
}

#[test]
fn unknown_bottom_names_layer_and_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write(
        tmp.path(),
        "n.prototxt",
        r#"name: "x"
layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "dta" top: "ip" inner_product_param { num_output: 4 } }
"#,
    );
    let line = fails(rcaffe().args([
        "time",
        "--model",
        model.to_str().unwrap(),
        "--iterations",
        "1",
    ]));
    assert!(line.contains("'dta'") && line.contains("'ip'"), "{line}");
}

#[test]
fn shape_mismatch_names_both_layers_and_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write(
        tmp.path(),
        "n.prototxt",
        r#"name: "x"
layer { name: "in" type: "Input" top: "a" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "a" top: "ip" inner_product_param { num_output: 4 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"#,
    );
    let line = fails(rcaffe().args([
        "time",
        "--model",
        model.to_str().unwrap(),
        "--iterations",
        "1",
    ]));
    for want in ["'loss'", "'ip'", "'in'", "2 4 (8)", "5 (5)"] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
}

#[test]
fn weights_of_wrong_shape_name_layer_and_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    // The timing LeNet (Input layers, Caffe's layer names) with ip1 resized.
    let net = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/lenet.prototxt"),
    )
    .unwrap()
    .replace("num_output: 500", "num_output: 400");
    let model = write(tmp.path(), "net.prototxt", &net);
    let weights = golden().join("train/trained/lenet_iter_10000.caffemodel");
    let line = fails(rcaffe().args([
        "test",
        "--model",
        model.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--iterations",
        "1",
    ]));
    assert!(
        line.contains("'ip1'") && line.contains("500 800") && line.contains("400 800"),
        "{line}"
    );
}

#[test]
fn unknown_layer_type_lists_known_types() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write(
        tmp.path(),
        "n.prototxt",
        r#"name: "x"
layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "pb" type: "PriorBox" bottom: "a" top: "p" }
"#,
    );
    let line = fails(rcaffe().args(["time", "--model", model.to_str().unwrap()]));
    assert!(
        line.contains("'pb'") && line.contains("'PriorBox'") && line.contains("Convolution"),
        "{line}"
    );
}

#[test]
fn missing_files_give_one_line() {
    let line = fails(rcaffe().args(["train", "--solver", "/nonexistent/solver.prototxt"]));
    assert!(line.contains("/nonexistent/solver.prototxt"), "{line}");
    assert_eq!(line.matches("No such file").count(), 1, "{line}");
    let tmp = tempfile::tempdir().unwrap();
    let garbage = write(
        tmp.path(),
        "w.caffemodel",
        "\u{1}\u{2}garbage, not a protobuf",
    );
    let model = write(
        tmp.path(),
        "n.prototxt",
        r#"layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 1 } } }"#,
    );
    let line = fails(rcaffe().args([
        "test",
        "--model",
        model.to_str().unwrap(),
        "--weights",
        garbage.to_str().unwrap(),
    ]));
    assert!(line.contains("w.caffemodel"), "{line}");
}
