//! Real Caffe's per-layer goldens for the vision layers (Convolution,
//! Pooling, LRN, InnerProduct), run through a `Net` by the golden harness:
//! tops, bottom diffs and param diffs within the README's tolerances
//! (GEMM-class layers atol 1e-5 / rtol 1e-4; Pooling, including its integer
//! mask, atol 1e-6 / rtol 1e-5, i.e. exact for indices).
use rcaffe::testing::golden::{all_cases, assert_case};

/// Every case of the vision layers, so a new golden case is not missed.
#[test]
fn every_vision_case_is_listed() {
    let ours: Vec<String> = all_cases()
        .into_iter()
        .filter(|c| {
            ["conv_", "pool_", "lrn_", "ip_"]
                .iter()
                .any(|p| c.starts_with(p))
        })
        .collect();
    assert_eq!(ours.len(), CASES.len(), "vision golden cases: {ours:?}");
    for c in &ours {
        assert!(CASES.contains(&c.as_str()), "case {c} has no test");
    }
}

const CASES: &[&str] = &[
    "conv_1x1",
    "conv_3x3_pad1",
    "conv_5x5_stride2_pad2",
    "conv_dilation2",
    "conv_group2",
    "conv_no_bias",
    "conv_rect_kernel_stride",
    "pool_ave_3x3_s2_pad1",
    "pool_global_ave",
    "pool_global_max",
    "pool_max_2x2_s2_pad1_clip",
    "pool_max_3x3_s2_ceil",
    "pool_max_3x3_s2_pad1",
    "pool_max_with_mask",
    "lrn_across_channels",
    "lrn_within_channel",
    "ip_axis2",
    "ip_plain",
    "ip_transpose",
];

macro_rules! cases {
    ($($name:ident => $case:literal,)*) => {
        $(
            #[test]
            fn $name() {
                assert_case($case);
            }
        )*
    };
}

cases! {
    conv_1x1 => "conv_1x1",
    conv_3x3_pad1 => "conv_3x3_pad1",
    conv_5x5_stride2_pad2 => "conv_5x5_stride2_pad2",
    conv_dilation2 => "conv_dilation2",
    conv_group2 => "conv_group2",
    conv_no_bias => "conv_no_bias",
    conv_rect_kernel_stride => "conv_rect_kernel_stride",
    pool_ave_3x3_s2_pad1 => "pool_ave_3x3_s2_pad1",
    pool_global_ave => "pool_global_ave",
    pool_global_max => "pool_global_max",
    pool_max_2x2_s2_pad1_clip => "pool_max_2x2_s2_pad1_clip",
    pool_max_3x3_s2_ceil => "pool_max_3x3_s2_ceil",
    pool_max_3x3_s2_pad1 => "pool_max_3x3_s2_pad1",
    pool_max_with_mask => "pool_max_with_mask",
    lrn_across_channels => "lrn_across_channels",
    lrn_within_channel => "lrn_within_channel",
    ip_axis2 => "ip_axis2",
    ip_plain => "ip_plain",
    ip_transpose => "ip_transpose",
}
