//! `rcaffe train` against real Caffe's 50-iteration LeNet runs in
//! `../shared/golden/train/<case>/`: the same solver and initial weights,
//! compared through the log (losses, learning rates, tests), the final
//! snapshot and the solverstate; plus resume from Caffe's own solverstate
//! and an exact snapshot/resume round trip.
//!
//! Tolerances (golden README, issue 5): printed losses agree to one unit of
//! the 6th significant digit for iterations 0-9 and within 1% to 50; the lr
//! column exactly; clipping figures within 1e-5; test accuracy within 0.01
//! (5 of 500 images); final weights within 1e-2 relative L2. AdaGrad and
//! AdaDelta get wider bounds, justified in `Tol::of`.
use std::path::{Path, PathBuf};
use std::process::Command;

use rcaffe::proto::binary;
use rcaffe::proto::caffe::NetParameter;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/train")
}

/// A scratch folder holding `case`'s net (data sources made absolute)
/// and solver, ready to run from.
fn stage(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = golden().join(case);
    let data = golden().join("data").canonicalize().unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".prototxt") {
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("\"../data/", &format!("\"{}/", data.display()));
            std::fs::write(dir.path().join(&name), text).unwrap();
        }
    }
    dir
}

/// Run `rcaffe train` in `dir`; returns the log (stderr).
fn train(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .arg("train")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rcaffe train failed:\n{log}");
    log
}

fn init_weights() -> String {
    golden().join("init.caffemodel").display().to_string()
}

#[derive(Debug, Default)]
struct Parsed {
    /// (iteration, displayed loss), including the final forward-only line.
    losses: Vec<(i32, f64)>,
    lrs: Vec<(i32, String)>,
    /// (iteration, accuracy, loss) per test pass.
    tests: Vec<(i32, f64, f64)>,
    /// (L2 norm, scale factor) of each clipping line.
    clips: Vec<(f64, f64)>,
    multistep: Vec<String>,
}

fn num_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    Some(rest.split([' ', ',', ')']).next().unwrap_or(rest))
}

fn parse(log: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut testing: Option<i32> = None;
    let mut acc = f64::NAN;
    for line in log.lines() {
        let Some((_, msg)) = line.split_once("] ") else {
            continue;
        };
        let iter = || num_after(msg, "Iteration ").and_then(|s| s.parse::<i32>().ok());
        if msg.contains(", Testing net (#") {
            testing = iter();
        } else if msg.contains("Test net output #0: accuracy = ") {
            acc = num_after(msg, "accuracy = ").unwrap().parse().unwrap();
        } else if msg.contains("Test net output #1: loss = ") {
            let loss = num_after(msg, "loss = ").unwrap().parse().unwrap();
            p.tests.push((testing.take().unwrap(), acc, loss));
        } else if msg.starts_with("Iteration ") && msg.contains(", lr = ") {
            let lr = num_after(msg, "lr = ").unwrap().to_string();
            p.lrs.push((iter().unwrap(), lr));
        } else if msg.starts_with("Iteration ") && msg.contains("loss = ") {
            let loss = num_after(msg, "loss = ").unwrap().parse().unwrap();
            p.losses.push((iter().unwrap(), loss));
        } else if msg.starts_with("Gradient clipping") {
            let norm = num_after(msg, "L2 norm ").unwrap().parse().unwrap();
            let scale = num_after(msg, "scale factor ").unwrap().parse().unwrap();
            p.clips.push((norm, scale));
        } else if msg.starts_with("MultiStep Status") {
            p.multistep.push(msg.to_string());
        }
    }
    p
}

fn tsv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// `got` agrees with `want` to 6 significant digits: within one unit of
/// the 6th digit or rtol 1e-5, whichever is larger.
fn six_digits(got: f64, want: f64) -> bool {
    let unit = 10f64.powf(want.abs().log10().floor() - 5.0);
    (got - want).abs() <= (unit * 1.0001).max(1e-5 * want.abs())
}

/// How closely a case must follow Caffe.
struct Tol {
    /// Relative bound for iterations 0-9 (`None`: 6 significant digits).
    first10: Option<f64>,
    /// Relative bound for iterations 10-50.
    rest: f64,
    /// Relative L2 bound for `final_iter_50.caffemodel`.
    model: f64,
}

