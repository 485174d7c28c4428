//! Every net of `../shared/zoo` (issue 4, acceptance points 2 and 3).
//!
//! Each NetParameter file that `PARSE_CHECK.md` marks OK has one test here
//! (plus the net inside `lenet_consolidated_solver.prototxt`): it is loaded
//! with upgrades, its data layers are swapped for DummyData of the same
//! shapes and every batch is capped at 1 (`rcaffe::testing::zoo`); then
//! - it must build in TRAIN and in TEST phase (TEST with the stages its
//!   solver's test_state gives);
//! - in TRAIN (where `caffe time` runs) it runs forward and backward once.
//!   Nets without a loss (deploy nets) get `force_backward` and random
//!   diffs on their outputs, so that every layer's backward runs, and
//!   random values in parameters that no filler set (they would come from
//!   a .caffemodel). A net with a loss keeps Caffe's need-backward
//!   analysis: forcing backward through its Accuracy layers fails in Caffe
//!   too. The loss, outputs and every parameter gradient must be finite
//!   and some gradient non-zero;
//! - in TEST it runs forward once (accuracy layers, global BatchNorm stats).
//!
//! BatchNorm's global statistics start as mean 0, variance 0, factor 0, so
//! with `use_global_stats` (TEST, and ResNet/MobileNet deploy nets) every
//! BatchNorm layer would divide by sqrt(eps) and a deep net overflow to
//! NaN, in Caffe as here; the test sets variance and factor to 1 first, as
//! trained statistics would be.
//!
//! Nets with Python layers must fail in both phases with the registry's
//! "Python layers are not supported" error naming layer, module and class;
//! files that PARSE_CHECK marks FAIL (Caffe forks' fields) must fail to
//! parse at the same line:col as protobuf's parser, and with the fork's
//! fields stripped, Faster R-CNN stops at its Python layers and SSD at its
//! first fork type with the unknown-type error. Every BVLC layer type is
//! registered, so every other net must build and run (FCN's deploy net with
//! its Deconvolution layers included).
//!
//! Run with `-- --nocapture` to see one table row per net and phase
//! (net | phase | result | build ms | run ms).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::Backend;
use rcaffe::net::spec::is_loss_layer;
use rcaffe::net::{Net, NetOptions};
use rcaffe::proto::caffe::{NetParameter, Phase};
use rcaffe::proto::text::parse_net_text;
use rcaffe::proto::upgrade::{load_net_text, load_solver, upgrade_net_as_needed};
use rcaffe::testing::zoo::{shrink_batch, swap_data_layers_with, DataShapeHints};
use rcaffe::Error;

fn zoo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/zoo")
}

