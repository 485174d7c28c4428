//! The shape family against hand-computed outputs, gradient checks (batch 1
//! included) and error paths.
use crate::layers::{Io, Layer};
use crate::proto::caffe::Phase;
use crate::tensor::Blob;
use crate::testing::gradient::{
    cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
};

fn layer(text: &str) -> Box<dyn Layer> {
    layer_from_text(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn iota(shape: &[usize]) -> Blob {
    let n = shape.iter().product();
    Blob::from_host(shape, (0..n).map(|v| v as f32).collect())
}

/// Forward `text` on `arena`; returns the error message, if any.
fn forward(
    text: &str,
    arena: &mut Vec<Blob>,
    b: &[usize],
    t: &[usize],
    p: &[usize],
) -> Result<(), String> {
    let mut l = layer(text);
    run_forward(l.as_mut(), &mut cpu_ctx(Phase::Train), arena, b, t, p).map_err(|e| e.to_string())
}

fn check(text: &str, arena: &mut Vec<Blob>, b: &[usize], t: &[usize], p: &[usize]) {
    let mut l = layer(text);
    GradientChecker::default()
        .check_layer(l.as_mut(), &mut cpu_ctx(Phase::Train), arena, b, t, p)
        .unwrap_or_else(|e| panic!("{text}: {e}"));
}

fn check_exhaustive(text: &str, arena: &mut Vec<Blob>, b: &[usize], t: &[usize], p: &[usize]) {
    let mut l = layer(text);
    GradientChecker::default()
        .check_layer_exhaustive(l.as_mut(), &mut cpu_ctx(Phase::Train), arena, b, t, p)
        .unwrap_or_else(|e| panic!("{text}: {e}"));
}

#[test]
fn slice_points_and_equal_parts() {
    let mut a = vec![iota(&[2, 5, 2]), Blob::default(), Blob::default()];
    forward(
        r#"type: "Slice" slice_param { axis: 1 slice_point: 2 }"#,
        &mut a,
        &[0],
        &[1, 2],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].shape(), [2, 2, 2]);
    assert_eq!(a[1].data_vec(), [0., 1., 2., 3., 10., 11., 12., 13.]);
    assert_eq!(a[2].shape(), [2, 3, 2]);
    assert_eq!(a[2].data_vec()[..6], [4., 5., 6., 7., 8., 9.]);
    // Equal parts along the last axis, via the deprecated slice_dim.
    let mut a = vec![iota(&[3, 4]), Blob::default(), Blob::default()];
    forward(
        r#"type: "Slice" slice_param { slice_dim: 1 }"#,
        &mut a,
        &[0],
        &[1, 2],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].data_vec(), [0., 1., 4., 5., 8., 9.]);
    assert_eq!(a[2].data_vec(), [2., 3., 6., 7., 10., 11.]);
}

