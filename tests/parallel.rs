//! Data-parallel training on CPU replicas (`rcaffe::parallel`,
//! `rcaffe train --cpu_replicas N`), against Caffe 1.0's `--gpu all`
//! semantics:
//! - N replicas × batch B equal one replica × batch N·B on the same
//!   records: replica r keeps records r, r+N, ..., so the union of the N
//!   shards' batches of an iteration is exactly the single run's batch, and
//!   the mean of the N per-shard mean gradients is the single run's mean
//!   gradient (only the summation order differs);
//! - shared weights and `iter_size` work;
//! - SIGINT stops every replica at the same iteration with one snapshot that
//!   resumes; a replica that fails ends the run with its error at once.
//!
//! Data is made at run time: synthetic 28×28 "digits" in an LMDB.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::Backend;
use rcaffe::data::datum::encode_raw_datum;
use rcaffe::data::LmdbWriter;
use rcaffe::parallel::{train_replicas, CpuGroup, ReplicaConfig, ReplicaOutcome};
use rcaffe::proto::caffe::SolverParameter;
use rcaffe::proto::text;
use rcaffe::solver::{Solver, SolverAction};

/// `n` records `%08d` of 1×28×28 bytes: label `i % 10` draws a bright bar
/// at a label-dependent place over deterministic noise; record `corrupt`
/// (if any) is not a Datum.
fn make_lmdb(path: &Path, n: usize, corrupt: Option<usize>) {
    let mut w = LmdbWriter::create(path).unwrap();
    let mut state: u32 = 12345;
    for i in 0..n {
        let label = (i % 10) as i32;
        let mut px = vec![0u8; 28 * 28];
        for p in px.iter_mut() {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *p = (state >> 24) as u8 / 4;
        }
        let row = 2 + 2 * label as usize;
        for y in row..row + 3 {
            for x in 4..24 {
                px[y * 28 + x] = 255;
            }
        }
        let value = if Some(i) == corrupt {
            b"\xff\xfe this is not a Datum \x01\x02".to_vec()
        } else {
            encode_raw_datum(1, 28, 28, &px, label)
        };
        w.put(format!("{i:08}").as_bytes(), &value);
    }
    w.finish().unwrap();
}

fn data_layers(source: &Path, batch: usize, test_batch: usize) -> String {
    let s = source.display();
    format!(
        r#"
        layer {{ name: "mnist" type: "Data" top: "data" top: "label"
                include {{ phase: TRAIN }}
                transform_param {{ scale: 0.00390625 }}
                data_param {{ source: "{s}" batch_size: {batch} backend: LMDB }} }}
        layer {{ name: "mnist" type: "Data" top: "data" top: "label"
                include {{ phase: TEST }}
                transform_param {{ scale: 0.00390625 }}
                data_param {{ source: "{s}" batch_size: {test_batch} backend: LMDB }} }}
        "#
    )
}