/// How a net is run.
#[derive(Clone, Copy)]
struct Run {
    /// The stages of each TEST net its solver builds (test_state); one
    /// stage-less TEST net by default.
    test_states: &'static [&'static [&'static str]],
    /// A phase in which the net cannot be built (as in Caffe), with a piece
    /// of the expected error; forward/backward then run in the other phase.
    fails_in: Option<(Phase, &'static str)>,
    /// The batch cap (1 unless the net folds time into the batch axis).
    batch: usize,
    /// Shapes only the data files know.
    hints: fn() -> DataShapeHints,
    /// A net-specific edit after the swap.
    adjust: fn(&mut NetParameter),
}

const RUN: Run = Run {
    test_states: &[&[]],
    fails_in: None,
    batch: 1,
    hints: DataShapeHints::default,
    adjust: |_| {},
};

enum Expect {
    Runs(Run),
    /// Fails in both phases on a Python layer (TEST with these stages).
    Python(&'static [&'static str]),
}

/// The hdf5_classification example writes 4 features per sample.
fn hdf5_hints() -> DataShapeHints {
    DataShapeHints {
        tops: vec![("data".into(), vec![4])],
        ..Default::default()
    }
}

/// LRCN's deploy net folds 16 time steps × 10 streams into its batch axis of
/// 160 and unfolds it with Reshape { 16 10 ... }: keep the 16 steps of one
/// stream (batch 16) and make the Reshape layers agree.
fn lrcn_one_stream(p: &mut NetParameter) {
    for lp in &mut p.layer {
        if let Some(r) = lp.reshape_param.as_mut() {
            let s = r.shape.as_mut().expect("LRCN reshape has a shape");
            assert_eq!(&s.dim[..2], &[16, 10], "LRCN reshape dims changed");
            s.dim[1] = 1;
        }
    }
}

/// What happened to one net in one phase, for the table.
fn row(file: &str, phase: &str, result: &str, build_ms: u128, run_ms: Option<u128>) {
    let run = run_ms.map_or("-".to_string(), |r| r.to_string());
    eprintln!("| {file} | {phase} | {result} | {build_ms} | {run} |");
}

/// (label, options) of the TRAIN net and of each TEST net.
fn phases(test_states: &[&[&str]]) -> Vec<(String, NetOptions)> {
    let mut v = vec![("TRAIN".to_string(), NetOptions::new(Phase::Train))];
    for stages in test_states {
        let mut o = NetOptions::new(Phase::Test);
        o.stages = stages.iter().map(|s| s.to_string()).collect();
        let label = if stages.is_empty() {
            "TEST".to_string()
        } else {
            format!("TEST {}", stages.join(","))
        };
        v.push((label, o));
    }
    v
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// Deterministic values in [0, 1) for Input tops.
fn uniform(n: usize, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn input_tops(p: &NetParameter) -> Vec<String> {
    p.layer
        .iter()
        .filter(|l| l.r#type() == "Input")
        .flat_map(|l| l.top.iter().cloned())
        .collect()
}

/// How to exercise a built net.
struct Pass<'a> {
    inputs: &'a [String],
    backward: bool,
    /// A net without a loss: zero params get random values first.
    deploy: bool,
    /// Backward must reach some parameter.
    want_grad: bool,
}

/// Forward (and backward) once; checks that values are finite.
fn exercise(net: &mut Net, pass: &Pass) -> Result<(), String> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    if pass.deploy {
        randomize_zero_params(net, &mut seed);
    }
    let inputs = pass.inputs;
    let backward = pass.backward;
    for name in inputs {
        if let Some(n) = net.blob_by_name(name).map(|b| b.count()) {
            net.set_input(name, &uniform(n, &mut seed))
                .map_err(|e| e.to_string())?;
        }
    }
    unit_batch_norm_stats(net)?;
    let loss = net.forward().map_err(|e| format!("forward: {e}"))?;
    if !loss.is_finite() {
        return Err(format!("loss is {loss}"));
    }
    let outputs = net.outputs();
    for o in &outputs {
        if let Some(v) = o.values.iter().find(|v| !v.is_finite()) {
            return Err(format!("output '{}' holds {v}", o.name));
        }
    }
    if !backward {
        return Ok(());
    }
    if outputs.iter().all(|o| o.loss_weight == 0.0) {
        // No loss: start backward from random diffs on every output (a
        // constant diff on a Softmax output has a zero gradient).
        for o in &outputs {
            let b = net.blob_by_name_mut(&o.name).expect("output blob");
            let n = b.count();
            b.set_diff(&uniform(n, &mut seed))
                .map_err(|e| e.to_string())?;
        }
    }
    net.clear_param_diffs();
    net.backward().map_err(|e| format!("backward: {e}"))?;
    let be = net.backend();
    let mut total = 0.0f64;
    for i in 0..net.num_learnable() {
        let b = net.learnable(i);
        let s = be.asum(b.count(), b.diff.view());
        if !s.is_finite() {
            return Err(format!(
                "gradient of {} is not finite",
                net.learnable_name(i)
            ));
        }
        total += s as f64;
    }
    if pass.want_grad && total == 0.0 {
        return Err("every parameter gradient is zero".into());
    }
    Ok(())
}

/// Deploy nets rarely give fillers: their parameters are zero until a
/// .caffemodel is loaded, and behind a ReLU every gradient would then be
/// zero. Give such blobs small random values, as trained weights have.
fn randomize_zero_params(net: &mut Net, seed: &mut u64) {
    let be = net.backend();
    for i in 0..net.num_learnable() {
        let b = net.learnable_mut(i);
        let n = b.count();
        if be.asum(n, b.data.view()) == 0.0 {
            let v: Vec<f32> = uniform(n, seed).iter().map(|x| 0.1 * x - 0.05).collect();
            b.set_data(&v).expect("same count");
        }
    }
}

/// BatchNorm blobs are (mean, variance, moving-average factor): make the
/// global statistics mean 0, variance 1.
fn unit_batch_norm_stats(net: &mut Net) -> Result<(), String> {
    for (i, ty) in net.layer_types().iter().enumerate() {
        if ty != "BatchNorm" {
            continue;
        }
        for j in 1..3 {
            let b = net.layer_param_mut(i, j);
            let n = b.count();
            b.set_data(&vec![1.0; n]).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Whether a net computes a loss (Caffe's rule: a `*Loss` type, or an
/// explicit non-zero loss_weight).
fn has_loss(p: &NetParameter) -> bool {
    p.layer
        .iter()
        .any(|l| is_loss_layer(l.r#type()) || l.loss_weight.iter().any(|&w| w != 0.0))
}

/// Types whose backward Caffe leaves NOT_IMPLEMENTED: `force_backward`
/// through them fails, in Caffe as here.
const NO_BACKWARD: &[&str] = &["Accuracy", "ArgMax"];

fn load(file: &str) -> NetParameter {
    let path = zoo_dir().join(file);
    load_net_text(&path).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn check(file: &str, expect: Expect) {
    let param = load(file);
    match expect {
        Expect::Runs(run) => check_runs(file, &param, run),
        Expect::Python(stages) => check_python(file, &param, stages),
    }
}

fn check_runs(file: &str, param: &NetParameter, run: Run) {
    let mut p = swap_data_layers_with(param, Some(run.batch), &(run.hints)())
        .unwrap_or_else(|e| panic!("{file}: swap: {e}"));
    (run.adjust)(&mut p);
    let deploy = !has_loss(&p);
    let force = deploy && !p.layer.iter().any(|l| NO_BACKWARD.contains(&l.r#type()));
    if force {
        p.force_backward = Some(true);
    }
    let inputs = input_tops(&p);
    let mut ran = false;
    for (label, opts) in phases(run.test_states) {
        let phase = opts.phase;
        let t0 = Instant::now();
        let built = Net::new(&p, &opts, backend());
        let build_ms = t0.elapsed().as_millis();
        let expected_failure = run.fails_in.filter(|(ph, _)| *ph == phase);
        match (built, expected_failure) {
            (Err(e), Some((_, want))) => {
                let e = e.to_string();
                assert!(
                    e.contains(want),
                    "{file} ({label}): expected '{want}', got: {e}"
                );
                row(
                    file,
                    &label,
                    &format!("expected error: {e}"),
                    build_ms,
                    None,
                );
            }
            (Ok(_), Some(_)) => panic!("{file} ({label}) built although Caffe cannot build it"),
            (Err(e), None) => panic!("{file} ({label}): build failed: {e}"),
            (Ok(mut net), None) => {
                // Backward in the first phase that builds (TRAIN normally).
                let pass = Pass {
                    inputs: &inputs,
                    backward: !ran,
                    deploy,
                    want_grad: !deploy || force,
                };
                let t1 = Instant::now();
                if let Err(e) = exercise(&mut net, &pass) {
                    panic!("{file} ({label}): {e}");
                }
                let what = match (pass.backward, pass.want_grad) {
                    (false, _) => "ok (fwd)",
                    (true, true) => "ok (fwd+bwd)",
                    (true, false) => "ok (fwd+bwd; no loss, nothing needs backward)",
                };
                row(file, &label, what, build_ms, Some(t1.elapsed().as_millis()));
                ran = true;
            }
        }
    }
    assert!(ran, "{file}: ran in no phase");
}

fn check_python(file: &str, param: &NetParameter, stages: &[&str]) {
    let python: Vec<String> = param
        .layer
        .iter()
        .filter(|l| l.r#type() == "Python")
        .map(|l| {
            let pp = l.python_param.clone().unwrap_or_default();
            format!(
                "layer '{}' is a Python layer (module '{}', class '{}')",
                l.name(),
                pp.module(),
                pp.layer()
            )
        })
        .collect();
    assert!(!python.is_empty(), "{file} has no Python layer");
    let p = swap_data_layers_with(param, Some(1), &DataShapeHints::default())
        .unwrap_or_else(|e| panic!("{file}: swap: {e}"));
    for (label, opts) in phases(&[stages]) {
        let t0 = Instant::now();
        let e = match Net::new(&p, &opts, backend()) {
            Ok(_) => panic!("{file} ({label}) built although it has Python layers"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("Python layers are not supported")
                && python.iter().any(|want| e.contains(want)),
            "{file} ({label}): expected one of {python:?}, got: {e}"
        );
        row(
            file,
            &label,
            &format!("expected error: {e}"),
            t0.elapsed().as_millis(),
            None,
        );
    }
}

macro_rules! zoo_nets {
    ($($test:ident: $file:literal => $expect:expr;)*) => {
        /// Every file with a test above.
        const LISTED: &[&str] = &[$($file),*];
        $(
            #[test]
            fn $test() {
                check($file, $expect);
            }
        )*
    };
}

use Expect::{Python, Runs};

zoo_nets! {
    alexnet_deploy: "bvlc_alexnet/deploy.prototxt" => Runs(RUN);
    alexnet_train_val: "bvlc_alexnet/train_val.prototxt" => Runs(RUN);
    cifar10_full: "bvlc_cifar10/cifar10_full.prototxt" => Runs(RUN);
    cifar10_full_sigmoid: "bvlc_cifar10/cifar10_full_sigmoid_train_test.prototxt" => Runs(RUN);
    cifar10_full_sigmoid_bn: "bvlc_cifar10/cifar10_full_sigmoid_train_test_bn.prototxt" => Runs(RUN);
    cifar10_full_train_test: "bvlc_cifar10/cifar10_full_train_test.prototxt" => Runs(RUN);
    cifar10_quick: "bvlc_cifar10/cifar10_quick.prototxt" => Runs(RUN);
    cifar10_quick_train_test: "bvlc_cifar10/cifar10_quick_train_test.prototxt" => Runs(RUN);
    feature_extraction_imagenet_val: "bvlc_feature_extraction/imagenet_val.prototxt" => Runs(RUN);
    finetune_pascal_detection: "bvlc_finetune_pascal_detection/pascal_finetune_trainval_test.prototxt" => Runs(RUN);
    googlenet_deploy: "bvlc_googlenet/deploy.prototxt" => Runs(RUN);
    googlenet_train_val: "bvlc_googlenet/train_val.prototxt" => Runs(RUN);
    hdf5_nonlinear_auto_test: "bvlc_hdf5_classification/nonlinear_auto_test.prototxt" => Runs(Run { hints: hdf5_hints, ..RUN });
    hdf5_nonlinear_auto_train: "bvlc_hdf5_classification/nonlinear_auto_train.prototxt" => Runs(Run { hints: hdf5_hints, ..RUN });
    hdf5_nonlinear_train_val: "bvlc_hdf5_classification/nonlinear_train_val.prototxt" => Runs(Run { hints: hdf5_hints, ..RUN });
    hdf5_train_val: "bvlc_hdf5_classification/train_val.prototxt" => Runs(Run { hints: hdf5_hints, ..RUN });
    mnist_lenet: "bvlc_mnist/lenet.prototxt" => Runs(RUN);
    mnist_lenet_train_test: "bvlc_mnist/lenet_train_test.prototxt" => Runs(RUN);
    // Its TEST data layers need a stage (mnist_autoencoder_solver's test_state).
    mnist_autoencoder: "bvlc_mnist/mnist_autoencoder.prototxt" => Runs(Run {
        test_states: &[&["test-on-train"], &["test-on-test"]],
        ..RUN
    });
    net_surgery_caffenet_full_conv: "bvlc_net_surgery/bvlc_caffenet_full_conv.prototxt" => Runs(RUN);
    net_surgery_conv: "bvlc_net_surgery/conv.prototxt" => Runs(RUN);
    pycaffe_linreg: "bvlc_pycaffe/linreg.prototxt" => Python(&[]);
    caffenet_deploy: "bvlc_reference_caffenet/deploy.prototxt" => Runs(RUN);
    caffenet_train_val: "bvlc_reference_caffenet/train_val.prototxt" => Runs(RUN);
    rcnn_ilsvrc13_deploy: "bvlc_reference_rcnn_ilsvrc13/deploy.prototxt" => Runs(RUN);
    siamese_deploy: "bvlc_siamese/mnist_siamese.prototxt" => Runs(RUN);
    siamese_train_test: "bvlc_siamese/mnist_siamese_train_test.prototxt" => Runs(RUN);
    fcn_siftflow_fcn32s_test: "fcn-siftflow-fcn32s/test.prototxt" => Python(&[]);
    fcn_siftflow_fcn32s_trainval: "fcn-siftflow-fcn32s/trainval.prototxt" => Python(&[]);
    fcn_voc_fcn32s_train: "fcn-voc-fcn32s/train.prototxt" => Python(&[]);
    fcn_voc_fcn32s_val: "fcn-voc-fcn32s/val.prototxt" => Python(&[]);
    fcn_voc_fcn8s_deploy: "fcn-voc-fcn8s/deploy.prototxt" => Runs(RUN);
    fcn_voc_fcn8s_train: "fcn-voc-fcn8s/train.prototxt" => Python(&[]);
    fcn_voc_fcn8s_val: "fcn-voc-fcn8s/val.prototxt" => Python(&[]);
    inception_bn_deploy: "inception-bn_googlenet_v2/deploy.prototxt" => Runs(RUN);
    inception_bn_train_val: "inception-bn_googlenet_v2/train_val.prototxt" => Runs(RUN);
    v0_cifar10_quick_train: "legacy_v0/cifar10_quick_train_v0.prototxt" => Runs(RUN);
    v0_imagenet_deploy: "legacy_v0/imagenet_deploy_v0.prototxt" => Runs(RUN);
    v0_imagenet_train: "legacy_v0/imagenet_train_v0.prototxt" => Runs(RUN);
    v0_imagenet_train_padding: "legacy_v0/imagenet_train_with_padding_layers_v0.prototxt" => Runs(RUN);
    v0_lenet_test: "legacy_v0/lenet_test_v0.prototxt" => Runs(RUN);
    v0_lenet_train: "legacy_v0/lenet_train_v0.prototxt" => Runs(RUN);
    v0_lenet: "legacy_v0/lenet_v0.prototxt" => Runs(RUN);
    v1_caffenet_deploy: "legacy_v1/caffenet_deploy_v1.prototxt" => Runs(RUN);
    v1_caffenet_train_val: "legacy_v1/caffenet_train_val_v1.prototxt" => Runs(RUN);
    v1_googlenet_train_val: "legacy_v1/googlenet_train_val_v1.prototxt" => Runs(RUN);
    v1_lenet_train_test: "legacy_v1/lenet_train_test_v1.prototxt" => Runs(RUN);
    v1_lenet_train_test_transform_in_data_param: "legacy_v1/lenet_train_test_v1_data_transform_in_data_param.prototxt" => Runs(RUN);
    v1_lenet: "legacy_v1/lenet_v1.prototxt" => Runs(RUN);
    // Its Reshape layers exist only in TEST, so in TRAIN the LSTM's bottom
    // is missing, in Caffe as here.
    lrcn_deploy_lstm: "lrcn_activity_recognition/deploy_lstm.prototxt" => Runs(Run {
        fails_in: Some((Phase::Train, "fc6-reshape")),
        batch: 16,
        adjust: lrcn_one_stream,
        ..RUN
    });
    lrcn_train_test_lstm: "lrcn_activity_recognition/train_test_lstm_RGB.prototxt" => Python(&["test-on-test"]);
    lrcn_train_test_single_frame: "lrcn_activity_recognition/train_test_singleFrame_RGB.prototxt" => Runs(Run {
        test_states: &[&["test-on-test"]],
        ..RUN
    });
    mobilenet_v1_deploy: "mobilenet_v1/mobilenet_deploy.prototxt" => Runs(RUN);
    nin_imagenet_train_val: "nin_imagenet/train_val_v1.prototxt" => Runs(RUN);
    resnet_101_deploy: "resnet-101/ResNet-101-deploy.prototxt" => Runs(RUN);
    resnet_20_cifar10: "resnet-20-cifar10/trainval.prototxt" => Runs(RUN);
    resnet_32_cifar10: "resnet-32-cifar10/trainval.prototxt" => Runs(RUN);
    resnet_50_deploy: "resnet-50/ResNet-50-deploy.prototxt" => Runs(RUN);
    resnet_56_cifar10: "resnet-56-cifar10/trainval.prototxt" => Runs(RUN);
    squeezenet_deploy: "squeezenet_v1.0/deploy.prototxt" => Runs(RUN);
    squeezenet_train_val: "squeezenet_v1.0/train_val.prototxt" => Runs(RUN);
    vgg16_deploy: "vgg16/deploy.prototxt" => Runs(RUN);
    vgg16_train_val: "vgg16/train_val.prototxt" => Runs(RUN);
    vgg16_cifar10: "vgg16-cifar10/trainval.prototxt" => Runs(RUN);
}

/// The one zoo solver that carries its net inline (`net_param`), tested on
/// the test set and the train set as its two test_states say.
#[test]
fn lenet_consolidated_solver_net() {
    let file = "bvlc_mnist/lenet_consolidated_solver.prototxt";
    let solver = load_solver(&zoo_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let states: Vec<Vec<String>> = solver.test_state.iter().map(|s| s.stage.clone()).collect();
    assert_eq!(
        states,
        [["test-on-test-set"], ["test-on-train-set"]],
        "{file}: test states changed"
    );
    // The inline net is V1 (`layers`); Caffe's solver copies it without an
    // upgrade, so upgrade it here as a net file would be.
    let mut net = solver.net_param.expect("inline net");
    assert!(net.layer.is_empty() && !net.layers.is_empty());
    upgrade_net_as_needed(&mut net, file).unwrap_or_else(|e| panic!("{file}: {e}"));
    check_runs(
        &format!("{file} (net_param)"),
        &net,
        Run {
            test_states: &[&["test-on-test-set"], &["test-on-train-set"]],
            ..RUN
        },
    );
}

/// `PARSE_CHECK.md` rows: (path, is a NetParameter, parses with BVLC's
/// proto, BVLC's first error).
fn parse_check() -> Vec<(String, bool, bool, String)> {
    let text = std::fs::read_to_string(zoo_dir().join("PARSE_CHECK.md")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            assert!(f.len() >= 5, "PARSE_CHECK row: {l}");
            (
                f[0].to_string(),
                f[1] == "NetPar",
                f[2] == "OK",
                f[4].to_string(),
            )
        })
        .collect()
}

#[test]
fn every_zoo_net_has_a_test() {
    let rows = parse_check();
    let ok: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 && r.2)
        .map(|r| r.0.as_str())
        .collect();
    let missing: Vec<&&str> = ok.iter().filter(|f| !LISTED.contains(f)).collect();
    assert!(missing.is_empty(), "zoo nets without a test: {missing:?}");
    let stray: Vec<&&str> = LISTED.iter().filter(|f| !ok.contains(f)).collect();
    assert!(
        stray.is_empty(),
        "tests of files PARSE_CHECK does not list as OK nets: {stray:?}"
    );
    // Every zoo file is in PARSE_CHECK.
    for dir in std::fs::read_dir(zoo_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let rel = f.strip_prefix(zoo_dir()).unwrap().display().to_string();
            assert!(
                rows.iter().any(|r| r.0 == rel),
                "{rel} is not in PARSE_CHECK.md"
            );
        }
    }
}

/// Files that BVLC's protobuf cannot parse (fields of Caffe forks) fail with
/// `path:line:col` at the same place.
#[test]
fn parse_failures_match_parse_check() {
    let mut n = 0;
    for (file, is_net, ok, first_error) in parse_check() {
        if !is_net || ok {
            continue;
        }
        n += 1;
        let t0 = Instant::now();
        let path = zoo_dir().join(&file);
        let e = load_net_text(&path).expect_err(&file);
        let (line, col) = first_error
            .split(' ')
            .next()
            .and_then(|lc| lc.split_once(':'))
            .map(|(l, c)| (l.parse::<usize>().unwrap(), c.parse::<usize>().unwrap()))
            .unwrap_or_else(|| panic!("{file}: no line:col in '{first_error}'"));
        match &e {
            Error::Parse {
                path: p,
                line: l,
                col: c,
                ..
            } => {
                assert_eq!((*l, *c), (line, col), "{file}: {e}");
                assert_eq!(Path::new(p), path, "{file}: {e}");
            }
            _ => panic!("{file}: expected a parse error, got: {e}"),
        }
        let field = first_error.split('"').nth(3).unwrap_or_default();
        assert!(
            e.to_string().contains(field),
            "{file}: {e} should name {field}"
        );
        for phase in ["TRAIN", "TEST"] {
            row(
                &file,
                phase,
                &format!("expected parse error: {e}"),
                t0.elapsed().as_millis(),
                None,
            );
        }
    }
    assert_eq!(n, 7, "PARSE_CHECK.md lists 7 net files that fail to parse");
}

/// Remove every field `name { ... }` or `name: value` (fields of Caffe
/// forks) from a prototxt.
fn strip_fields(text: &str, names: &[&str]) -> String {
    let field_at = |i: usize| -> Option<bool> {
        let word_start = text[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '{');
        if !word_start {
            return None;
        }
        names.iter().find_map(|n| {
            let rest = text[i..].strip_prefix(n)?;
            if rest.starts_with(" {") {
                Some(true)
            } else if rest.starts_with(':') {
                Some(false)
            } else {
                None
            }
        })
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match field_at(i) {
            None => {
                let ch = text[i..].chars().next().unwrap();
                out.push(ch);
                i += ch.len_utf8();
                continue;
            }
            Some(false) => {
                i += text[i..].find('\n').unwrap_or(text.len() - i);
                continue;
            }
            Some(true) => {}
        }
        let mut depth = 0;
        let end = text[i..]
            .char_indices()
            .find_map(|(k, ch)| {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + k + 1);
                        }
                    }
                    _ => {}
                }
                None
            })
            .expect("balanced braces");
        i = end;
    }
    out
}

fn parse_stripped(file: &str, names: &[&str]) -> NetParameter {
    let text = std::fs::read_to_string(zoo_dir().join(file)).unwrap();
    let mut p = parse_net_text(&strip_fields(&text, names), file)
        .unwrap_or_else(|e| panic!("{file} still does not parse: {e}"));
    upgrade_net_as_needed(&mut p, file).unwrap_or_else(|e| panic!("{file}: upgrade: {e}"));
    p
}

/// SSD without its fork's fields parses; the net then stops at the first
/// fork type with the unknown-type error listing the supported types.
#[test]
fn ssd_deploy_names_unknown_fork_type() {
    let file = "ssd_vgg16_voc0712_300x300/deploy.prototxt";
    let p = parse_stripped(
        file,
        &[
            "norm_param",
            "permute_param",
            "prior_box_param",
            "detection_output_param",
        ],
    );
    let p = shrink_batch(&p, 1);
    for (label, opts) in phases(&[&[]]) {
        let t0 = Instant::now();
        let e = Net::new(&p, &opts, backend())
            .err()
            .unwrap_or_else(|| panic!("{file} built"))
            .to_string();
        assert!(
            e.contains("layer 'conv4_3_norm' has unknown type 'Normalize'; known types: ")
                && e.contains("Convolution"),
            "{e}"
        );
        row(
            &format!("{file} (fork fields stripped)"),
            &label,
            &format!("expected error: {e:.80}…"),
            t0.elapsed().as_millis(),
            None,
        );
    }
}

/// Faster R-CNN without its fork's fields parses; its nets then stop at a
/// Python layer (RPN data / proposal layers) with the clear error.
#[test]
fn faster_rcnn_names_python_layers() {
    for file in [
        "faster_rcnn_zf_voc_end2end/train.prototxt",
        "faster_rcnn_zf_voc_end2end/test.prototxt",
        "faster_rcnn_vgg16_voc_end2end/train.prototxt",
        "faster_rcnn_vgg16_voc_end2end/test.prototxt",
    ] {
        let p = parse_stripped(
            file,
            &["roi_pooling_param", "smooth_l1_loss_param", "scale_train"],
        );
        check_python(&format!("{file} (fork fields stripped)"), &p, &[]);
    }
}
