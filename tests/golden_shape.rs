//! Golden cases (real BVLC Caffe outputs) for the shape layers and the
//! losses beyond SoftmaxWithLoss, run through a `Net` on the CPU backend.
use rcaffe::testing::golden::{assert_case, run_case};

/// `assert_case`, plus: the comparisons Caffe's files make possible were
/// made (tops unless the layer has none, and the diffs the case records).
fn check(case: &str, tops: bool, bottom_diffs: bool, param_diffs: bool) {
    assert_case(case);
    let r = run_case(case).unwrap_or_else(|e| panic!("case {case}: {e}"));
    let has = |p: &str| r.comparisons.iter().any(|c| c.what.starts_with(p));
    assert_eq!(has("top "), tops, "{}", r.summary());
    assert_eq!(has("bottom diff "), bottom_diffs, "{}", r.summary());
    assert_eq!(has("param "), param_diffs, "{}", r.summary());
}

macro_rules! golden {
    ($($name:ident => $case:literal ($t:expr, $b:expr, $p:expr),)*) => {
        $(#[test] fn $name() { check($case, $t, $b, $p); })*
    };
}

golden! {
    slice_points => "slice_points" (true, true, false),
    reshape_0_m1 => "reshape_0_-1" (true, true, false),
    tile_axis1_x3 => "tile_axis1_x3" (true, true, false),
    crop_axis2_offsets => "crop_axis2_offsets" (true, true, false),
    reduction_asum_axis1_coeff2 => "reduction_asum_axis1_coeff2" (true, true, false),
    reduction_mean_axis1_coeff_m1_5 => "reduction_mean_axis1_coeff-1.5" (true, true, false),
    reduction_sum_all => "reduction_sum_all" (true, true, false),
    reduction_sumsq_axis2_coeff0_5 => "reduction_sumsq_axis2_coeff0.5" (true, true, false),
    argmax_axis1_top2 => "argmax_axis1_top2" (true, false, false),
    argmax_top2_out_max_val => "argmax_top2_out_max_val" (true, false, false),
    embed => "embed" (true, false, true),
    filter => "filter" (true, true, false),
    batch_reindex => "batch_reindex" (true, true, false),
    silence => "silence" (false, true, false),
    parameter => "parameter" (true, false, true),
    euclidean_loss => "euclidean_loss" (true, true, false),
    sigmoid_cross_entropy_loss => "sigmoid_cross_entropy_loss" (true, true, false),
    sigmoid_cross_entropy_loss_ignore => "sigmoid_cross_entropy_loss_ignore" (true, true, false),
    hinge_loss_l1 => "hinge_loss_l1" (true, true, false),
    hinge_loss_l2 => "hinge_loss_l2" (true, true, false),
    infogain_loss_h_bottom => "infogain_loss_h_bottom" (true, true, false),
    multinomial_logistic_loss => "multinomial_logistic_loss" (true, true, false),
    contrastive_loss => "contrastive_loss" (true, true, false),
    contrastive_loss_legacy => "contrastive_loss_legacy" (true, true, false),
}
