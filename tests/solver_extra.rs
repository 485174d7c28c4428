//! `rcaffe train` on the golden LeNet (`../shared/golden/train/`): the
//! solver's debug output, test loss, divergence stop and `--snapshot` given
//! a model. A few iterations each.
use std::path::{Path, PathBuf};
use std::process::Command;

use rcaffe::proto::binary;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/train")
}

/// A scratch folder with the golden net (data paths made absolute) and
/// `solver` as `solver.prototxt`.
fn stage(solver: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = golden().join("data").canonicalize().unwrap();
    let net = std::fs::read_to_string(golden().join("sgd/net.prototxt"))
        .unwrap()
        .replace("\"../data/", &format!("\"{}/", data.display()));
    std::fs::write(dir.path().join("net.prototxt"), net).unwrap();
    std::fs::write(dir.path().join("solver.prototxt"), solver).unwrap();
    dir
}

/// Run `rcaffe train --solver solver.prototxt <args>` in `dir`: (exit
/// code, log).
fn train(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["train", "--solver", "solver.prototxt"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn init() -> String {
    golden().join("init.caffemodel").display().to_string()
}

/// The messages (after `] `) of the log lines with severity `sev`.
fn messages(log: &str, sev: char) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with(sev))
        .filter_map(|l| l.split_once("] ").map(|(_, m)| m))
        .collect()
}