/// Caffe's LeNet (examples/mnist/lenet_train_test.prototxt).
fn lenet(source: &Path, batch: usize) -> String {
    format!(
        r#"name: "LeNet"
        {}
        layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
                param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
                convolution_param {{ num_output: 20 kernel_size: 5 stride: 1
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
        layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
                pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
        layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
                param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
                convolution_param {{ num_output: 50 kernel_size: 5 stride: 1
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
        layer {{ name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
                pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
        layer {{ name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
                param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
                inner_product_param {{ num_output: 500
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
        layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
        layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
                param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
                inner_product_param {{ num_output: 10
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
        layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
                include {{ phase: TEST }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
        "#,
        data_layers(source, batch, 50)
    )
}

/// A small MLP whose two middle layers share one weight matrix (`sq`).
fn shared_mlp(source: &Path, batch: usize) -> String {
    format!(
        r#"name: "SharedMLP"
        {}
        layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
                inner_product_param {{ num_output: 32
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
        layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
        layer {{ name: "ipA" type: "InnerProduct" bottom: "ip1" top: "ipA"
                param {{ name: "sq" }} param {{ name: "sq_b" }}
                inner_product_param {{ num_output: 32
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
        layer {{ name: "reluA" type: "ReLU" bottom: "ipA" top: "ipA" }}
        layer {{ name: "ipB" type: "InnerProduct" bottom: "ipA" top: "ipB"
                param {{ name: "sq" }} param {{ name: "sq_b" }}
                inner_product_param {{ num_output: 32 }} }}
        layer {{ name: "reluB" type: "ReLU" bottom: "ipB" top: "ipB" }}
        layer {{ name: "out" type: "InnerProduct" bottom: "ipB" top: "out"
                inner_product_param {{ num_output: 10
                  weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "accuracy" type: "Accuracy" bottom: "out" bottom: "label" top: "accuracy"
                include {{ phase: TEST }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" top: "loss" }}
        "#,
        data_layers(source, batch, 20)
    )
}

/// LeNet's solver (examples/mnist/lenet_solver.prototxt) with the net
/// inline, no tests and no snapshots.
fn solver(net: &str, max_iter: i32, iter_size: i32) -> SolverParameter {
    let text = format!(
        r#"net_param {{ {net} }}
        base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005
        lr_policy: "inv" gamma: 0.0001 power: 0.75
        display: 0 max_iter: {max_iter} iter_size: {iter_size}
        snapshot: 0 snapshot_after_train: false
        random_seed: 1701 solver_mode: CPU"#
    );
    text::parse_solver_text(&text, "solver.prototxt").unwrap()
}

fn cpu() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

fn weights(s: &Solver) -> Vec<Vec<f32>> {
    let net = s.net();
    (0..net.num_learnable())
        .map(|i| net.learnable(i).data_vec())
        .collect()
}

fn single(param: SolverParameter) -> Vec<Vec<f32>> {
    let mut s = Solver::new(param, cpu()).unwrap();
    s.solve().unwrap();
    weights(&s)
}

fn replicas(param: SolverParameter, n: usize) -> ReplicaOutcome {
    let group = CpuGroup::new(n).unwrap();
    let cfg = ReplicaConfig {
        param,
        resume: None,
    };
    train_replicas(&group, &cfg, &|_| Ok(cpu()), None).unwrap()
}

/// The largest relative L2 difference over the parameter blobs.
fn max_rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            let num: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2))
                .sum();
            let den: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum();
            (num / den.max(1e-30)).sqrt()
        })
        .fold(0.0, f64::max)
}

/// N × batch (and iter_size) against 1 × N·batch on the same records.
fn equivalence(
    name: &str,
    make_net: fn(&Path, usize) -> String,
    n: usize,
    batch: usize,
    iter_size: i32,
    iters: i32,
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    make_lmdb(&db, 640, None);
    let one = single(solver(&make_net(&db, batch * n), iters, iter_size));
    let out = replicas(solver(&make_net(&db, batch), iters, iter_size), n);
    assert_eq!(out.replicas.len(), n);
    for r in &out.replicas {
        assert_eq!(r.iter, iters);
        assert_eq!(r.sync.reduces, iters as u64);
        // The runner also checks this; the point of the test is that the
        // replicas apply bit-identical updates.
        assert_eq!(r.weights_checksum, out.replicas[0].weights_checksum);
    }
    let many = weights(&out.root);
    let d = max_rel_diff(&many, &one);
    let initial = single(solver(&make_net(&db, batch * n), 0, 1));
    let moved = max_rel_diff(&initial, &one);
    // What other data does: one replica of `batch` (the first 1/N of the
    // records the N replicas read together).
    let alone = max_rel_diff(
        &single(solver(&make_net(&db, batch), iters, iter_size)),
        &one,
    );
    println!(
        "{name}: {n} replicas x batch {batch} x iter_size {iter_size} vs 1 x batch {}, {iters} \
         iterations: max relative L2 difference of the final weights {d:.3e} (training moved \
         them by up to {moved:.3e}; one replica of batch {batch} ends {alone:.3e} away)",
        batch * n
    );
    assert!(d < 1e-4, "{name}: relative difference {d:e}");
    // Not a vacuous comparison: training changed the weights, and training
    // on other records ends elsewhere.
    assert!(moved > 1e-3, "{name}: weights barely moved ({moved:e})");
    assert!(alone > 100.0 * d, "{name}: {alone:e} vs {d:e}");
}

#[test]
fn lenet_two_replicas_of_32_equal_one_of_64() {
    equivalence("lenet 2x32", lenet, 2, 32, 1, 20);
}

#[test]
fn lenet_four_replicas_of_16_equal_one_of_64() {
    equivalence("lenet 4x16", lenet, 4, 16, 1, 20);
}

#[test]
fn iter_size_accumulates_before_the_all_reduce() {
    equivalence("lenet 2x16 iter_size 2", lenet, 2, 16, 2, 10);
}

#[test]
fn shared_weights_train_in_parallel() {
    equivalence("shared-weight MLP 2x32", shared_mlp, 2, 32, 1, 20);
}

#[test]
fn only_rank_0_tests_and_every_replica_follows_its_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    make_lmdb(&db, 200, None);
    let mut p = solver(&shared_mlp(&db, 10), 6, 1);
    p.test_iter = vec![2];
    p.test_interval = Some(3);
    let out = replicas(p, 2);
    // Rank 0 tested at iterations 0, 3 and 6 (the last in `solve`).
    assert_eq!(out.root.test_nets().len(), 1);
    let scores = &out.root.test_scores()[0];
    assert_eq!(scores[0].name, "accuracy");
    // Every replica took part in the three post-test agreements and the
    // six end-of-iteration ones.
    for r in &out.replicas {
        assert_eq!(r.sync.actions, 2 + 6, "replica {}", r.rank);
    }
}

#[test]
fn rank_0_actions_reach_every_replica_at_the_same_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    make_lmdb(&db, 100, None);
    let mut p = solver(&shared_mlp(&db, 8), 1000, 1);
    p.snapshot_prefix = Some(dir.path().join("snap").display().to_string());
    p.snapshot_after_train = Some(true);
    // Polled once per iteration (no tests): SIGHUP after iteration 3,
    // SIGINT after iteration 5.
    let mut polls = 0;
    let action: rcaffe::solver::ActionFn = Box::new(move || {
        polls += 1;
        match polls {
            3 => SolverAction::Snapshot,
            5 => SolverAction::Stop,
            _ => SolverAction::None,
        }
    });
    let group = CpuGroup::new(3).unwrap();
    let cfg = ReplicaConfig {
        param: p,
        resume: None,
    };
    let out = train_replicas(&group, &cfg, &|_| Ok(cpu()), Some(action)).unwrap();
    for r in &out.replicas {
        assert_eq!((r.iter, r.stopped_early), (5, true), "replica {}", r.rank);
    }
    assert_eq!(
        solverstates(dir.path()),
        ["snap_iter_3.solverstate", "snap_iter_5.solverstate"]
    );
}

// ------------------------------------------------------- the binary --

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A solver file for the CLI runs: the shared-weight MLP, display every
/// iteration, a test every 5 iterations if `tests`, snapshots under
/// `dir/snap`.
fn cli_solver(dir: &Path, db: &Path, batch: usize, max_iter: i32, tests: bool) -> PathBuf {
    let net = dir.join("net.prototxt");
    write(&net, &shared_mlp(db, batch));
    let s = dir.join(format!("solver_{max_iter}.prototxt"));
    write(
        &s,
        &format!(
            r#"net: "{}"
            {}
            base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "fixed"
            display: 1 max_iter: {max_iter} snapshot: 0
            snapshot_prefix: "{}/snap" random_seed: 3 solver_mode: CPU"#,
            net.display(),
            if tests {
                "test_iter: 2 test_interval: 5"
            } else {
                ""
            },
            dir.display()
        ),
    );
    s
}

/// Iteration numbers of the lines of `log` containing `marker`, e.g.
/// "Replica 1 of 2 stopped at iteration 7; ..." → 7.
fn replica_iters(log: &str, verb: &str) -> Vec<(usize, i32)> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("] Replica ")? + 10..];
            let rank: usize = rest.split(' ').next()?.parse().ok()?;
            let it = &rest[rest.find(&format!(" {verb} at iteration "))? + verb.len() + 15..];
            Some((rank, it.split(';').next()?.parse().ok()?))
        })
        .collect()
}

fn solverstates(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".solverstate"))
        .collect();
    v.sort();
    v
}

/// Wait for `child` at most `limit`; kill it and fail past that.
fn wait_limited(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("rcaffe did not finish within {limit:?}: a replica hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_stops_every_replica_at_one_iteration_and_the_snapshot_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    make_lmdb(&db, 300, None);
    let s = cli_solver(dir.path(), &db, 10, 1_000_000, true);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["train", "-solver"])
        .arg(&s)
        .args(["-cpu_replicas", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log as it comes; SIGINT once iteration 12 is displayed
    // (after the tests at 0, 5 and 10, which only rank 0 runs).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let t = Instant::now();
    let mut sent = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
        log.push_str(&line);
        log.push('\n');
        if sent.is_none() && line.contains("] Iteration 12 (") {
            // SAFETY: kill has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
            sent = Some(Instant::now());
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "no progress:\n{log}"
        );
    }
    let status = wait_limited(&mut child, Duration::from_secs(60));
    reader.join().unwrap();
    let sent = sent.unwrap_or_else(|| panic!("never reached iteration 12:\n{log}"));
    println!(
        "SIGINT: the 2-replica run ended {:.2} s after the signal",
        sent.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{log}");
    assert!(log.contains("Optimization stopped early."), "{log}");
    let stopped = replica_iters(&log, "stopped");
    assert_eq!(stopped.len(), 2, "{log}");
    let k = stopped[0].1;
    assert!(
        stopped.iter().all(|&(_, it)| it == k),
        "replicas stopped at different iterations: {stopped:?}"
    );
    assert!(k > 12, "{log}");
    // Exactly one snapshot: the one of the stop (rank 0 alone writes).
    assert_eq!(
        solverstates(dir.path()),
        [format!("snap_iter_{k}.solverstate")]
    );
    // Workers log nothing at INFO level: one solver dump, rank 0's.
    assert_eq!(
        log.matches("] Initializing solver from parameters").count(),
        1,
        "{log}"
    );

    // Resume on 2 replicas for 4 more iterations.
    let s2 = cli_solver(dir.path(), &db, 10, k + 4, true);
    let state = dir.path().join(format!("snap_iter_{k}.solverstate"));
    let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["train", "--solver"])
        .arg(&s2)
        .arg("--snapshot")
        .arg(&state)
        .args(["--cpu_replicas", "2"])
        .output()
        .unwrap();
    let log2 = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log2}");
    assert!(log2.contains("Resuming from"), "{log2}");
    assert!(log2.contains(&format!("] Iteration {k} (")), "{log2}");
    let finished = replica_iters(&log2, "finished");
    assert_eq!(finished, [(0, k + 4), (1, k + 4)], "{log2}");
    assert!(dir
        .path()
        .join(format!("snap_iter_{}.solverstate", k + 4))
        .exists());
}

#[test]
fn a_failing_replica_ends_the_run_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    // Record 41 is odd: only replica 1 of 2 reads it, in its 6th batch of 4.
    make_lmdb(&db, 300, Some(41));
    let s = cli_solver(dir.path(), &db, 4, 1_000_000, false);
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["train", "--solver"])
        .arg(&s)
        .args(["--cpu_replicas", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let status = wait_limited(&mut child, Duration::from_secs(60));
    let log = reader.join().unwrap();
    println!(
        "corrupt record in replica 1's shard: the run ended {:.2} s after it started",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(1), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("rcaffe: replica 1 of 2:") && last.contains("00000041"),
        "{last}"
    );
    // Replica 1 failed in iteration 5 (its 6th batch): no replica got past it.
    assert!(log.contains("] Iteration 5 ("), "{log}");
    assert!(!log.contains("] Iteration 6 ("), "{log}");
    assert!(solverstates(dir.path()).is_empty(), "{log}");
}

#[test]
fn gpu_requests_are_still_refused_without_a_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    make_lmdb(&db, 20, None);
    let s = cli_solver(dir.path(), &db, 4, 10, false);
    for extra in [
        &["--gpu", "all"][..],
        &["--gpu", "0,1"],
        &["--gpu", "all", "--cpu_replicas", "2"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
            .args(["train", "--solver"])
            .arg(&s)
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains("GPU"), "{extra:?}: {err}");
        assert!(!err.contains("Starting Optimization"), "{extra:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["train", "--solver"])
        .arg(&s)
        .args(["--cpu_replicas", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--cpu_replicas must be at least 1"), "{err}");
}

// ------------------------------------------------- scaling (measured) --

/// `n` random 3×32×32 Datums (CIFAR-10-shaped).
fn make_cifar_lmdb(path: &Path, n: usize) {
    let mut w = LmdbWriter::create(path).unwrap();
    let mut state: u32 = 777;
    for i in 0..n {
        let px: Vec<u8> = (0..3 * 32 * 32)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 24) as u8
            })
            .collect();
        w.put(
            format!("{i:08}").as_bytes(),
            &encode_raw_datum(3, 32, 32, &px, (i % 10) as i32),
        );
    }
    w.finish().unwrap();
}

/// `../shared/bench/cifar10_quick.prototxt` with its Input layer replaced
/// by a Data layer over `db` and Caffe's cifar10_quick fillers.
fn cifar10_quick(db: &Path, batch: usize) -> rcaffe::proto::caffe::NetParameter {
    let bench =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/cifar10_quick.prototxt");
    let text = std::fs::read_to_string(&bench).unwrap();
    let mut net = text::parse_net_text(&text, &bench.display().to_string()).unwrap();
    let data = text::parse_net_text(
        &format!(
            r#"layer {{ name: "cifar" type: "Data" top: "data" top: "label"
                transform_param {{ scale: 0.00390625 }}
                data_param {{ source: "{}" batch_size: {batch} backend: LMDB }} }}"#,
            db.display()
        ),
        "data.prototxt",
    )
    .unwrap();
    assert_eq!(net.layer[0].r#type(), "Input");
    net.layer[0] = data.layer[0].clone();
    let filler = |ty: &str, std: f32| rcaffe::proto::caffe::FillerParameter {
        r#type: Some(ty.into()),
        std: Some(std),
        ..Default::default()
    };
    for l in &mut net.layer {
        if let Some(c) = l.convolution_param.as_mut() {
            c.weight_filler = Some(filler("gaussian", 0.01));
            c.bias_filler = Some(filler("constant", 0.0));
        }
        if let Some(ip) = l.inner_product_param.as_mut() {
            ip.weight_filler = Some(filler("gaussian", 0.1));
            ip.bias_filler = Some(filler("constant", 0.0));
        }
    }
    net
}

/// Seconds per iteration of `n` replicas of `batch` (the difference of a
/// 5- and a 5+`iters`-iteration run, so set-up is not counted), and the
/// all-reduce milliseconds per iteration (total, waiting) of the longer run
/// averaged over replicas.
fn time_replicas(db: &Path, n: usize, batch: usize, iters: i32) -> (f64, f64, f64) {
    let run = |max_iter: i32| {
        let mut p = solver("", max_iter, 1);
        p.net_param = Some(cifar10_quick(db, batch));
        p.base_lr = Some(0.001);
        p.lr_policy = Some("fixed".into());
        let t = Instant::now();
        let out = if n == 1 {
            // The plain solver, no sync at all.
            let mut s = Solver::new(p, cpu()).unwrap();
            s.solve().unwrap();
            None
        } else {
            Some(replicas(p, n))
        };
        (t.elapsed().as_secs_f64(), out)
    };
    let (short, _) = run(5);
    let (long, out) = run(5 + iters);
    let per_iter = (long - short) / f64::from(iters);
    let (mut red, mut wait) = (0.0, 0.0);
    if let Some(out) = out {
        for r in &out.replicas {
            red += r.sync.reduce_time.as_secs_f64() * 1e3 / r.sync.reduces as f64;
            wait += r.sync.reduce_wait.as_secs_f64() * 1e3 / r.sync.reduces as f64;
        }
        red /= n as f64;
        wait /= n as f64;
    }
    (per_iter, red, wait)
}

/// Not a test: `cargo test --release --test parallel scaling -- --ignored
/// --nocapture` prints the figures of BENCHMARKS.md.
#[test]
#[ignore]
fn scaling_cifar10_quick() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cifar_lmdb");
    make_cifar_lmdb(&db, 2000);
    let iters = 20;
    println!("| replicas × batch | effective batch | s/iteration | iterations/s | images/s | all-reduce ms/iteration (waiting) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (n, batch) in [(1, 100), (2, 100), (2, 50), (1, 100)] {
        let (s, red, wait) = time_replicas(&db, n, batch, iters);
        let imgs = (n * batch) as f64 / s;
        let reduce = if n == 1 {
            "– (no sync)".to_string()
        } else {
            format!("{red:.2} ({wait:.2})")
        };
        println!(
            "| {n} × {batch} | {} | {s:.3} | {:.2} | {imgs:.0} | {reduce} |",
            n * batch,
            1.0 / s
        );
    }
}
