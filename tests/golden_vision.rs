//! Real Caffe's per-layer goldens for the vision layers (Convolution,
//! Deconvolution, Im2col, Pooling, SPP, LRN, InnerProduct), run through a
//! `Net` by the golden harness:
//! tops, bottom diffs and param diffs within the README's tolerances
//! (GEMM-class layers atol 1e-5 / rtol 1e-4; Pooling, including its integer
//! mask, atol 1e-6 / rtol 1e-5, i.e. exact for indices).
use rcaffe::testing::golden::{all_cases, assert_case, golden_dir, run_case};

/// Every case of the vision layers, so a new golden case is not missed.
#[test]
fn every_vision_case_is_listed() {
    let ours: Vec<String> = all_cases()
        .into_iter()
        .filter(|c| {
            [
                "conv_", "deconv_", "im2col_", "pool_", "spp_", "lrn_", "ip_",
            ]
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
    "deconv_stride2",
    "im2col_3x3_s2_pad1",
    "pool_ave_3x3_s2_pad1",
    "pool_global_ave",
    "pool_global_max",
    "pool_max_2x2_s2_pad1_clip",
    "pool_max_3x3_s2_ceil",
    "pool_max_3x3_s2_pad1",
    "pool_max_with_mask",
    "spp_ave_h2",
    "spp_max_h3",
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

/// Run a case and require every kind of comparison it should have: tops,
/// the bottom diff and, with `params`, each param diff. Prints the maximum
/// errors (`-- --nocapture`).
fn check_all(case: &str, params: usize) {
    let r = run_case(case).unwrap_or_else(|e| panic!("case {case}: {e}"));
    eprintln!("{}", r.summary());
    assert!(r.passed(), "{}", r.summary());
    let mut want = vec!["top ".to_string(), "bottom diff ".to_string()];
    want.extend((0..params).map(|j| format!("param {j} diff")));
    for w in &want {
        assert!(
            r.comparisons.iter().any(|c| c.what.starts_with(w.as_str())),
            "{case}: no '{w}' comparison\n{}",
            r.summary()
        );
    }
}

#[test]
fn deconv_stride2() {
    // Weights and bias.
    check_all("deconv_stride2", 2);
}

#[test]
fn im2col_3x3_s2_pad1() {
    check_all("im2col_3x3_s2_pad1", 0);
}

#[test]
fn spp_ave_h2() {
    check_all("spp_ave_h2", 0);
}

#[test]
fn spp_max_h3() {
    check_all("spp_max_h3", 0);
}

/// Every golden case of `../shared/golden/layers` is named by one of the
/// `tests/golden_*.rs` files (as `"case"` or `"layers/case"`), so none is
/// left without a test.
#[test]
fn every_golden_case_has_a_test() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut sources = String::new();
    for e in std::fs::read_dir(&tests).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("golden_") && name.ends_with(".rs") {
            sources.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    let cases = all_cases();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        golden_dir().display()
    );
    let missing: Vec<&String> = cases
        .iter()
        .filter(|c| {
            !sources.contains(&format!("\"{c}\"")) && !sources.contains(&format!("layers/{c}\""))
        })
        .collect();
    eprintln!(
        "{} of {} golden cases have a test",
        cases.len() - missing.len(),
        cases.len()
    );
    assert!(
        missing.is_empty(),
        "golden cases without a test: {missing:?}"
    );
}