impl Tol {
    /// The bounds, except where Caffe's own float rounding is
    /// larger. Evidence: a float64 re-computation of these LeNet runs
    /// (same data, initial weights and update formulas in exact arithmetic)
    /// shows
    /// - AdaGrad: rcaffe prints the exact-arithmetic losses to all 6 digits
    ///   through iteration 34 (26.5753662 → 26.5754 at iteration 2), while
    ///   Caffe's OpenBLAS float rounding already shows at iteration 2
    ///   (26.5756) and reaches 2.7e-5 by iteration 6; Caffe's final weights
    ///   are 1.2e-2 from exact arithmetic (rcaffe's 2.3e-3).
    /// - AdaDelta (base_lr 1): rcaffe and Caffe agree to every printed digit
    ///   through iteration 14, then both drift from exact arithmetic (Caffe
    ///   by up to 2.1% in the printed loss and 1.8e-2 in the final
    ///   weights; rcaffe by 2.0% and 1.6e-2). Flipping single last bits
    ///   of the initial weights moves rcaffe's own final weights by 1.6e-2.
    fn of(case: &str) -> Tol {
        match case {
            "adagrad" => Tol {
                first10: Some(3e-5),
                rest: 0.01,
                model: 2e-2,
            },
            "adadelta" => Tol {
                first10: None,
                rest: 0.03,
                model: 3e-2,
            },
            _ => Tol {
                first10: None,
                rest: 0.01,
                model: 1e-2,
            },
        }
    }
}

fn check_losses(case: &str, got: &Parsed, want: &[Vec<String>], col: usize) {
    assert_eq!(got.losses.len(), want.len(), "{case}: loss lines");
    for ((it, loss), row) in got.losses.iter().zip(want) {
        assert_eq!(it.to_string(), row[0], "{case}: iteration order");
        let w: f64 = row[col].parse().unwrap();
        let tol = Tol::of(case);
        if *it < 10 {
            let ok = match tol.first10 {
                None => six_digits(*loss, w),
                Some(r) => (loss - w).abs() <= r * w.abs(),
            };
            assert!(ok, "{case} iter {it}: loss {loss} vs Caffe {w}");
        } else {
            let rtol = tol.rest;
            assert!(
                (loss - w).abs() <= rtol * w.abs(),
                "{case} iter {it}: loss {loss} vs Caffe {w} (rtol {rtol})"
            );
        }
    }
}

fn check_lrs(case: &str, got: &Parsed, want: &[Vec<String>]) {
    let want: Vec<(String, String)> = want
        .iter()
        .filter(|r| r[2] != "NA")
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    let got: Vec<(String, String)> = got
        .lrs
        .iter()
        .map(|(i, lr)| (i.to_string(), lr.clone()))
        .collect();
    assert_eq!(got, want, "{case}: lr column");
}

fn check_tests(case: &str, got: &Parsed, want: &[Vec<String>]) {
    assert_eq!(got.tests.len(), want.len(), "{case}: test passes");
    for ((it, acc, loss), row) in got.tests.iter().zip(want) {
        assert_eq!(it.to_string(), row[0], "{case}: test iterations");
        let (wa, wl): (f64, f64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
        assert!(
            (acc - wa).abs() <= 0.01 + 1e-9,
            "{case} iter {it}: accuracy {acc} vs Caffe {wa}"
        );
        assert!(
            (loss - wl).abs() <= 0.02 * wl,
            "{case} iter {it}: test loss {loss} vs Caffe {wl}"
        );
    }
}

fn blobs(net: &NetParameter) -> Vec<(String, Vec<i64>, Vec<f32>)> {
    net.layer
        .iter()
        .flat_map(|l| {
            l.blobs.iter().map(move |b| {
                let shape = b.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
                (l.name().to_string(), shape, b.data.clone())
            })
        })
        .collect()
}

/// (relative L2 difference, max abs difference) over all values.
fn diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f64) {
    let (mut d2, mut n2, mut max) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        let d = f64::from(x - y);
        d2 += d * d;
        n2 += f64::from(*y) * f64::from(*y);
        max = max.max(d.abs());
    }
    ((d2 / n2).sqrt(), max)
}

fn check_model(case: &str, got: &Path, want: &Path, rel: f64) {
    let g = blobs(&binary::read_net_binary(got).unwrap());
    let w = blobs(&binary::read_net_binary(want).unwrap());
    let names = |v: &[(String, Vec<i64>, Vec<f32>)]| {
        v.iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&g), names(&w), "{case}: snapshot layout");
    let values =
        |v: Vec<(String, Vec<i64>, Vec<f32>)>| v.into_iter().map(|b| b.2).collect::<Vec<_>>();
    let (r, max) = diff(&values(g), &values(w));
    eprintln!("{case}: final weights rel L2 {r:.2e}, max abs {max:.2e}");
    assert!(
        r <= rel,
        "{case}: final weights differ (rel L2 {r}, max abs {max})"
    );
}

