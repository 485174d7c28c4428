//! Multi-GPU training through NCCL (`rcaffe::parallel::NcclGroup`,
//! `rcaffe train --gpu 0,1`).
//!
//! Always: `--gpu 0,1` / `--gpu all` on a machine without a usable GPU
//! fails with one clear error and exit status 1, never a panic; a repeated
//! id is refused before anything is probed; without NCCL the group names
//! `libnccl.so.2` and the fix; with NCCL present, a replica waiting for its
//! peers is released by the group's abort.
//!
//! On a GPU (skipped with a note otherwise, unless RCAFFE_REQUIRE_CUDA=1,
//! which makes that a failure):
//! - one replica through NCCL trains exactly as the plain solver (1e-6
//!   relative: a one-rank all-reduce is a copy, and no scaling happens);
//! - with two GPUs, 2 replicas × batch B end where 1 × batch 2B does on the
//!   same records (1e-4 relative: only the summation order differs), as the
//!   CPU replicas of tests/parallel.rs.
#![cfg(feature = "cuda")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::cuda::probe::{self, Lib};
use rcaffe::backend::cuda::{device_count, open_backend};
use rcaffe::backend::Backend;
use rcaffe::data::datum::encode_raw_datum;
use rcaffe::data::LmdbWriter;
use rcaffe::net::{Net, NetOptions};
use rcaffe::parallel::{train_replicas, NcclGroup, ReplicaConfig, SyncGroup};
use rcaffe::proto::caffe::{Phase, SolverParameter};
use rcaffe::proto::text;
use rcaffe::solver::Solver;

fn required() -> bool {
    std::env::var("RCAFFE_REQUIRE_CUDA").as_deref() == Ok("1")
}