fn value_after(msg: &str, marker: &str) -> f64 {
    let rest = &msg[msg.find(marker).unwrap() + marker.len()..];
    rest.split([' ', ';', ')', ','])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn debug_info_and_test_loss_lines() {
    let dir = stage(
        "net: \"net.prototxt\"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: \"fixed\"\n\
         display: 2\nmax_iter: 3\ntest_iter: 1\ntest_interval: 3\ntest_compute_loss: true\n\
         test_initialization: false\ndebug_info: true\nsnapshot_after_train: false\n\
         random_seed: 1\n",
    );
    let (code, log) = train(dir.path(), &["--weights", &init()]);
    assert_eq!(code, Some(0), "{log}");
    let info = messages(&log, 'I');
    let count = |needle: &str| info.iter().filter(|m| m.contains(needle)).count();
    // Display iterations 0 and 2 of the train net, and the test pass at 3.
    assert_eq!(count("    [Forward] Layer conv1, top blob conv1 data: "), 3);
    assert_eq!(count("    [Forward] Layer conv1, param blob 1 data: "), 3);
    assert_eq!(
        count("    [Forward] Layer accuracy, top blob accuracy data: "),
        1
    );
    assert_eq!(
        count("    [Backward] Layer loss, bottom blob ip2 diff: "),
        2
    );
    assert_eq!(
        count("    [Backward] Layer relu1, bottom blob ip1 diff: "),
        2
    );
    assert_eq!(count("    [Backward] Layer conv1, param blob 0 diff: "), 2);
    // The data layer's tops and conv1's bottom get no gradient.
    assert_eq!(count("bottom blob data diff"), 0);
    assert_eq!(count("    [Update] Layer ip2, param 1 data: "), 2);
    let all: Vec<&str> = messages(&log, 'E')
        .into_iter()
        .filter(|m| m.starts_with("    [Backward] All net params (data, diff): L1 norm = ("))
        .collect();
    assert_eq!(all.len(), 2, "{log}");
    // Caffe's site numbers, and the glog field layout.
    let line = log
        .lines()
        .find(|l| l.contains("[Forward] Layer conv1, top blob"))
        .unwrap();
    assert!(line.contains(" net.cpp:593] "), "{line}");
    assert_eq!(line.split_whitespace().nth(3), Some("net.cpp:593]"));

    // The loss top's mean |x| is the loss itself, as the display shows it.
    let fwd_loss = info
        .iter()
        .find(|m| m.starts_with("    [Forward] Layer loss, top blob loss data: "))
        .map(|m| value_after(m, "data: "))
        .unwrap();
    let shown = info
        .iter()
        .find(|m| m.starts_with("Iteration 0 ("))
        .map(|m| value_after(m, "loss = "))
        .unwrap();
    assert_eq!(fwd_loss, shown);
    // SGD's first step is lr·g (no history yet): [Update] diff = lr · [Backward] diff.
    let grad = info
        .iter()
        .find(|m| m.starts_with("    [Backward] Layer ip2, param blob 0 diff: "))
        .map(|m| value_after(m, "diff: "))
        .unwrap();
    let step = info
        .iter()
        .find(|m| m.starts_with("    [Update] Layer ip2, param 0 data: "))
        .map(|m| value_after(m, "; diff: "))
        .unwrap();
    assert!(
        (step - 0.01 * grad).abs() <= 1e-3 * step,
        "{step} vs {grad}"
    );

    // test_compute_loss: the mean of the net's loss over the test batches,
    // here the weighted loss output itself.
    let test_loss = info
        .iter()
        .find(|m| m.starts_with("Test loss: "))
        .map(|m| value_after(m, "Test loss: "))
        .unwrap();
    let out = info
        .iter()
        .find(|m| m.starts_with("    Test net output #1: loss = "))
        .map(|m| value_after(m, "loss = "))
        .unwrap();
    assert_eq!(test_loss, out);
}

#[test]
fn a_diverging_run_names_the_layer_and_keeps_the_last_good_snapshot() {
    let dir = stage(
        "net: \"net.prototxt\"\nbase_lr: 1000\nmomentum: 0.9\nlr_policy: \"fixed\"\n\
         display: 1\nmax_iter: 30\nsnapshot: 1\nsnapshot_prefix: \"div\"\nrandom_seed: 1\n",
    );
    let (code, log) = train(dir.path(), &["--weights", &init()]);
    assert_eq!(code, Some(1), "{log}");
    let last = log.lines().last().unwrap();
    assert!(
        last.starts_with("rcaffe: Training diverged at iteration "),
        "{last}"
    );
    assert!(last.contains("; first non-finite value: "), "{last}");
    assert!(last.contains(" of layer '"), "{last}");
    let at: i32 = last["rcaffe: Training diverged at iteration ".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(at >= 1, "{last}");
    // The snapshots before the failure are all there and finite; none after.
    let good = format!("div_iter_{at}.caffemodel");
    assert!(
        last.contains(&format!("the last good snapshot is {good} / ")),
        "{last}"
    );
    for n in 1..=at {
        let net =
            binary::read_net_binary(&dir.path().join(format!("div_iter_{n}.caffemodel"))).unwrap();
        let mut values = net
            .layer
            .iter()
            .flat_map(|l| &l.blobs)
            .flat_map(|b| &b.data);
        assert!(values.all(|v| v.is_finite()), "div_iter_{n}");
        assert!(dir
            .path()
            .join(format!("div_iter_{n}.solverstate"))
            .exists());
    }
    assert!(!dir
        .path()
        .join(format!("div_iter_{}.caffemodel", at + 1))
        .exists());
    assert!(!log.contains("Optimization Done"), "{log}");
}

#[test]
fn snapshot_given_a_caffemodel_resumes_from_its_solverstate() {
    let solver = "net: \"net.prototxt\"\nbase_lr: 0.01\nmomentum: 0.9\nlr_policy: \"fixed\"\n\
                  display: 1\nmax_iter: 2\nsnapshot: 2\nsnapshot_prefix: \"snap\"\n\
                  random_seed: 1\n";
    let dir = stage(solver);
    let (code, log) = train(dir.path(), &["--weights", &init()]);
    assert_eq!(code, Some(0), "{log}");
    std::fs::write(
        dir.path().join("solver.prototxt"),
        solver.replace("max_iter: 2", "max_iter: 3"),
    )
    .unwrap();
    let (code, log) = train(dir.path(), &["--snapshot", "snap_iter_2.caffemodel"]);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains(
            "] snap_iter_2.caffemodel is a model; resuming from its solver state \
             snap_iter_2.solverstate\n"
        ),
        "{log}"
    );
    assert!(log.contains("] Iteration 2, lr = 0.01\n"), "{log}");
    assert!(dir.path().join("snap_iter_3.solverstate").exists());

    // Without the state next to it: one line saying what to pass.
    std::fs::remove_file(dir.path().join("snap_iter_2.solverstate")).unwrap();
    let (code, log) = train(dir.path(), &["--snapshot", "snap_iter_2.caffemodel"]);
    assert_eq!(code, Some(1), "{log}");
    let last = log.lines().last().unwrap();
    assert!(
        last.contains("snap_iter_2.caffemodel is a model, not a solver state")
            && last.contains("--snapshot snap_iter_2.solverstate")
            && last.contains("--weights snap_iter_2.caffemodel"),
        "{last}"
    );
}