/// Train `case` as Caffe did and compare everything the folder keeps.
fn trajectory(case: &str) {
    let dir = stage(case);
    let weights = init_weights();
    let log = train(
        dir.path(),
        &["--solver", "solver.prototxt", "--weights", &weights],
    );
    let got = parse(&log);
    let src = golden().join(case);
    let want = tsv(&src.join("losses.tsv"));
    check_losses(case, &got, &want, 1);
    check_lrs(case, &got, &want);
    check_tests(case, &got, &tsv(&src.join("tests.tsv")));
    if case == "sgd_clip_gradients0.1" {
        assert_eq!(got.clips.len(), 50, "{case}: one clipping line per update");
        for (k, ((norm, scale), row)) in got.clips.iter().zip(&want).enumerate().take(10) {
            let (wn, ws): (f64, f64) = (row[4].parse().unwrap(), row[5].parse().unwrap());
            assert!((norm - wn).abs() <= 1e-5 * wn, "{k}: {norm} vs {wn}");
            assert!((scale - ws).abs() <= 1e-5 * ws, "{k}: {scale} vs {ws}");
        }
    }
    if case == "lr_multistep" {
        assert_eq!(
            got.multistep,
            [
                "MultiStep Status: Iteration 10, step = 1",
                "MultiStep Status: Iteration 20, step = 2",
                "MultiStep Status: Iteration 35, step = 3"
            ]
        );
    }
    let model = src.join("final_iter_50.caffemodel");
    if model.exists() {
        let rel = Tol::of(case).model;
        let got = dir.path().join("final_iter_50.caffemodel");
        check_model(case, &got, &model, rel);
    }
    let state = src.join("final_iter_50.solverstate");
    if state.exists() {
        check_state(case, &dir.path().join("final_iter_50.solverstate"), &state);
    }
}

/// Same layout and metadata as Caffe's solverstate, history values close.
fn check_state(case: &str, got: &Path, want: &Path) {
    let g = binary::read_solver_state(got).unwrap();
    let w = binary::read_solver_state(want).unwrap();
    assert_eq!(g.iter(), w.iter(), "{case}");
    assert_eq!(g.current_step(), w.current_step(), "{case}");
    assert_eq!(g.learned_net(), w.learned_net(), "{case}");
    let shapes = |s: &rcaffe::proto::caffe::SolverState| {
        s.history
            .iter()
            .map(|b| b.shape.clone().unwrap_or_default().dim)
            .collect::<Vec<_>>()
    };
    assert_eq!(shapes(&g), shapes(&w), "{case}: history layout");
    let vals = |s: &rcaffe::proto::caffe::SolverState| {
        s.history.iter().map(|b| b.data.clone()).collect::<Vec<_>>()
    };
    let (r, max) = diff(&vals(&g), &vals(&w));
    eprintln!("{case}: history rel L2 {r:.2e}, max abs {max:.2e}");
    // The history is a velocity (a difference of recent weights), so the
    // same drift that leaves the weights within ~3e-3 shows ~15% here:
    // flipping single last bits of the initial weights moves rcaffe's own
    // SGD history by 13% (weights by 3.5e-3) after 50 iterations.
    assert!(
        r <= 0.25,
        "{case}: history differs (rel L2 {r}, max abs {max})"
    );
}

#[test]
fn sgd() {
    trajectory("sgd");
}

#[test]
fn nesterov() {
    trajectory("nesterov");
}

#[test]
fn adagrad() {
    trajectory("adagrad");
}

#[test]
fn rmsprop() {
    trajectory("rmsprop");
}

#[test]
fn adadelta() {
    trajectory("adadelta");
}

#[test]
fn adam() {
    trajectory("adam");
}

#[test]
fn sgd_iter_size2() {
    trajectory("sgd_iter_size2");
}

#[test]
fn sgd_clip_gradients() {
    trajectory("sgd_clip_gradients0.1");
}

#[test]
fn sgd_l1_decay() {
    trajectory("sgd_l1_decay0.01");
}

