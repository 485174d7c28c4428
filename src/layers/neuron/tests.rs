//! Neuron layers: forward values against the formulas, gradients by finite
//! differences (Caffe's checker settings), in-place variants, batch size 1.
use crate::layers::{Io, Layer};
use crate::proto::caffe::Phase;
use crate::tensor::Blob;
use crate::testing::gradient::{
    cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
};

const SHAPES: &[&[usize]] = &[&[2, 3, 4, 5], &[1, 3, 2, 2]];

/// Forward out of place and in place; both must equal `f` element-wise.
fn check_forward(text: &str, f: impl Fn(f32) -> f32) {
    for shape in SHAPES {
        let x = gaussian_blob(shape, 1.0, 5);
        let want: Vec<f32> = x.data_vec().into_iter().map(&f).collect();
        let mut l = layer_from_text(text).unwrap();
        let mut a = vec![x.clone(), Blob::default()];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0],
            &[1],
            &[],
        )
        .unwrap();
        assert_eq!(a[1].shape(), *shape);
        assert_close(&a[1].data_vec(), &want);
        let mut a = vec![x];
        let mut l = layer_from_text(text).unwrap();
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0],
            &[0],
            &[],
        )
        .unwrap();
        assert_close(&a[0].data_vec(), &want);
    }
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "[{i}] {g} vs {w}");
    }
}

/// Gradient checks out of place and in place, for each test shape.
fn check_grad(text: &str, checker: &GradientChecker, phase: Phase) {
    for shape in SHAPES {
        let x = gaussian_blob(shape, 1.0, 9);
        let mut l = layer_from_text(text).unwrap();
        let mut a = vec![x.clone(), Blob::default()];
        checker
            .check_layer_exhaustive(l.as_mut(), &mut cpu_ctx(phase), &mut a, &[0], &[1], &[])
            .unwrap();
        let mut l = layer_from_text(text).unwrap();
        let mut a = vec![x];
        checker
            .check_layer(l.as_mut(), &mut cpu_ctx(phase), &mut a, &[0], &[0], &[])
            .unwrap();
    }
}

#[test]
fn relu() {
    check_forward(r#"type: "ReLU""#, |x| x.max(0.0));
    let c = GradientChecker::new(1e-2, 1e-3).kink(0.0, 0.01);
    check_grad(r#"type: "ReLU""#, &c, Phase::Train);
}

#[test]
fn leaky_relu() {
    let t = r#"type: "ReLU" relu_param { negative_slope: 0.01 }"#;
    check_forward(t, |x| if x > 0.0 { x } else { 0.01 * x });
    let c = GradientChecker::new(1e-2, 1e-3).kink(0.0, 0.01);
    check_grad(t, &c, Phase::Train);
}

#[test]
fn relu_backward_at_zero_uses_slope() {
    let mut l = layer_from_text(r#"type: "ReLU" relu_param { negative_slope: 0.5 }"#).unwrap();
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![Blob::from_host(&[3], vec![-1.0, 0.0, 2.0]), Blob::default()];
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[]).unwrap();
    assert_eq!(a[1].data_vec(), vec![-0.5, 0.0, 2.0]);
    a[1].set_diff(&[1.0, 1.0, 1.0]).unwrap();
    l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[1], &[]), &[true])
        .unwrap();
    assert_eq!(a[0].diff_vec(), vec![0.5, 0.5, 1.0]);
}

