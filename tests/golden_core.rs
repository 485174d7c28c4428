//! Golden cases (real BVLC Caffe outputs) for the neuron, loss and common
//! layers, run through a `Net` on the CPU backend.
use rcaffe::backend::cpu::CpuBackend;
use rcaffe::net::{Net, NetOptions};
use rcaffe::proto::binary::read_blob_proto_vector;
use rcaffe::proto::caffe::Phase;
use rcaffe::proto::text::read_net_text;
use rcaffe::testing::golden::{golden_dir, run_case};
use std::sync::Arc;

/// Run a case; every comparison must pass, tops must have been compared,
/// and bottom diffs too unless the case is forward-only (Accuracy).
fn check(case: &str) {
    let r = run_case(case).unwrap_or_else(|e| panic!("case {case}: {e}"));
    assert!(r.passed(), "{}", r.summary());
    let has = |p: &str| r.comparisons.iter().any(|c| c.what.starts_with(p));
    assert!(has("top "), "{}", r.summary());
    if !case.starts_with("accuracy") {
        assert!(has("bottom diff "), "{}", r.summary());
    }
}

macro_rules! golden {
    ($($name:ident => $case:literal,)*) => {
        $(#[test] fn $name() { check($case); })*
    };
}

golden! {
    relu => "relu",
    relu_leaky => "relu_leaky_0.1",
    sigmoid => "sigmoid",
    tanh => "tanh",
    dropout_test_phase => "dropout_test_phase",
    softmax_axis1 => "softmax_axis1",
    softmax_axis2 => "softmax_axis2",
    softmaxloss_batch_size => "softmaxloss_batch_size",
    softmaxloss_full => "softmaxloss_full",
    softmaxloss_ignore_label => "softmaxloss_ignore_label",
    softmaxloss_loss_weight => "softmaxloss_loss_weight2.5",
    softmaxloss_none => "softmaxloss_none",
    softmaxloss_spatial => "softmaxloss_spatial",
    softmaxloss_valid => "softmaxloss_valid",
    accuracy_ignore_label => "accuracy_ignore_label",
    accuracy_per_class => "accuracy_per_class",
    accuracy_top1 => "accuracy_top1",
    accuracy_top3 => "accuracy_top3",
    split => "split",
    concat_axis0 => "concat_axis0",
    concat_axis1 => "concat_axis1",
    flatten => "flatten",
    eltwise_max => "eltwise_max",
    eltwise_prod => "eltwise_prod",
    eltwise_sum_coeff => "eltwise_sum_coeff",
}

/// DummyData's random top comes from Caffe's RNG: compare shapes, the
/// constant top exactly, and the gaussian top's plausibility only.
#[test]
fn dummy_data() {
    let dir = golden_dir().join("layers/dummy_data");
    let param = read_net_text(&dir.join("net.prototxt")).unwrap();
    let mut net = Net::new(
        &param,
        &NetOptions::new(Phase::Train),
        Arc::new(CpuBackend::new()),
    )
    .unwrap();
    net.forward().unwrap();
    let want = read_blob_proto_vector(&dir.join("tops.binaryproto")).unwrap();
    let (a, b) = (
        net.blob_by_name("a").unwrap(),
        net.blob_by_name("b").unwrap(),
    );
    let dims = |i: usize| -> Vec<usize> {
        want.blobs[i]
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|&d| d as usize)
            .collect()
    };
    assert_eq!(a.shape(), dims(0).as_slice());
    assert_eq!(b.shape(), dims(1).as_slice());
    assert_eq!(a.data_vec(), want.blobs[0].data);
    let g = b.data_vec();
    assert!(g.iter().all(|v| v.is_finite() && v.abs() < 6.0), "{g:?}");
    assert!(g.iter().any(|&v| v != 0.0));
}

/// The `fillers` case: one DummyData top per filler type. Deterministic
/// fillers (constant, bilinear) must match Caffe exactly; random ones must
/// have the right shapes and respect their ranges and invariants.
#[test]
fn fillers() {
    let dir = golden_dir().join("layers/fillers");
    let param = read_net_text(&dir.join("net.prototxt")).unwrap();
    let mut net = Net::new(
        &param,
        &NetOptions::new(Phase::Train),
        Arc::new(CpuBackend::new()),
    )
    .unwrap();
    net.forward().unwrap();
    let want = read_blob_proto_vector(&dir.join("tops.binaryproto")).unwrap();
    let top = |i: usize| net.blob_by_name(&format!("f{i}")).unwrap();
    for (i, w) in want.blobs.iter().enumerate() {
        let dims: Vec<usize> = w
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|&d| d as usize)
            .collect();
        assert_eq!(top(i).shape(), dims.as_slice(), "f{i}");
    }
    assert_eq!(top(0).data_vec(), want.blobs[0].data, "constant");
    assert_eq!(top(7).data_vec(), want.blobs[7].data, "bilinear");
    assert!(
        top(1).data_vec().iter().all(|v| (-0.5..=1.5).contains(v)),
        "uniform"
    );
    assert!(top(3).data_vec().contains(&0.0), "sparse gaussian");
    for row in top(4).data_vec().chunks(5) {
        assert!(row.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(
            (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
            "positive_unitball"
        );
    }
    // xavier on (4, 3, 2, 2): fan_in 12.
    let a = (3.0f32 / 12.0).sqrt();
    assert!(top(5).data_vec().iter().all(|v| v.abs() <= a), "xavier");
    assert!(top(6).data_vec().iter().all(|v| v.is_finite()), "msra");
}