#[test]
fn average_loss10() {
    trajectory("average_loss10");
}

#[test]
fn lr_multistep() {
    trajectory("lr_multistep");
}

#[test]
fn lr_step() {
    trajectory("lr_step");
}

#[test]
fn lr_exp() {
    trajectory("lr_exp");
}

#[test]
fn lr_poly() {
    trajectory("lr_poly");
}

#[test]
fn lr_sigmoid() {
    trajectory("lr_sigmoid");
}

/// Resume from Caffe's own `snap_iter_25.solverstate` (and the model it
/// names) to iteration 50, as `train/resume/` did.
#[test]
fn resume_from_caffe_solverstate() {
    let dir = stage("resume");
    for f in ["snap_iter_25.caffemodel", "snap_iter_25.solverstate"] {
        std::fs::copy(golden().join("resume").join(f), dir.path().join(f)).unwrap();
    }
    let log = train(
        dir.path(),
        &[
            "--solver",
            "solver.prototxt",
            "--snapshot",
            "snap_iter_25.solverstate",
        ],
    );
    assert!(
        log.contains("] Resuming from snap_iter_25.solverstate\n"),
        "{log}"
    );
    assert!(log.contains("] SGDSolver: restoring history\n"));
    let got = parse(&log);
    let src = golden().join("resume");
    let want = tsv(&src.join("losses_part2.tsv"));
    check_losses("resume", &got, &want, 1);
    check_lrs("resume", &got, &want);
    check_tests("resume", &got, &tsv(&src.join("tests_part2.tsv")));
    check_model(
        "resume",
        &dir.path().join("snap_iter_50.caffemodel"),
        &src.join("snap_iter_50.caffemodel"),
        1e-2,
    );
}

/// Snapshot at 20, resume to 30 in another process: bit-identical to an
/// uninterrupted run. Batch 100 of the 2000-image set makes the data
/// restart at record 0 exactly at the snapshot, so both runs see the same
/// images (Caffe does not save the data position either).
#[test]
fn snapshot_resume_is_exact() {
    let straight = stage("sgd");
    let net = std::fs::read_to_string(straight.path().join("net.prototxt"))
        .unwrap()
        .replacen("batch_size: 64", "batch_size: 100", 1);
    let solver = "net: \"net.prototxt\"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n\
                  lr_policy: \"multistep\"\ngamma: 0.5\nstepvalue: 15\nstepvalue: 25\n\
                  display: 5\nmax_iter: 30\nsnapshot: 20\nsnapshot_prefix: \"snap\"\n\
                  random_seed: 3\n";
    let resumed = tempfile::tempdir().unwrap();
    for d in [straight.path(), resumed.path()] {
        std::fs::write(d.join("net.prototxt"), &net).unwrap();
        std::fs::write(d.join("solver.prototxt"), solver).unwrap();
    }
    train(straight.path(), &["--solver", "solver.prototxt"]);
    for f in ["snap_iter_20.caffemodel", "snap_iter_20.solverstate"] {
        std::fs::copy(straight.path().join(f), resumed.path().join(f)).unwrap();
    }
    let log = train(
        resumed.path(),
        &[
            "--solver",
            "solver.prototxt",
            "--snapshot",
            "snap_iter_20.solverstate",
        ],
    );
    // The resumed run starts at 20 and keeps the multistep position.
    assert!(log.contains("] Iteration 20, lr = 0.005\n"), "{log}");
    assert!(log.contains("] MultiStep Status: Iteration 25, step = 2\n"));
    for f in ["snap_iter_30.caffemodel", "snap_iter_30.solverstate"] {
        let a = std::fs::read(straight.path().join(f)).unwrap();
        let b = std::fs::read(resumed.path().join(f)).unwrap();
        assert!(
            a == b,
            "{f} differs between the straight and the resumed run"
        );
    }
}

