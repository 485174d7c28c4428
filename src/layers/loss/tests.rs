//! Softmax, SoftmaxWithLoss and Accuracy against f64 oracles, gradient
//! checks, normalization modes, ignore_label, loss weight, error paths.
use crate::layers::{Io, Layer};
use crate::proto::caffe::Phase;
use crate::tensor::Blob;
use crate::testing::gradient::{
    cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
};

fn assert_close(got: &[f32], want: &[f64], atol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= atol + 1e-5 * w.abs(),
            "[{i}] {g} vs {w}"
        );
    }
}

/// Softmax along the middle axis of (outer, ch, inner), in f64.
fn softmax_oracle(x: &[f32], outer: usize, ch: usize, inner: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for i in 0..outer {
        for k in 0..inner {
            let at = |c: usize| (i * ch + c) * inner + k;
            let m = (0..ch).map(|c| x[at(c)] as f64).fold(f64::MIN, f64::max);
            let s: f64 = (0..ch).map(|c| (x[at(c)] as f64 - m).exp()).sum();
            for c in 0..ch {
                y[at(c)] = (x[at(c)] as f64 - m).exp() / s;
            }
        }
    }
    y
}

#[test]
fn softmax_forward_axes() {
    let shape = [2, 3, 2, 4];
    let x = gaussian_blob(&shape, 3.0, 1);
    for (axis, outer, ch, inner) in [(1, 2, 3, 8), (2, 6, 2, 4), (-1, 12, 4, 1), (0, 1, 2, 24)] {
        let mut l = layer_from_text(&format!(
            r#"type: "Softmax" softmax_param {{ axis: {axis} }}"#
        ))
        .unwrap();
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
        assert_eq!(a[1].shape(), shape);
        assert_close(
            &a[1].data_vec(),
            &softmax_oracle(&x.data_vec(), outer, ch, inner),
            1e-6,
        );
    }
}

#[test]
fn softmax_gradient() {
    for (shape, axis) in [
        (&[2, 3, 2, 2][..], 1),
        (&[1, 4][..], 1),
        (&[2, 3, 4][..], 2),
    ] {
        let t = format!(r#"type: "Softmax" softmax_param {{ axis: {axis} }}"#);
        let x = gaussian_blob(shape, 1.0, 2);
        let mut a = vec![x.clone(), Blob::default()];
        GradientChecker::default()
            .check_layer_exhaustive(
                layer_from_text(&t).unwrap().as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[1],
                &[],
            )
            .unwrap();
        // In place.
        let mut a = vec![x];
        GradientChecker::default()
            .check_layer(
                layer_from_text(&t).unwrap().as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[0],
                &[],
            )
            .unwrap();
    }
}

/// Integer labels in [0, ch) for `n` positions (some equal to 2 to test ignoring).
fn labels(n: usize, ch: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7 + 3) % ch) as f32).collect()
}

/// The loss of SoftmaxWithLoss in f64: (Σ −log p, valid count).
fn nll(
    x: &[f32],
    lab: &[f32],
    outer: usize,
    ch: usize,
    inner: usize,
    ignore: Option<i32>,
) -> (f64, usize) {
    let p = softmax_oracle(x, outer, ch, inner);
    let (mut loss, mut n) = (0.0, 0);
    for i in 0..outer {
        for k in 0..inner {
            let l = lab[i * inner + k] as i32;
            if Some(l) == ignore {
                continue;
            }
            loss -= p[(i * ch + l as usize) * inner + k]
                .max(f32::MIN_POSITIVE as f64)
                .ln();
            n += 1;
        }
    }
    (loss, n)
}