/// Skip (or, when required, fail) because of `why`.
fn skip(why: &str) {
    if required() {
        panic!("RCAFFE_REQUIRE_CUDA=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// GPU `ordinal`'s backend, or None (after saying why).
fn gpu(ordinal: usize) -> Option<Arc<dyn Backend>> {
    match open_backend(ordinal) {
        Ok(be) => Some(be),
        Err(e) => {
            skip(&format!(
                "the CUDA backend cannot start on GPU {ordinal}: {e}"
            ));
            None
        }
    }
}

/// An NCCL group of `n`, or None (after saying why).
fn group(n: usize) -> Option<NcclGroup> {
    match NcclGroup::new(n) {
        Ok(g) => Some(g),
        Err(e) => {
            skip(&format!("NCCL is not usable: {e}"));
            None
        }
    }
}

/// The rcaffe binary: cargo's, or `RCAFFE_BIN` where this test executable
/// was carried to a machine without the build tree (scripts/gpu-check.sh).
fn rcaffe(args: &[&str]) -> (Option<i32>, String) {
    let bin = std::env::var_os("RCAFFE_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rcaffe").into());
    let out = Command::new(bin).args(args).output().expect("run rcaffe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

// ---------------------------------------------------------- no GPU --

#[test]
fn several_gpus_without_a_gpu_fail_clearly() {
    let driver = probe::probe(Lib::Driver).is_ok();
    for gpu in ["0,1", "all"] {
        let args = ["train", "--solver", "missing_solver.prototxt", "--gpu", gpu];
        let (code, text) = rcaffe(&args);
        // Whatever this machine has, the run ends with an error, not a
        // panic (with GPUs: the missing solver file).
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        if !driver {
            assert!(text.contains("no usable GPU"), "{args:?}: {text}");
            assert!(text.contains("libcuda.so.1"), "{args:?}: {text}");
            assert!(
                text.contains("install the NVIDIA driver"),
                "{args:?}: {text}"
            );
        }
    }
}

#[test]
fn a_repeated_gpu_id_is_refused_first() {
    let args = ["train", "--solver", "s.prototxt", "--gpu", "1,0,1"];
    let (code, text) = rcaffe(&args);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("names GPU 1 twice"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn missing_nccl_is_named_with_the_fix() {
    if probe::probe(Lib::Nccl).is_ok() {
        eprintln!("SKIPPED: NCCL is installed here; its absence is tested elsewhere");
        return;
    }
    let e = NcclGroup::new(2)
        .err()
        .expect("no NCCL, no group")
        .to_string();
    assert!(e.contains("NCCL was not found"), "{e}");
    assert!(e.contains("libnccl.so.2"), "{e}");
    assert!(e.contains("nvidia-nccl-cu"), "{e}");
    assert!(NcclGroup::new(0).is_err());
}

/// Host-side only (NCCL's library, no GPU): a net without parameters needs
/// no communicator, so a replica waits at the group's barrier, and the
/// group's abort releases it with the failing replica's error.
#[test]
fn a_failed_replica_releases_the_others() {
    if probe::probe(Lib::Nccl).is_err() {
        eprintln!("SKIPPED: no NCCL library here");
        return;
    }
    let Ok(group) = NcclGroup::new(2) else {
        eprintln!("SKIPPED: NCCL loads but cannot create an id here");
        return;
    };
    let p = text::parse_net_text(
        r#"
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "r" type: "ReLU" bottom: "x" top: "y" }
        "#,
        "t.prototxt",
    )
    .unwrap();
    let mut s1 = group.join(1).unwrap();
    assert!(group.join(1).is_err());
    assert!(group.join(2).is_err());
    let waiter = std::thread::spawn(move || {
        let mut n = Net::new(
            &p,
            &NetOptions::new(Phase::Train),
            Arc::new(CpuBackend::new()),
        )
        .unwrap();
        s1.all_reduce_grads(&mut n).unwrap_err().to_string()
    });
    std::thread::sleep(std::time::Duration::from_millis(30));
    group.abort(0, "corrupt record");
    let e = waiter.join().unwrap();
    assert!(e.contains("replica 0 failed: corrupt record"), "{e}");
    assert_eq!(group.first_failure(), Some(0));
}

// ------------------------------------------------------------- GPU --

/// `n` records `%08d` of 1×28×28 bytes: label `i % 10` draws a bright bar
/// at a label-dependent place over deterministic noise (tests/parallel.rs).
fn make_lmdb(path: &Path, n: usize) {
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
        w.put(
            format!("{i:08}").as_bytes(),
            &encode_raw_datum(1, 28, 28, &px, label),
        );
    }
    w.finish().unwrap();
}

/// DummyData (random inputs, fixed labels) + InnerProduct + SoftmaxWithLoss.
fn dummy_net(batch: usize) -> String {
    format!(
        r#"name: "Tiny"
        layer {{ name: "data" type: "DummyData" top: "data" top: "label"
                dummy_data_param {{
                  data_filler {{ type: "gaussian" std: 1 }}
                  data_filler {{ type: "constant" value: 2 }}
                  shape {{ dim: {batch} dim: 13 }} shape {{ dim: {batch} }} }} }}
        layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
                inner_product_param {{ num_output: 5
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
        "#
    )
}

/// Data (sharded per replica) + InnerProduct + SoftmaxWithLoss.
fn lmdb_net(source: &Path, batch: usize) -> String {
    format!(
        r#"name: "TinyLmdb"
        layer {{ name: "mnist" type: "Data" top: "data" top: "label"
                include {{ phase: TRAIN }}
                transform_param {{ scale: 0.00390625 }}
                data_param {{ source: "{}" batch_size: {batch} backend: LMDB }} }}
        layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
                inner_product_param {{ num_output: 10
                  weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
        "#,
        source.display()
    )
}

fn solver(net: &str, max_iter: i32) -> SolverParameter {
    let text = format!(
        r#"net_param {{ {net} }}
        base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005
        lr_policy: "inv" gamma: 0.0001 power: 0.75
        display: 0 max_iter: {max_iter}
        snapshot: 0 snapshot_after_train: false
        random_seed: 1701"#
    );
    text::parse_solver_text(&text, "solver.prototxt").unwrap()
}

fn weights(s: &Solver) -> Vec<Vec<f32>> {
    let net = s.net();
    (0..net.num_learnable())
        .map(|i| net.learnable(i).data_vec())
        .collect()
}

fn single(param: SolverParameter, be: Arc<dyn Backend>) -> Vec<Vec<f32>> {
    let mut s = Solver::new(param, be).unwrap();
    s.solve().unwrap();
    weights(&s)
}

fn nccl_run(
    group: &NcclGroup,
    param: SolverParameter,
    backends: &[Arc<dyn Backend>],
) -> Vec<Vec<f32>> {
    let cfg = ReplicaConfig {
        param,
        resume: None,
    };
    let out = train_replicas(group, &cfg, &|r| Ok(backends[r].clone()), None).unwrap();
    let iters = cfg.param.max_iter();
    assert_eq!(out.replicas.len(), backends.len());
    for r in &out.replicas {
        assert_eq!(r.iter, iters);
        assert_eq!(r.sync.reduces, iters as u64);
        assert_eq!(r.weights_checksum, out.replicas[0].weights_checksum);
    }
    weights(&out.root)
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

#[test]
fn one_replica_through_nccl_trains_as_the_plain_solver() {
    let Some(be) = gpu(0) else {
        return;
    };
    let Some(g) = group(1) else {
        return;
    };
    let iters = 8;
    let plain = single(solver(&dummy_net(16), iters), be.clone());
    let nccl = nccl_run(&g, solver(&dummy_net(16), iters), std::slice::from_ref(&be));
    let initial = single(solver(&dummy_net(16), 0), be);
    let d = max_rel_diff(&nccl, &plain);
    let moved = max_rel_diff(&initial, &plain);
    println!("1 NCCL replica vs plain solver: {d:.3e} (training moved the weights {moved:.3e})");
    assert!(d <= 1e-6, "relative difference {d:e}");
    assert!(moved > 1e-3, "weights barely moved ({moved:e})");
}

#[test]
fn two_gpus_of_batch_b_equal_one_of_batch_2b() {
    let Some(be0) = gpu(0) else {
        return;
    };
    let n = match device_count() {
        Ok(n) => n,
        Err(e) => {
            skip(&format!("cannot count the GPUs: {e}"));
            return;
        }
    };
    if n < 2 {
        // One GPU is a complete lent machine: not a failure even when
        // required.
        eprintln!("SKIPPED: {n} GPU(s); this test needs two");
        return;
    }
    let Some(be1) = gpu(1) else {
        return;
    };
    let Some(g) = group(2) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("train_lmdb");
    make_lmdb(&db, 640);
    let (batch, iters) = (32, 20);
    let one = single(solver(&lmdb_net(&db, 2 * batch), iters), be0.clone());
    let two = nccl_run(
        &g,
        solver(&lmdb_net(&db, batch), iters),
        &[be0.clone(), be1],
    );
    let initial = single(solver(&lmdb_net(&db, 2 * batch), 0), be0.clone());
    let alone = single(solver(&lmdb_net(&db, batch), iters), be0);
    let d = max_rel_diff(&two, &one);
    let moved = max_rel_diff(&initial, &one);
    let other = max_rel_diff(&alone, &one);
    println!(
        "2 GPUs x batch {batch} vs 1 x batch {}: {d:.3e} (training moved the weights \
         {moved:.3e}; one GPU of batch {batch} ends {other:.3e} away)",
        2 * batch
    );
    assert!(d < 1e-4, "relative difference {d:e}");
    assert!(moved > 1e-3, "weights barely moved ({moved:e})");
    assert!(other > 100.0 * d, "{other:e} vs {d:e}");
}
