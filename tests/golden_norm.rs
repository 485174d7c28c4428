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