fn loss_layer(extra: &str) -> Box<dyn Layer> {
    layer_from_text(&format!(r#"name: "loss" type: "SoftmaxWithLoss" {extra}"#)).unwrap()
}

#[test]
fn softmax_loss_normalization_modes() {
    // (N=2, C=4, H=3): outer 2, inner 3.
    let shape = [2, 4, 3];
    let x = gaussian_blob(&shape, 2.0, 3);
    let lab = labels(6, 4);
    let ignore = 2;
    let (sum_all, n_all) = nll(&x.data_vec(), &lab, 2, 4, 3, None);
    let (sum_ign, n_valid) = nll(&x.data_vec(), &lab, 2, 4, 3, Some(ignore));
    assert!(n_valid < n_all && n_valid > 0);
    let cases: Vec<(String, f64)> = vec![
        (String::new(), sum_all / 6.0),
        ("loss_param { normalization: FULL }".into(), sum_all / 6.0),
        ("loss_param { normalization: VALID }".into(), sum_all / 6.0),
        (
            "loss_param { normalization: BATCH_SIZE }".into(),
            sum_all / 2.0,
        ),
        ("loss_param { normalization: NONE }".into(), sum_all),
        ("loss_param { normalize: true }".into(), sum_all / 6.0),
        ("loss_param { normalize: false }".into(), sum_all / 2.0),
        // An explicit normalization wins over the legacy field.
        (
            "loss_param { normalize: false normalization: NONE }".into(),
            sum_all,
        ),
        (
            format!("loss_param {{ ignore_label: {ignore} }}"),
            sum_ign / n_valid as f64,
        ),
        (
            format!("loss_param {{ ignore_label: {ignore} normalization: FULL }}"),
            sum_ign / 6.0,
        ),
        (
            format!("loss_param {{ ignore_label: {ignore} normalization: BATCH_SIZE }}"),
            sum_ign / 2.0,
        ),
        (
            format!("loss_param {{ ignore_label: {ignore} normalization: NONE }}"),
            sum_ign,
        ),
    ];
    for (extra, want) in cases {
        let mut l = loss_layer(&extra);
        let mut a = vec![
            x.clone(),
            Blob::from_host(&[2, 3], lab.clone()),
            Blob::default(),
        ];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
        assert_eq!(a[2].shape(), &[] as &[usize]);
        assert_close(&a[2].data_vec(), &[want], 1e-5);
    }
}

#[test]
fn softmax_loss_all_ignored_uses_normalizer_one() {
    let mut l = loss_layer("loss_param { ignore_label: 1 }");
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![
        gaussian_blob(&[2, 3], 1.0, 1),
        Blob::from_host(&[2], vec![1.0, 1.0]),
        Blob::default(),
    ];
    run_forward(l.as_mut(), &mut cx, &mut a, &[0, 1], &[2], &[]).unwrap();
    assert_eq!(a[2].data_vec(), vec![0.0]);
    a[2].set_diff(&[1.0]).unwrap();
    l.backward(
        &mut cx,
        &mut Io::new(&mut a, &[0, 1], &[2], &[]),
        &[true, false],
    )
    .unwrap();
    assert_eq!(a[0].diff_vec(), vec![0.0; 6]);
}

#[test]
fn softmax_loss_gradient_and_loss_weight() {
    let shape = [2, 3, 2];
    let x = gaussian_blob(&shape, 1.0, 4);
    let lab = labels(4, 3);
    for extra in [
        "",
        "loss_param { normalization: NONE }",
        "loss_param { normalization: BATCH_SIZE ignore_label: 0 }",
        "softmax_param { axis: 2 } loss_param { normalization: FULL }",
    ] {
        let lab_shape: &[usize] = if extra.contains("axis: 2") {
            &[2, 3]
        } else {
            &[2, 2]
        };
        let lab = if extra.contains("axis: 2") {
            labels(6, 2)
        } else {
            lab.clone()
        };
        let mut a = vec![x.clone(), Blob::from_host(lab_shape, lab), Blob::default()];
        GradientChecker::new(1e-2, 1e-2)
            .check_bottoms(&[0])
            .check_layer_exhaustive(
                loss_layer(extra).as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0, 1],
                &[2],
                &[],
            )
            .unwrap();
    }
    // Explicit gradient: (p − onehot) · lw / Z with lw from the top diff.
    let mut l = loss_layer("");
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![
        x.clone(),
        Blob::from_host(&[2, 2], lab.clone()),
        Blob::default(),
    ];
    run_forward(l.as_mut(), &mut cx, &mut a, &[0, 1], &[2], &[]).unwrap();
    a[2].set_diff(&[2.5]).unwrap();
    l.backward(
        &mut cx,
        &mut Io::new(&mut a, &[0, 1], &[2], &[]),
        &[true, false],
    )
    .unwrap();
    let p = softmax_oracle(&x.data_vec(), 2, 3, 2);
    let mut want = p.clone();
    for i in 0..2 {
        for k in 0..2 {
            want[(i * 3 + lab[i * 2 + k] as usize) * 2 + k] -= 1.0;
        }
    }
    let want: Vec<f64> = want.iter().map(|v| v * 2.5 / 4.0).collect();
    assert_close(&a[0].diff_vec(), &want, 1e-6);
}

#[test]
fn softmax_loss_second_top_is_prob_and_labels_get_no_gradient() {
    let x = gaussian_blob(&[3, 5], 1.0, 6);
    let mut l = loss_layer("");
    assert!(!l.allow_force_backward(1) && l.allow_force_backward(0));
    let mut cx = cpu_ctx(Phase::Train);
    let mut a = vec![
        x.clone(),
        Blob::from_host(&[3], vec![0.0, 4.0, 2.0]),
        Blob::default(),
        Blob::default(),
    ];
    run_forward(l.as_mut(), &mut cx, &mut a, &[0, 1], &[2, 3], &[]).unwrap();
    assert_eq!(a[3].shape(), &[3, 5]);
    assert_close(
        &a[3].data_vec(),
        &softmax_oracle(&x.data_vec(), 3, 5, 1),
        1e-6,
    );
    a[2].set_diff(&[1.0]).unwrap();
    let err = l
        .backward(
            &mut cx,
            &mut Io::new(&mut a, &[0, 1], &[2, 3], &[]),
            &[true, true],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("label"), "{err}");
}

#[test]
fn softmax_loss_shape_errors() {
    let mut cx = cpu_ctx(Phase::Train);
    // First dimension mismatch.
    let mut a = vec![
        gaussian_blob(&[2, 3], 1.0, 1),
        Blob::from_host(&[3], vec![0.0; 3]),
        Blob::default(),
    ];
    let e = run_forward(loss_layer("").as_mut(), &mut cx, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.to_string().contains("same first dimension"), "{e}");
    // Label count mismatch.
    let mut a = vec![
        gaussian_blob(&[2, 3, 2], 1.0, 1),
        Blob::from_host(&[2], vec![0.0; 2]),
        Blob::default(),
    ];
    let e = run_forward(loss_layer("").as_mut(), &mut cx, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.to_string().contains("number of labels"), "{e}");
    // A label out of range.
    let mut a = vec![
        gaussian_blob(&[2, 3], 1.0, 1),
        Blob::from_host(&[2], vec![0.0, 3.0]),
        Blob::default(),
    ];
    let e = run_forward(loss_layer("").as_mut(), &mut cx, &mut a, &[0, 1], &[2], &[]).unwrap_err();
    assert!(e.to_string().contains("label 3"), "{e}");
}

fn accuracy(extra: &str) -> Box<dyn Layer> {
    layer_from_text(&format!(r#"type: "Accuracy" {extra}"#)).unwrap()
}

/// Top-k accuracy oracle with Caffe's tie rule, plus per-class values.
fn acc_oracle(
    s: &[f32],
    lab: &[f32],
    outer: usize,
    ch: usize,
    inner: usize,
    k: usize,
    ignore: Option<i32>,
) -> (f32, Vec<f32>) {
    let (mut ok, mut n) = (0, 0);
    let mut pc = vec![(0, 0); ch];
    for i in 0..outer {
        for j in 0..inner {
            let l = lab[i * inner + j] as i32;
            if Some(l) == ignore {
                continue;
            }
            let t = s[(i * ch + l as usize) * inner + j];
            let rank = (0..ch)
                .filter(|&c| s[(i * ch + c) * inner + j] >= t)
                .count();
            pc[l as usize].1 += 1;
            n += 1;
            if rank <= k {
                ok += 1;
                pc[l as usize].0 += 1;
            }
        }
    }
    let acc = if n == 0 { 0.0 } else { ok as f32 / n as f32 };
    (
        acc,
        pc.iter()
            .map(|&(a, b)| if b == 0 { 0.0 } else { a as f32 / b as f32 })
            .collect(),
    )
}

#[test]
fn accuracy_top_k_ignore_and_per_class() {
    let (outer, ch, inner) = (10, 5, 3);
    let s = gaussian_blob(&[outer, ch, inner], 1.0, 8);
    let lab = labels(outer * inner, ch);
    for (extra, k, ignore) in [
        ("", 1, None),
        ("accuracy_param { top_k: 3 }", 3, None),
        ("accuracy_param { ignore_label: 2 }", 1, Some(2)),
        ("accuracy_param { top_k: 2 ignore_label: 4 }", 2, Some(4)),
    ] {
        let (want, want_pc) = acc_oracle(&s.data_vec(), &lab, outer, ch, inner, k, ignore);
        let mut l = accuracy(extra);
        let mut a = vec![
            s.clone(),
            Blob::from_host(&[outer, inner], lab.clone()),
            Blob::default(),
            Blob::default(),
        ];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Test),
            &mut a,
            &[0, 1],
            &[2, 3],
            &[],
        )
        .unwrap();
        assert_eq!(a[2].shape(), &[] as &[usize]);
        assert_eq!(a[2].data_vec(), vec![want], "{extra}");
        assert_eq!(a[3].shape(), &[ch]);
        assert_eq!(a[3].data_vec(), want_pc, "{extra}");
    }
}

#[test]
fn accuracy_ties_count_against_and_axis() {
    // Scores (N=2, C=3): sample 0 ties its true class with another class.
    let s = Blob::from_host(&[2, 3], vec![1.0, 1.0, 0.0, 0.2, 0.5, 0.3]);
    let lab = Blob::from_host(&[2], vec![1.0, 1.0]);
    let mut a = vec![s, lab, Blob::default()];
    run_forward(
        accuracy("").as_mut(),
        &mut cpu_ctx(Phase::Test),
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    assert_eq!(a[2].data_vec(), vec![0.5]);
    // axis -1 over (2, 2, 3): 4 positions.
    let s = gaussian_blob(&[2, 2, 3], 1.0, 2);
    let lab = labels(4, 3);
    let (want, _) = acc_oracle(&s.data_vec(), &lab, 4, 3, 1, 1, None);
    let mut a = vec![s, Blob::from_host(&[2, 2], lab), Blob::default()];
    run_forward(
        accuracy("accuracy_param { axis: -1 }").as_mut(),
        &mut cpu_ctx(Phase::Test),
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    assert_eq!(a[2].data_vec(), vec![want]);
}

#[test]
fn accuracy_errors_and_no_backward() {
    let mut cx = cpu_ctx(Phase::Test);
    let mk = || {
        vec![
            gaussian_blob(&[2, 3], 1.0, 1),
            Blob::from_host(&[2], vec![0.0, 1.0]),
            Blob::default(),
        ]
    };
    let mut a = mk();
    let e = run_forward(
        accuracy("accuracy_param { top_k: 4 }").as_mut(),
        &mut cx,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("top_k"), "{e}");
    let mut l = accuracy("");
    let mut a = mk();
    run_forward(l.as_mut(), &mut cx, &mut a, &[0, 1], &[2], &[]).unwrap();
    assert!(l
        .backward(
            &mut cx,
            &mut Io::new(&mut a, &[0, 1], &[2], &[]),
            &[true, false]
        )
        .is_err());
    l.backward(
        &mut cx,
        &mut Io::new(&mut a, &[0, 1], &[2], &[]),
        &[false, false],
    )
    .unwrap();
    assert!(!l.allow_force_backward(0));
    // All labels ignored: accuracy 0.
    let mut a = vec![
        gaussian_blob(&[2, 3], 1.0, 1),
        Blob::from_host(&[2], vec![1.0, 1.0]),
        Blob::default(),
    ];
    run_forward(
        accuracy("accuracy_param { ignore_label: 1 }").as_mut(),
        &mut cx,
        &mut a,
        &[0, 1],
        &[2],
        &[],
    )
    .unwrap();
    assert_eq!(a[2].data_vec(), vec![0.0]);
}