#[test]
fn slice_errors() {
    let mut a = vec![iota(&[2, 5]), Blob::default(), Blob::default()];
    let e = forward(
        r#"type: "Slice" slice_param { axis: 1 }"#,
        &mut a.clone(),
        &[0],
        &[1, 2],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("evenly divide"), "{e}");
    let e = forward(
        r#"type: "Slice" slice_param { slice_point: 1 slice_point: 2 }"#,
        &mut a,
        &[0],
        &[1, 2],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("slice_point"), "{e}");
    let e = layer_from_text(r#"type: "Slice" slice_param { slice_point: 3 slice_point: 2 }"#)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("increasing"), "{e}");
    let e = layer_from_text(r#"type: "Slice" slice_param { axis: 1 slice_dim: 1 }"#)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn slice_gradient() {
    let mut a = vec![
        gaussian_blob(&[2, 6, 3], 1.0, 1),
        Blob::default(),
        Blob::default(),
        Blob::default(),
    ];
    check(
        r#"type: "Slice" slice_param { axis: 1 slice_point: 1 slice_point: 4 }"#,
        &mut a,
        &[0],
        &[1, 2, 3],
        &[],
    );
    let mut a = vec![gaussian_blob(&[1, 4], 1.0, 2), Blob::default()];
    check(r#"type: "Slice""#, &mut a, &[0], &[1], &[]);
    let mut a = vec![
        gaussian_blob(&[1, 4], 1.0, 2),
        Blob::default(),
        Blob::default(),
    ];
    check_exhaustive(
        r#"type: "Slice" slice_param { axis: -1 }"#,
        &mut a,
        &[0],
        &[1, 2],
        &[],
    );
}

#[test]
fn reshape_rules() {
    let cases: &[(&str, &[usize], &[usize])] = &[
        ("shape { dim: 0 dim: 2 dim: -1 }", &[2, 3, 4], &[2, 2, 6]),
        ("shape { dim: -1 }", &[2, 3, 4], &[24]),
        (
            "shape { dim: 0 dim: -1 dim: 1 dim: 1 }",
            &[2, 3, 4],
            &[2, 12, 1, 1],
        ),
        // axis/num_axes: replace only axes [1, 2).
        (
            "shape { dim: 3 dim: 1 } axis: 1 num_axes: 1",
            &[2, 3, 4],
            &[2, 3, 1, 4],
        ),
        // axis -1 inserts after the last axis.
        ("shape { dim: 1 } axis: -1 num_axes: 0", &[2, 3], &[2, 3, 1]),
        ("shape { dim: 1 } axis: 0 num_axes: 0", &[2, 3], &[1, 2, 3]),
        ("shape { dim: 6 } axis: 1", &[2, 3, 2], &[2, 6]),
        ("shape { dim: 0 dim: 0 } axis: 1", &[2, 3, 2], &[2, 3, 2]),
    ];
    for (p, bottom, want) in cases {
        let mut a = vec![iota(bottom), Blob::default()];
        forward(
            &format!(r#"type: "Reshape" reshape_param {{ {p} }}"#),
            &mut a,
            &[0],
            &[1],
            &[],
        )
        .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(a[1].shape(), *want, "{p}");
        assert_eq!(a[1].data_vec(), a[0].data_vec());
    }
    for (p, msg) in [
        ("shape { dim: 5 dim: -1 }", "divisible"),
        ("shape { dim: 5 }", "must match"),
        (
            "shape { dim: 0 dim: 0 dim: 0 dim: 0 }",
            "no corresponding bottom axis",
        ),
        ("shape { dim: 2 } axis: 4", "out of range"),
    ] {
        let mut a = vec![iota(&[2, 3, 4]), Blob::default()];
        let e = forward(
            &format!(r#"type: "Reshape" reshape_param {{ {p} }}"#),
            &mut a,
            &[0],
            &[1],
            &[],
        )
        .unwrap_err();
        assert!(e.contains(msg), "{p}: {e}");
    }
    let e = layer_from_text(r#"type: "Reshape" reshape_param { shape { dim: -1 dim: -1 } }"#)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("multiple -1"), "{e}");
    // In place is refused.
    let mut a = vec![iota(&[2, 3])];
    let e = forward(
        r#"type: "Reshape" reshape_param { shape { dim: -1 } }"#,
        &mut a,
        &[0],
        &[0],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("in-place"), "{e}");
}

#[test]
fn reshape_gradient() {
    let mut a = vec![gaussian_blob(&[2, 3, 2], 1.0, 3), Blob::default()];
    check(
        r#"type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    );
    let mut a = vec![gaussian_blob(&[1, 3], 1.0, 3), Blob::default()];
    check(
        r#"type: "Reshape" reshape_param { shape { dim: 3 } }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    );
}

#[test]
fn tile_forward_and_gradient() {
    let mut a = vec![iota(&[2, 2, 2]), Blob::default()];
    forward(
        r#"type: "Tile" tile_param { axis: 1 tiles: 2 }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].shape(), [2, 4, 2]);
    assert_eq!(
        a[1].data_vec(),
        [0., 1., 2., 3., 0., 1., 2., 3., 4., 5., 6., 7., 4., 5., 6., 7.]
    );
    let mut a = vec![gaussian_blob(&[2, 3, 2], 1.0, 4), Blob::default()];
    check(
        r#"type: "Tile" tile_param { axis: 1 tiles: 3 }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    );
    let mut a = vec![gaussian_blob(&[1, 3], 1.0, 4), Blob::default()];
    check_exhaustive(
        r#"type: "Tile" tile_param { axis: -1 tiles: 2 }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    );
    let e = layer_from_text(r#"type: "Tile" tile_param { axis: 1 }"#)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tiles must be specified"), "{e}");
    let e = layer_from_text(r#"type: "Tile" tile_param { tiles: 0 }"#)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("positive"), "{e}");
}

#[test]
fn crop_offsets() {
    // One offset for all cropped axes, and one per axis.
    let mut a = vec![
        iota(&[1, 2, 4, 5]),
        gaussian_blob(&[1, 2, 2, 3], 1.0, 1),
        Blob::default(),
    ];
    forward(
        r#"type: "Crop" crop_param { axis: 2 offset: 1 }"#,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    assert_eq!(a[2].shape(), [1, 2, 2, 3]);
    assert_eq!(a[2].data_vec()[..6], [6., 7., 8., 11., 12., 13.]);
    forward(
        r#"type: "Crop" crop_param { axis: -2 offset: 2 offset: 0 }"#,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    assert_eq!(a[2].data_vec()[..6], [10., 11., 12., 15., 16., 17.]);
    // Axis 1 crops the channels too (the reference has 1 channel).
    let mut a = vec![
        iota(&[1, 2, 2, 2]),
        gaussian_blob(&[1, 1, 1, 1], 1.0, 1),
        Blob::default(),
    ];
    forward(
        r#"type: "Crop" crop_param { axis: 1 offset: 1 }"#,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    assert_eq!(a[2].data_vec(), [7.]);
}

#[test]
fn crop_errors() {
    let mut a = vec![
        iota(&[1, 2, 4, 5]),
        gaussian_blob(&[1, 2, 2, 3], 1.0, 1),
        Blob::default(),
    ];
    let e = forward(
        r#"type: "Crop" crop_param { axis: 2 offset: 3 }"#,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("invalid crop parameters in dimension 2"), "{e}");
    let e = forward(
        r#"type: "Crop" crop_param { axis: 1 offset: 0 offset: 1 }"#,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("number of offset values"), "{e}");
    let mut a = vec![
        iota(&[2, 4, 5]),
        gaussian_blob(&[1, 2, 2, 3], 1.0, 1),
        Blob::default(),
    ];
    let e = forward(r#"type: "Crop""#, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.contains("same number of axes"), "{e}");
}

#[test]
fn crop_gradient() {
    let mut a = vec![
        gaussian_blob(&[2, 2, 4, 5], 1.0, 5),
        gaussian_blob(&[2, 2, 2, 3], 1.0, 6),
        Blob::default(),
    ];
    let mut l = layer(r#"type: "Crop" crop_param { axis: 2 offset: 1 offset: 2 }"#);
    GradientChecker::default()
        .check_bottoms(&[0])
        .check_layer(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
    let mut a = vec![
        gaussian_blob(&[1, 3, 3], 1.0, 5),
        gaussian_blob(&[1, 2, 2], 1.0, 6),
        Blob::default(),
    ];
    let mut l = layer(r#"type: "Crop" crop_param { axis: 1 offset: 1 }"#);
    GradientChecker::default()
        .check_bottoms(&[0])
        .check_layer_exhaustive(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
}

#[test]
fn reduction_ops() {
    let x = Blob::from_host(&[2, 3], vec![1.0, -2.0, 3.0, 0.5, 0.0, -1.5]);
    for (p, shape, want) in [
        ("operation: SUM", &[][..], vec![1.0f32]),
        ("operation: SUM axis: 1", &[2][..], vec![2.0, -1.0]),
        (
            "operation: ASUM axis: 1 coeff: 2",
            &[2][..],
            vec![12.0, 4.0],
        ),
        ("operation: SUMSQ axis: -1", &[2][..], vec![14.0, 2.5]),
        (
            "operation: MEAN axis: 1 coeff: -1.5",
            &[2][..],
            vec![-1.0, 0.5],
        ),
        ("operation: MEAN", &[][..], vec![1.0 / 6.0]),
    ] {
        let mut a = vec![x.clone(), Blob::default()];
        forward(
            &format!(r#"type: "Reduction" reduction_param {{ {p} }}"#),
            &mut a,
            &[0],
            &[1],
            &[],
        )
        .unwrap();
        assert_eq!(a[1].shape(), shape, "{p}");
        let got = a[1].data_vec();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{p}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn reduction_gradient() {
    for p in [
        "operation: SUM",
        "operation: SUM axis: 1 coeff: 2",
        "operation: ASUM axis: 1 coeff: -1",
        "operation: SUMSQ axis: 2 coeff: 0.5",
        "operation: MEAN axis: 1 coeff: -1.5",
    ] {
        let text = format!(r#"type: "Reduction" reduction_param {{ {p} }}"#);
        let mut a = vec![gaussian_blob(&[2, 3, 4], 1.0, 7), Blob::default()];
        let mut l = layer(&text);
        // ASUM has a kink at 0.
        GradientChecker::default()
            .kink(0.0, 0.02)
            .check_layer(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[1],
                &[],
            )
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        let mut a = vec![gaussian_blob(&[1, 3, 2], 1.0, 8), Blob::default()];
        let mut l = layer(&text);
        GradientChecker::default()
            .kink(0.0, 0.02)
            .check_layer_exhaustive(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[1],
                &[],
            )
            .unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}

#[test]
fn argmax_layouts() {
    let x = Blob::from_host(&[2, 4], vec![0.1, 0.9, 0.5, 0.9, -1.0, -3.0, 2.0, 0.0]);
    // No axis, indices only: (N, 1, k).
    let mut a = vec![x.clone(), Blob::default()];
    forward(
        r#"type: "ArgMax" argmax_param { top_k: 2 }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].shape(), [2, 1, 2]);
    // Ties go to the larger index.
    assert_eq!(a[1].data_vec(), [3., 1., 2., 3.]);
    // out_max_val without axis: indices then values per item.
    forward(
        r#"type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].shape(), [2, 2, 2]);
    assert_eq!(a[1].data_vec(), [3., 1., 0.9, 0.9, 2., 3., 2.0, 0.0]);
    // With an axis: the values only.
    forward(
        r#"type: "ArgMax" argmax_param { axis: 0 out_max_val: true }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].shape(), [1, 4]);
    assert_eq!(a[1].data_vec(), [0.1, 0.9, 2.0, 0.9]);
    // A 4-D bottom keeps its trailing 1s: (N, 1, k, 1).
    let mut a = vec![gaussian_blob(&[2, 3, 2, 2], 1.0, 1), Blob::default()];
    forward(r#"type: "ArgMax""#, &mut a, &[0], &[1], &[]).unwrap();
    assert_eq!(a[1].shape(), [2, 1, 1, 1]);
    // Middle axis.
    let x = iota(&[1, 3, 2]);
    let mut a = vec![x, Blob::default()];
    forward(
        r#"type: "ArgMax" argmax_param { axis: 1 top_k: 3 }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].data_vec(), [2., 2., 1., 1., 0., 0.]);
    let e = forward(
        r#"type: "ArgMax" argmax_param { axis: 1 top_k: 4 }"#,
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap_err();
    assert!(e.contains("top_k"), "{e}");
}

#[test]
fn argmax_has_no_backward() {
    let mut a = vec![gaussian_blob(&[2, 3], 1.0, 1), Blob::default()];
    let mut l = layer(r#"type: "ArgMax""#);
    let mut cx = cpu_ctx(Phase::Train);
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[]).unwrap();
    let mut io = Io::new(&mut a, &[0], &[1], &[]);
    assert!(l.backward(&mut cx, &mut io, &[true]).is_err());
    assert!(l.backward(&mut cx, &mut io, &[false]).is_ok());
}

const EMBED: &str = r#"type: "Embed" embed_param { num_output: 3 input_dim: 5 bias_term: true
    weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } }"#;

#[test]
fn embed_forward_and_param_gradients() {
    let idx = Blob::from_host(&[2, 2], vec![4.0, 0.0, 4.0, 2.0]);
    let mut a = vec![
        idx.clone(),
        Blob::default(),
        Blob::default(),
        Blob::default(),
    ];
    forward(EMBED, &mut a, &[0], &[1], &[2, 3]).unwrap();
    assert_eq!(a[1].shape(), [2, 2, 3]);
    assert_eq!(a[2].shape(), [5, 3]);
    let (w, b, y) = (a[2].data_vec(), a[3].data_vec(), a[1].data_vec());
    for (n, &i) in [4usize, 0, 4, 2].iter().enumerate() {
        for j in 0..3 {
            assert!((y[n * 3 + j] - (w[i * 3 + j] + b[j])).abs() < 1e-6);
        }
    }
    for (text, params) in [
        (EMBED, &[2usize, 3][..]),
        (
            r#"type: "Embed" embed_param { num_output: 2 input_dim: 3 bias_term: false weight_filler { type: "gaussian" }}"#,
            &[2][..],
        ),
    ] {
        let idx = if params.len() == 2 {
            idx.clone()
        } else {
            Blob::from_host(&[1], vec![1.0])
        };
        let mut a = vec![idx, Blob::default()];
        let mut l = layer(text);
        GradientChecker::default()
            .check_bottoms(&[])
            .check_layer(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[1],
                params,
            )
            .unwrap();
    }
}

#[test]
fn embed_errors() {
    for (v, msg) in [
        (5.0, "outside the valid range"),
        (-1.0, "outside"),
        (1.5, "non-integer"),
    ] {
        let mut a = vec![Blob::from_host(&[2], vec![0.0, v]), Blob::default()];
        let e = forward(EMBED, &mut a, &[0], &[1], &[2, 3]).unwrap_err();
        assert!(e.contains(msg), "{v}: {e}");
    }
    let mut a = vec![Blob::from_host(&[2], vec![0.0, 1.0]), Blob::default()];
    let mut l = layer(EMBED);
    let mut cx = cpu_ctx(Phase::Train);
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[2, 3]).unwrap();
    let mut io = Io::new(&mut a, &[0], &[1], &[2, 3]);
    let e = l
        .backward(&mut cx, &mut io, &[true])
        .unwrap_err()
        .to_string();
    assert!(e.contains("index input"), "{e}");
    let e = layer_from_text(r#"type: "Embed" embed_param { num_output: 3 }"#)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("input_dim"), "{e}");
}

#[test]
fn filter_selects_and_backprops() {
    let sel = Blob::from_host(&[4, 1], vec![0.0, 2.0, 0.0, -1.0]);
    let mut a = vec![
        iota(&[4, 2]),
        iota(&[4]),
        sel.clone(),
        Blob::default(),
        Blob::default(),
    ];
    let mut l = layer(r#"type: "Filter""#);
    let mut cx = cpu_ctx(Phase::Train);
    crate::testing::gradient::GradientChecker::setup(
        l.as_mut(),
        &mut cx,
        &mut a,
        &[0, 1, 2],
        &[3, 4],
        &[],
    )
    .unwrap();
    // The first reshape (at setup) keeps every item, as Caffe's.
    assert_eq!(a[3].shape(), [4, 2]);
    let mut io = Io::new(&mut a, &[0, 1, 2], &[3, 4], &[]);
    l.reshape(&mut cx, &mut io).unwrap();
    l.forward(&mut cx, &mut io).unwrap();
    assert_eq!(a[3].data_vec(), [2., 3., 6., 7.]);
    assert_eq!(a[4].data_vec(), [1., 3.]);
    // Gradients: selected rows get dy, the others zero.
    let mut g = vec![gaussian_blob(&[4, 3], 1.0, 9), sel.clone(), Blob::default()];
    let mut l = layer(r#"type: "Filter""#);
    run_forward(
        l.as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut g,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    GradientChecker::default()
        .check_bottoms(&[0])
        .check_layer(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut g,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
    let mut io = Io::new(&mut g, &[0, 1], &[2], &[]);
    assert!(l.backward(&mut cx, &mut io, &[false, true]).is_err());
    // Batch 1, selected.
    let mut g = vec![
        gaussian_blob(&[1, 3], 1.0, 9),
        Blob::from_host(&[1], vec![1.0]),
        Blob::default(),
    ];
    let mut l = layer(r#"type: "Filter""#);
    run_forward(
        l.as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut g,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    GradientChecker::default()
        .check_bottoms(&[0])
        .check_layer(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut g,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
}

#[test]
fn filter_errors() {
    let mut a = vec![
        iota(&[4, 2]),
        Blob::from_host(&[4, 2], vec![1.0; 8]),
        Blob::default(),
    ];
    let e = forward(r#"type: "Filter""#, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.contains("singletons"), "{e}");
    let mut a = vec![
        iota(&[3, 2]),
        Blob::from_host(&[4], vec![1.0; 4]),
        Blob::default(),
    ];
    let e = forward(r#"type: "Filter""#, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.contains("0th dimension"), "{e}");
    let mut a = vec![
        iota(&[4, 2]),
        Blob::from_host(&[4], vec![1.0; 4]),
        Blob::default(),
        Blob::default(),
    ];
    let e = forward(r#"type: "Filter""#, &mut a, &[0, 1], &[2, 3], &[]).unwrap_err();
    assert!(e.contains("one top per filtered bottom"), "{e}");
}

#[test]
fn batch_reindex() {
    let mut a = vec![
        iota(&[3, 2]),
        Blob::from_host(&[4], vec![2.0, 0.0, 2.0, 1.0]),
        Blob::default(),
    ];
    forward(r#"type: "BatchReindex""#, &mut a, &[0, 1], &[2], &[]).unwrap();
    assert_eq!(a[2].shape(), [4, 2]);
    assert_eq!(a[2].data_vec(), [4., 5., 0., 1., 4., 5., 2., 3.]);
    let mut g = vec![
        gaussian_blob(&[3, 2, 2], 1.0, 3),
        Blob::from_host(&[4], vec![2.0, 0.0, 2.0, 1.0]),
        Blob::default(),
    ];
    let mut l = layer(r#"type: "BatchReindex""#);
    GradientChecker::default()
        .check_bottoms(&[0])
        .check_layer(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut g,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
    let mut g = vec![
        gaussian_blob(&[1, 3], 1.0, 3),
        Blob::from_host(&[2], vec![0.0, 0.0]),
        Blob::default(),
    ];
    let mut l = layer(r#"type: "BatchReindex""#);
    GradientChecker::default()
        .check_bottoms(&[0])
        .check_layer_exhaustive(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut g,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
    let mut a = vec![
        iota(&[3, 2]),
        Blob::from_host(&[2], vec![3.0, 0.0]),
        Blob::default(),
    ];
    let e = forward(r#"type: "BatchReindex""#, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.contains("outside the valid range [0, 3)"), "{e}");
    let mut a = vec![
        iota(&[3, 2]),
        Blob::from_host(&[2, 1], vec![1.0, 0.0]),
        Blob::default(),
    ];
    let e = forward(r#"type: "BatchReindex""#, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.contains("one axis"), "{e}");
}

#[test]
fn silence_zeroes_diffs() {
    let mut a = vec![gaussian_blob(&[2, 3], 1.0, 1), gaussian_blob(&[4], 1.0, 2)];
    for b in a.iter_mut() {
        let n = b.count();
        b.set_diff(&vec![7.0; n]).unwrap();
    }
    let mut l = layer(r#"type: "Silence""#);
    let mut cx = cpu_ctx(Phase::Train);
    run_forward(l.as_mut(), &mut cx, &mut a, &[0, 1], &[], &[]).unwrap();
    let mut io = Io::new(&mut a, &[0, 1], &[], &[]);
    l.backward(&mut cx, &mut io, &[true, false]).unwrap();
    assert_eq!(a[0].diff_vec(), vec![0.0; 6]);
    assert_eq!(a[1].diff_vec(), vec![7.0; 4]);
}

#[test]
fn parameter_exposes_its_blob() {
    let text = r#"type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }"#;
    let mut a = vec![Blob::default(), Blob::default()];
    forward(text, &mut a, &[], &[0], &[1]).unwrap();
    assert_eq!(a[0].shape(), [2, 3]);
    // No filler: Caffe's blob starts at zero.
    assert_eq!(a[0].data_vec(), vec![0.0; 6]);
    let mut a = vec![Blob::default(), gaussian_blob(&[2, 3], 1.0, 1)];
    let mut l = layer(text);
    let mut cx = cpu_ctx(Phase::Train);
    crate::testing::gradient::GradientChecker::setup(l.as_mut(), &mut cx, &mut a, &[], &[0], &[1])
        .unwrap();
    // Replace the zero blob, as weight loading does, then check d(top)/d(param).
    a[1] = gaussian_blob(&[2, 3], 1.0, 1);
    let mut io = Io::new(&mut a, &[], &[0], &[1]);
    l.forward(&mut cx, &mut io).unwrap();
    assert_eq!(a[0].data_vec(), a[1].data_vec());
    let mut a = vec![Blob::default(), Blob::default()];
    check(text, &mut a, &[], &[0], &[1]);
    let mut a = vec![Blob::default(), Blob::default()];
    check_exhaustive(
        r#"type: "Parameter" parameter_param { shape { dim: 1 dim: 2 } }"#,
        &mut a,
        &[],
        &[0],
        &[1],
    );
}
