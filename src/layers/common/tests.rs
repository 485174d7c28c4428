//! Split, Concat, Flatten, Eltwise, Input and DummyData: values, shapes,
//! gradients (Caffe's checker settings) and error paths.
use crate::layers::{Io, Layer};
use crate::proto::caffe::Phase;
use crate::tensor::Blob;
use crate::testing::gradient::{
    cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
};

fn layer(text: &str) -> Box<dyn Layer> {
    layer_from_text(text).unwrap()
}

/// Run setup + forward and return the error text.
fn forward_err(text: &str, a: &mut Vec<Blob>, b: &[usize], t: &[usize]) -> String {
    run_forward(
        layer(text).as_mut(),
        &mut cpu_ctx(Phase::Train),
        a,
        b,
        t,
        &[],
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn split_copies_and_sums() {
    let x = gaussian_blob(&[2, 3], 1.0, 1);
    let mut l = layer(r#"type: "Split""#);
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![x.clone(), Blob::default(), Blob::default(), Blob::default()];
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1, 2, 3], &[]).unwrap();
    for (t, b) in a.iter_mut().enumerate().skip(1) {
        assert_eq!(b.data_vec(), x.data_vec());
        b.set_diff(&[t as f32; 6]).unwrap();
    }
    l.backward(
        &mut cx,
        &mut Io::new(&mut a, &[0], &[1, 2, 3], &[]),
        &[true],
    )
    .unwrap();
    assert_eq!(a[0].diff_vec(), vec![6.0; 6]);
    for tops in [&[1][..], &[1, 2], &[1, 2, 3]] {
        let mut a = vec![x.clone(), Blob::default(), Blob::default(), Blob::default()];
        GradientChecker::default()
            .check_layer_exhaustive(
                layer(r#"type: "Split""#).as_mut(),
                &mut cx,
                &mut a,
                &[0],
                tops,
                &[],
            )
            .unwrap();
    }
    let mut a = vec![x];
    assert!(forward_err(r#"type: "Split""#, &mut a, &[0], &[0]).contains("in-place"));
}

#[test]
fn concat_axes() {
    let a0 = gaussian_blob(&[2, 3, 2], 1.0, 1);
    let a1 = gaussian_blob(&[2, 1, 2], 1.0, 2);
    let b0 = gaussian_blob(&[1, 3, 2], 1.0, 3);
    let (x0, x1, y0) = (a0.data_vec(), a1.data_vec(), b0.data_vec());
    // Channel concat (default axis 1), also through the legacy concat_dim.
    for text in [
        r#"type: "Concat""#,
        r#"type: "Concat" concat_param { concat_dim: 1 }"#,
        r#"type: "Concat" concat_param { axis: -2 }"#,
    ] {
        let mut a = vec![a0.clone(), a1.clone(), Blob::default()];
        run_forward(
            layer(text).as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
        assert_eq!(a[2].shape(), &[2, 4, 2]);
        let mut want = Vec::new();
        for n in 0..2 {
            want.extend_from_slice(&x0[n * 6..n * 6 + 6]);
            want.extend_from_slice(&x1[n * 2..n * 2 + 2]);
        }
        assert_eq!(a[2].data_vec(), want, "{text}");
    }
    // Batch concat: plain append.
    let mut a = vec![a0.clone(), b0.clone(), Blob::default()];
    run_forward(
        layer(r#"type: "Concat" concat_param { axis: 0 }"#).as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    assert_eq!(a[2].shape(), &[3, 3, 2]);
    assert_eq!(a[2].data_vec(), [x0.clone(), y0].concat());
    // One bottom: a copy.
    let mut a = vec![a0.clone(), Blob::default()];
    run_forward(
        layer(r#"type: "Concat""#).as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].data_vec(), x0);
}

#[test]
fn concat_gradient() {
    let c = GradientChecker::default();
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![
        gaussian_blob(&[2, 3, 2], 1.0, 1),
        gaussian_blob(&[2, 1, 2], 1.0, 2),
        Blob::default(),
    ];
    c.check_layer_exhaustive(
        layer(r#"type: "Concat""#).as_mut(),
        &mut cx,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    let mut a = vec![
        gaussian_blob(&[1, 3], 1.0, 1),
        gaussian_blob(&[2, 3], 1.0, 2),
        gaussian_blob(&[1, 3], 1.0, 3),
        Blob::default(),
    ];
    c.check_layer_exhaustive(
        layer(r#"type: "Concat" concat_param { axis: 0 }"#).as_mut(),
        &mut cx,
        &mut a,
        &[0, 1, 2],
        &[3],
        &[],
    )
    .unwrap();
    // Only bottom 1 propagates; bottom 0's diff is untouched.
    let mut a = vec![
        gaussian_blob(&[1, 3], 1.0, 1),
        gaussian_blob(&[2, 3], 1.0, 2),
        Blob::default(),
    ];
    a[0].set_diff(&[9.0; 3]).unwrap();
    c.clone()
        .check_bottoms(&[1])
        .check_layer(
            layer(r#"type: "Concat" concat_param { axis: 0 }"#).as_mut(),
            &mut cx,
            &mut a,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
    assert_eq!(a[0].diff_vec(), vec![9.0; 3]);
}

#[test]
fn concat_errors() {
    let mut a = vec![
        gaussian_blob(&[2, 3], 1.0, 1),
        gaussian_blob(&[3, 3], 1.0, 2),
        Blob::default(),
    ];
    assert!(forward_err(r#"type: "Concat""#, &mut a, &[0, 1], &[2]).contains("same shape"));
    let mut a = vec![
        gaussian_blob(&[2, 3], 1.0, 1),
        gaussian_blob(&[2, 3, 1], 1.0, 2),
        Blob::default(),
    ];
    assert!(forward_err(r#"type: "Concat""#, &mut a, &[0, 1], &[2]).contains("#axes"));
    let mut a = vec![gaussian_blob(&[2, 3], 1.0, 1), Blob::default()];
    assert!(forward_err(
        r#"type: "Concat" concat_param { concat_dim: 2 }"#,
        &mut a,
        &[0],
        &[1]
    )
    .contains("concat_dim"));
    let e = layer_from_text(r#"type: "Concat" concat_param { axis: 1 concat_dim: 1 }"#)
        .err()
        .unwrap();
    assert!(e.to_string().contains("not both"), "{e}");
}

#[test]
fn flatten_shapes() {
    let x = gaussian_blob(&[2, 3, 4, 5], 1.0, 1);
    for (extra, want) in [
        ("", vec![2, 60]),
        ("flatten_param { axis: 0 }", vec![120]),
        ("flatten_param { axis: 2 }", vec![2, 3, 20]),
        ("flatten_param { axis: 1 end_axis: 2 }", vec![2, 12, 5]),
        ("flatten_param { axis: -3 end_axis: -2 }", vec![2, 12, 5]),
        ("flatten_param { axis: 1 end_axis: 1 }", vec![2, 3, 4, 5]),
    ] {
        let mut a = vec![x.clone(), Blob::default()];
        run_forward(
            layer(&format!(r#"type: "Flatten" {extra}"#)).as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0],
            &[1],
            &[],
        )
        .unwrap();
        assert_eq!(a[1].shape(), want.as_slice(), "{extra}");
        assert_eq!(a[1].data_vec(), x.data_vec());
    }
    let mut a = vec![gaussian_blob(&[2, 3, 2], 1.0, 1), Blob::default()];
    GradientChecker::default()
        .check_layer_exhaustive(
            layer(r#"type: "Flatten""#).as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0],
            &[1],
            &[],
        )
        .unwrap();
    let mut a = vec![x.clone()];
    assert!(forward_err(r#"type: "Flatten""#, &mut a, &[0], &[0]).contains("in-place"));
    let mut a = vec![x, Blob::default()];
    assert!(forward_err(
        r#"type: "Flatten" flatten_param { axis: 2 end_axis: 1 }"#,
        &mut a,
        &[0],
        &[1]
    )
    .contains("end_axis"));
}

fn three_bottoms(shape: &[usize]) -> Vec<Blob> {
    vec![
        gaussian_blob(shape, 1.0, 11),
        gaussian_blob(shape, 1.0, 12),
        gaussian_blob(shape, 1.0, 13),
        Blob::default(),
    ]
}

#[test]
fn eltwise_forward() {
    let shape = [2, 3, 4];
    let a = three_bottoms(&shape);
    let (x, y, z) = (a[0].data_vec(), a[1].data_vec(), a[2].data_vec());
    let run = |text: &str| {
        let mut a = three_bottoms(&shape);
        run_forward(
            layer(text).as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0, 1, 2],
            &[3],
            &[],
        )
        .unwrap();
        assert_eq!(a[3].shape(), shape);
        a[3].data_vec()
    };
    let prod = run(r#"type: "Eltwise" eltwise_param { operation: PROD }"#);
    let sum = run(r#"type: "Eltwise""#);
    let coeff =
        run(r#"type: "Eltwise" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }"#);
    let max = run(r#"type: "Eltwise" eltwise_param { operation: MAX }"#);
    for i in 0..24 {
        assert!((prod[i] - x[i] * y[i] * z[i]).abs() < 1e-6);
        assert!((sum[i] - (x[i] + y[i] + z[i])).abs() < 1e-6);
        assert!((coeff[i] - (x[i] - 0.5 * y[i] + 2.0 * z[i])).abs() < 1e-5);
        assert_eq!(max[i], x[i].max(y[i]).max(z[i]));
    }
}

#[test]
fn eltwise_gradients() {
    let mut cx = cpu_ctx(Phase::Train);
    for text in [
        r#"type: "Eltwise" eltwise_param { operation: PROD }"#,
        r#"type: "Eltwise" eltwise_param { operation: PROD stable_prod_grad: false }"#,
        r#"type: "Eltwise" eltwise_param { operation: SUM }"#,
        r#"type: "Eltwise" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }"#,
    ] {
        for shape in [&[2, 3, 2][..], &[1, 2]] {
            let mut a = three_bottoms(shape);
            GradientChecker::default()
                .check_layer_exhaustive(
                    layer(text).as_mut(),
                    &mut cx,
                    &mut a,
                    &[0, 1, 2],
                    &[3],
                    &[],
                )
                .unwrap();
        }
    }
    // MAX: Caffe's settings (the max is not differentiable at ties).
    let mut a = three_bottoms(&[2, 3, 2]);
    GradientChecker::new(1e-4, 1e-2)
        .check_layer_exhaustive(
            layer(r#"type: "Eltwise" eltwise_param { operation: MAX }"#).as_mut(),
            &mut cx,
            &mut a,
            &[0, 1, 2],
            &[3],
            &[],
        )
        .unwrap();
}

#[test]
fn eltwise_max_routes_to_winner() {
    let mut l = layer(r#"type: "Eltwise" eltwise_param { operation: MAX }"#);
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![
        Blob::from_host(&[3], vec![1.0, 5.0, 2.0]),
        Blob::from_host(&[3], vec![1.0, 0.0, 3.0]),
        Blob::default(),
    ];
    run_forward(l.as_mut(), &mut cx, &mut a, &[0, 1], &[2], &[]).unwrap();
    assert_eq!(a[2].data_vec(), vec![1.0, 5.0, 3.0]);
    a[2].set_diff(&[1.0, 2.0, 3.0]).unwrap();
    l.backward(
        &mut cx,
        &mut Io::new(&mut a, &[0, 1], &[2], &[]),
        &[true, true],
    )
    .unwrap();
    // The 1.0 tie goes to bottom 1 (Caffe's rule).
    assert_eq!(a[0].diff_vec(), vec![0.0, 2.0, 0.0]);
    assert_eq!(a[1].diff_vec(), vec![1.0, 0.0, 3.0]);
}

#[test]
fn eltwise_errors() {
    let e =
        layer_from_text(r#"type: "Eltwise" eltwise_param { operation: PROD coeff: 1 coeff: 2 }"#)
            .err()
            .unwrap();
    assert!(e.to_string().contains("summation"), "{e}");
    let mut a = three_bottoms(&[2, 2]);
    assert!(forward_err(
        r#"type: "Eltwise" eltwise_param { coeff: 1 coeff: 2 }"#,
        &mut a,
        &[0, 1, 2],
        &[3]
    )
    .contains("one coefficient per bottom"));
    let mut a = vec![
        gaussian_blob(&[2, 2], 1.0, 1),
        gaussian_blob(&[4], 1.0, 1),
        Blob::default(),
    ];
    assert!(forward_err(r#"type: "Eltwise""#, &mut a, &[0, 1], &[2]).contains("same shape"));
    let mut a = vec![gaussian_blob(&[2, 2], 1.0, 1)];
    assert!(forward_err(r#"type: "Eltwise""#, &mut a, &[0], &[1]).contains("bottom"));
}

#[test]
fn input_shapes() {
    let mut cx = cpu_ctx(Phase::Test);
    let one = r#"type: "Input" input_param { shape { dim: 2 dim: 3 } }"#;
    let mut a = vec![Blob::default(), Blob::default()];
    run_forward(layer(one).as_mut(), &mut cx, &mut a, &[], &[0, 1], &[]).unwrap();
    assert_eq!(a[0].shape(), &[2, 3]);
    assert_eq!(a[1].shape(), &[2, 3]);
    let two = r#"type: "Input" input_param { shape { dim: 2 } shape { dim: 1 dim: 4 } }"#;
    let mut a = vec![Blob::default(), Blob::default()];
    run_forward(layer(two).as_mut(), &mut cx, &mut a, &[], &[0, 1], &[]).unwrap();
    assert_eq!(a[1].shape(), &[1, 4]);
    // Values written by the caller survive reshape and forward.
    a[1].set_data(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut l = layer(two);
    run_forward(l.as_mut(), &mut cx, &mut a, &[], &[0, 1], &[]).unwrap();
    a[1].set_data(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut io = Io::new(&mut a, &[], &[0, 1], &[]);
    l.reshape(&mut cx, &mut io).unwrap();
    l.forward(&mut cx, &mut io).unwrap();
    assert_eq!(a[1].data_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    let mut a = vec![Blob::default(), Blob::default(), Blob::default()];
    assert!(forward_err(two, &mut a, &[], &[0, 1, 2]).contains("one shape per top"));
}

#[test]
fn dummy_data_fillers_and_refill() {
    let text = r#"type: "DummyData" dummy_data_param {
        data_filler { type: "constant" value: 0.5 }
        data_filler { type: "gaussian" std: 1.0 }
        shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 dim: 2 } }"#;
    let mut l = layer(text);
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![Blob::default(), Blob::default()];
    run_forward(l.as_mut(), &mut cx, &mut a, &[], &[0, 1], &[]).unwrap();
    assert_eq!(a[0].shape(), &[2, 3]);
    assert_eq!(a[1].shape(), &[2, 2, 2]);
    assert_eq!(a[0].data_vec(), vec![0.5; 6]);
    let first = a[1].data_vec();
    assert!(first.iter().all(|v| v.is_finite()) && first.iter().any(|&v| v != 0.0));
    // Gaussian tops are redrawn on every forward; constant ones are not touched.
    a[0].set_data(&[7.0; 6]).unwrap();
    let mut io = Io::new(&mut a, &[], &[0, 1], &[]);
    l.reshape(&mut cx, &mut io).unwrap();
    l.forward(&mut cx, &mut io).unwrap();
    assert_ne!(a[1].data_vec(), first);
    assert_eq!(a[0].data_vec(), vec![7.0; 6]);
}

#[test]
fn dummy_data_defaults_and_legacy_shapes() {
    let mut cx = cpu_ctx(Phase::Train);
    // No filler: constant 0; legacy dims, one value shared by both tops.
    let text =
        r#"type: "DummyData" dummy_data_param { num: 2 num: 3 channels: 1 height: 2 width: 2 }"#;
    let mut a = vec![Blob::from_host(&[1], vec![3.0]), Blob::default()];
    run_forward(layer(text).as_mut(), &mut cx, &mut a, &[], &[0, 1], &[]).unwrap();
    assert_eq!(a[0].shape(), &[2, 1, 2, 2]);
    assert_eq!(a[1].shape(), &[3, 1, 2, 2]);
    assert_eq!(a[0].data_vec(), vec![0.0; 8]);
    // One uniform filler for every top.
    let text = r#"type: "DummyData" dummy_data_param { data_filler { type: "uniform" min: 1 max: 2 } shape { dim: 50 } }"#;
    let mut a = vec![Blob::default(), Blob::default()];
    run_forward(layer(text).as_mut(), &mut cx, &mut a, &[], &[0, 1], &[]).unwrap();
    for b in &a {
        assert!(b.data_vec().iter().all(|v| (1.0..=2.0).contains(v)));
    }
    assert_ne!(a[0].data_vec(), a[1].data_vec());
}

#[test]
fn dummy_data_errors() {
    let mut a = vec![Blob::default(), Blob::default(), Blob::default()];
    let e = forward_err(
        r#"type: "DummyData" dummy_data_param { shape { dim: 1 } shape { dim: 2 } }"#,
        &mut a,
        &[],
        &[0, 1, 2],
    );
    assert!(e.contains("shape"), "{e}");
    let e = forward_err(
        r#"type: "DummyData" dummy_data_param { data_filler { } data_filler { } shape { dim: 1 } }"#,
        &mut a,
        &[],
        &[0, 1, 2],
    );
    assert!(e.contains("data_filler"), "{e}");
    let e = layer_from_text(r#"type: "DummyData" dummy_data_param { num: 1 shape { dim: 1 } }"#)
        .err()
        .unwrap();
    assert!(e.to_string().contains("legacy"), "{e}");
    let e = forward_err(
        r#"type: "DummyData" dummy_data_param { data_filler { type: "nope" } shape { dim: 2 } }"#,
        &mut a,
        &[],
        &[0],
    );
    assert!(e.contains("nope"), "{e}");
}
