//! Golden cases (real BVLC Caffe outputs) for the normalization layers and
//! the extra activations, run through a `Net` on the CPU backend.
use rcaffe::testing::golden::{assert_case, run_case};

macro_rules! golden {
    ($($name:ident => $case:literal,)*) => {
        $(#[test] fn $name() { assert_case($case); })*
    };
}

golden! {
    absval => "absval",
    bnll => "bnll",
    clip => "clip",
    elu_alpha0_5 => "elu_alpha0.5",
    exp_base2_scale_shift => "exp_base2_scale_shift",
    exp_base_e => "exp_base_e",
    log_base2_scale_shift => "log_base2_scale_shift",
    log_natural => "log_natural",
    power_2_scale0_5_shift1 => "power_2_scale0.5_shift1",
    prelu_channel_shared => "prelu_channel_shared",
    prelu_per_channel => "prelu_per_channel",
    swish_beta1_5 => "swish_beta1.5",
    threshold_0_2 => "threshold_0.2",
    batchnorm_test_global_stats => "batchnorm_test_global_stats",
    batchnorm_train => "batchnorm_train",
    scale_learned_bias => "scale_learned_bias",
    scale_two_bottoms => "scale_two_bottoms",
    bias_learned => "bias_learned",
    bias_two_bottoms => "bias_two_bottoms",
    mvn_across_channels => "mvn_across_channels",
    mvn_default => "mvn_default",
    mvn_no_variance => "mvn_no_variance",
}

/// Every case compares its tops, and bottom diffs unless forward-only; the
/// BatchNorm TRAIN case also compares the running statistics after forward,
/// and cases with parameters compare their diffs.
#[test]
fn cases_compare_what_they_should() {
    let has = |case: &str, what: &str| {
        let r = run_case(case).unwrap_or_else(|e| panic!("case {case}: {e}"));
        r.comparisons.iter().any(|c| c.what.starts_with(what))
    };
    assert!(has("threshold_0.2", "top "));
    assert!(!has("threshold_0.2", "bottom diff "));
    assert!(has("batchnorm_train", "param 2 after forward"));
    for case in ["prelu_per_channel", "scale_learned_bias", "bias_learned"] {
        assert!(has(case, "param 0 diff"), "{case}");
    }
    assert!(has("scale_learned_bias", "param 1 diff"));
    for case in ["scale_two_bottoms", "bias_two_bottoms"] {
        assert!(has(case, "bottom diff "), "{case}");
    }
}

/// The usual BatchNorm → Scale(bias) → ReLU → loss chain through a `Net`:
/// running every layer in place must give the same outputs, input gradient
/// and parameter gradients as distinct tops, and the statistics must be
/// hidden from the solver (`lr_mult: 0`).
#[test]
fn in_place_norm_chain_through_a_net() {
    use rcaffe::backend::cpu::CpuBackend;
    use rcaffe::net::{Net, NetOptions};
    use rcaffe::proto::caffe::Phase;
    use rcaffe::proto::text::parse_net_text;
    use std::sync::Arc;

    let net_text = |in_place: bool| {
        let (a, b, c) = if in_place {
            ("x", "x", "x")
        } else {
            ("bn", "sc", "re")
        };
        format!(
            r#"name: "chain" force_backward: true
            layer {{ name: "in" type: "Input" top: "data" top: "t"
                     input_param {{ shape {{ dim: 2 dim: 3 dim: 2 dim: 2 }} shape {{ dim: 2 dim: 3 dim: 2 dim: 2 }} }} }}
            layer {{ name: "copy" type: "Power" bottom: "data" top: "x" }}
            layer {{ name: "bn" type: "BatchNorm" bottom: "x" top: "{a}" }}
            layer {{ name: "sc" type: "Scale" bottom: "{a}" top: "{b}"
                     scale_param {{ bias_term: true filler {{ type: "constant" value: 1.5 }}
                                    bias_filler {{ type: "constant" value: -0.25 }} }} }}
            layer {{ name: "re" type: "PReLU" bottom: "{b}" top: "{c}" }}
            layer {{ name: "loss" type: "EuclideanLoss" bottom: "{c}" bottom: "t" top: "loss" }}"#
        )
    };
    let data: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.2).collect();
    let target: Vec<f32> = (0..24).map(|i| ((i * 5) % 13) as f32 * 0.1).collect();
    let mut results = Vec::new();
    for in_place in [false, true] {
        let param = parse_net_text(&net_text(in_place), "chain.prototxt").unwrap();
        let mut net = Net::new(
            &param,
            &NetOptions::new(Phase::Train),
            Arc::new(CpuBackend::new()),
        )
        .unwrap();
        net.set_input("data", &data).unwrap();
        net.set_input("t", &target).unwrap();
        let loss = net.forward().unwrap();
        net.clear_param_diffs();
        net.backward().unwrap();
        let mut diffs = Vec::new();
        let mut lrs = Vec::new();
        for i in 0..net.num_learnable() {
            diffs.push(net.learnable(i).diff_vec());
            lrs.push(net.learnable_lr_mult(i));
        }
        // BatchNorm's three statistics blobs are not learned.
        assert_eq!(lrs, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert!(diffs[3..].iter().all(|d| d.iter().any(|&v| v != 0.0)));
        let dx = net.blob_by_name("data").unwrap().diff_vec();
        assert!(dx.iter().any(|&v| v != 0.0));
        results.push((loss, dx, diffs));
    }
    assert_eq!(results[0], results[1]);
}