#[test]
fn sigmoid() {
    check_forward(r#"type: "Sigmoid""#, |x| 1.0 / (1.0 + (-x).exp()));
    let c = GradientChecker::new(1e-2, 1e-3).kink(0.0, 0.01);
    check_grad(r#"type: "Sigmoid""#, &c, Phase::Train);
}

#[test]
fn tanh() {
    check_forward(r#"type: "TanH""#, |x| {
        let e = (2.0 * x as f64).exp();
        ((e - 1.0) / (e + 1.0)) as f32
    });
    check_grad(r#"type: "TanH""#, &GradientChecker::default(), Phase::Train);
}

#[test]
fn propagate_down_false_leaves_bottom_diff() {
    let mut l = layer_from_text(r#"type: "TanH""#).unwrap();
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![gaussian_blob(&[4], 1.0, 1), Blob::default()];
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[]).unwrap();
    a[0].set_diff(&[7.0; 4]).unwrap();
    l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[1], &[]), &[false])
        .unwrap();
    assert_eq!(a[0].diff_vec(), vec![7.0; 4]);
}

#[test]
fn dropout_test_phase_is_identity() {
    for in_place in [false, true] {
        let mut l =
            layer_from_text(r#"type: "Dropout" dropout_param { dropout_ratio: 0.3 }"#).unwrap();
        let mut cx = cpu_ctx(Phase::Test);
        let x = gaussian_blob(&[2, 3, 4], 1.0, 3);
        let mut a = vec![x.clone(), Blob::default()];
        let top = if in_place { 0 } else { 1 };
        run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[top], &[]).unwrap();
        assert_eq!(a[top].data_vec(), x.data_vec());
        let dy = gaussian_blob(&[2, 3, 4], 1.0, 4).data_vec();
        a[top].set_diff(&dy).unwrap();
        l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[top], &[]), &[true])
            .unwrap();
        assert_eq!(a[0].diff_vec(), dy);
    }
}

#[test]
fn dropout_train_masks_and_scales() {
    for ratio in [0.5f32, 0.2] {
        let mut l = layer_from_text(&format!(
            r#"type: "Dropout" dropout_param {{ dropout_ratio: {ratio} }}"#
        ))
        .unwrap();
        let mut cx = cpu_ctx(Phase::Train);
        let n = 10000;
        let mut a = vec![Blob::from_host(&[n], vec![1.0; n]), Blob::default()];
        run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[]).unwrap();
        let y = a[1].data_vec();
        let scale = (1.0 / (1.0 - ratio as f64)) as f32;
        assert!(y.iter().all(|&v| v == 0.0 || v == scale));
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f32 / n as f32;
        assert!((dropped - ratio).abs() < 0.02, "{dropped} vs {ratio}");
        // Backward applies the same mask and scale.
        a[1].set_diff(&vec![2.0; n]).unwrap();
        l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[1], &[]), &[true])
            .unwrap();
        let dx = a[0].diff_vec();
        for (d, v) in dx.iter().zip(&y) {
            assert_eq!(*d, 2.0 * v);
        }
        // A second forward draws a new mask.
        let mut io = Io::new(&mut a, &[0], &[1], &[]);
        l.forward(&mut cx, &mut io).unwrap();
        assert_ne!(a[1].data_vec(), y);
    }
}

#[test]
fn dropout_gradient() {
    // The checker reseeds the stream before each forward: the mask is fixed.
    check_grad(
        r#"type: "Dropout" dropout_param { dropout_ratio: 0.5 }"#,
        &GradientChecker::default(),
        Phase::Train,
    );
    check_grad(
        r#"type: "Dropout""#,
        &GradientChecker::default(),
        Phase::Test,
    );
}

#[test]
fn dropout_rejects_bad_ratio() {
    for r in ["1.0", "-0.1", "1.5"] {
        let err = layer_from_text(&format!(
            r#"name: "d" type: "Dropout" dropout_param {{ dropout_ratio: {r} }}"#
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("dropout_ratio") && err.contains("'d'"),
            "{err}"
        );
    }
}

#[test]
fn all_types_allow_in_place() {
    for t in super::TYPES {
        let l = layer_from_text(&format!(r#"type: "{t}""#)).unwrap();
        assert!(l.allows_in_place(), "{t}");
        assert_eq!(l.type_name(), *t);
    }
}

/// The `Layer` trait object is what the registry hands out.
#[allow(dead_code)]
fn _object_safe(_: &dyn Layer) {}