#[test]
fn bad_invocations_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["train"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Need a solver definition"), "{err}");
    let (code, err) = run(&[
        "train",
        "-solver",
        "s.prototxt",
        "-weights",
        "a",
        "-snapshot",
        "b",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not both"), "{err}");
    let (code, err) = run(&["train", "-solver", "s", "-sigint_effect", "pause"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("Invalid signal effect \"pause\""), "{err}");
    let (code, err) = run(&["train", "--solver=missing.prototxt"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing.prototxt"), "{err}");
    let gpu_cases: [&[&str]; 3] = [
        &["train", "--solver", "s.prototxt", "--gpu", "0"],
        &["test", "--model", "m", "--weights", "w", "-gpu", "all"],
        &["time", "--model", "m", "--gpu=0,1"],
    ];
    for args in gpu_cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("no usable GPU"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let (code, err) = run(&["device_query", "--gpu", "0"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no usable GPU"), "{err}");
    let (code, err) = run(&["device_query"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("CPU"), "{err}");
}

/// SIGHUP takes a snapshot and training goes on; SIGINT stops after the
/// current iteration with the final snapshot (Caffe's default effects).
#[test]
fn sighup_snapshots_and_sigint_stops() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = stage("sgd");
    let solver = "net: \"net.prototxt\"\nbase_lr: 0.01\nlr_policy: \"fixed\"\ndisplay: 1\n\
                  max_iter: 100000\nsnapshot_prefix: \"sig\"\nrandom_seed: 1\n";
    std::fs::write(dir.path().join("solver.prototxt"), solver).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["train", "--solver", "solver.prototxt"])
        // Caffe's defaults, spelled as Caffe users write them.
        .args(["-sighup_effect", "snapshot", "--sigint_effect=stop"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let wait_for = |needle: &str, log: &mut String| loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains(needle) {
                    return;
                }
            }
            Err(_) => panic!("no '{needle}' in the log:\n{log}"),
        }
    };
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    };
    wait_for("] Iteration 2, lr = ", &mut log);
    signal("-HUP");
    wait_for(
        "Snapshotting solver state to binary proto file sig_iter_",
        &mut log,
    );
    wait_for("] Iteration ", &mut log);
    signal("-INT");
    wait_for("caffe.cpp:250] Optimization Done.", &mut log);
    let status = child.wait().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("] Optimization stopped early.\n"), "{log}");
    assert!(
        !log.contains("solver.cpp:332]"),
        "no solver 'Done' after a stop:\n{log}"
    );
    let snaps: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".solverstate"))
        .collect();
    // One from SIGHUP, one final after SIGINT.
    assert_eq!(snaps.len(), 2, "{snaps:?}\n{log}");
}

/// `rcaffe convert_mnist_data` + `rcaffe test` on Caffe's trained LeNet
/// and the full Fashion-MNIST test set: Caffe printed accuracy = 0.8974
/// and loss = 0.319115 (`trained/expected.json`).
#[test]
fn trained_lenet_scores_like_caffe() {
    let idx = Path::new("/usr/share/datasets/fashion-mnist");
    if !idx.join("t10k-images-idx3-ubyte.gz").exists() {
        eprintln!("skipped: Debian's dataset-fashion-mnist is not installed (CI installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}:\n{log}");
        log
    };
    let images = idx.join("t10k-images-idx3-ubyte.gz").display().to_string();
    let labels = idx.join("t10k-labels-idx1-ubyte.gz").display().to_string();
    let log = run(&[
        "convert_mnist_data",
        &images,
        &labels,
        "test_lmdb",
        "--backend=lmdb",
    ]);
    assert!(log.contains("] Processed 10000 files.\n"), "{log}");
    let trained = golden().join("trained");
    let net = std::fs::read_to_string(trained.join("lenet_train_test.prototxt"))
        .unwrap()
        .replace("@FMNIST_TEST_LMDB@", "test_lmdb")
        .replace("@FMNIST_TRAIN_LMDB@", "test_lmdb");
    std::fs::write(dir.path().join("net.prototxt"), net).unwrap();
    let weights = trained.join("lenet_iter_10000.caffemodel");
    let log = run(&[
        "test",
        "-model",
        "net.prototxt",
        "-weights",
        &weights.display().to_string(),
        "-iterations",
        "100",
    ]);
    assert!(log.contains(" caffe.cpp:321] accuracy = 0.8974\n"), "{log}");
    let value = |prefix: &str| -> f64 {
        let line = log.lines().find(|l| l.contains(prefix)).unwrap();
        num_after(line, prefix).unwrap().parse().unwrap()
    };
    assert!((value("] Loss: ") - 0.3191145).abs() < 1e-5 * 0.32);
    assert!((value("] loss = ") - 0.3191145).abs() < 1e-5 * 0.32);
    let batches = tsv(&trained.join("batches.tsv"));
    for row in &batches {
        let line = format!("] Batch {}, accuracy = {}\n", row[0], row[1]);
        assert!(log.contains(&line), "missing {line:?}");
    }
}
