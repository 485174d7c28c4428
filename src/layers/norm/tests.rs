//! BatchNorm, Scale, Bias and MVN: forward values against direct formulas,
//! finite-difference gradients (batch 1, in place, two-bottom forms),
//! running statistics, parameter-gradient accumulation.
use crate::layers::{Io, Layer};
use crate::proto::caffe::Phase;
use crate::tensor::Blob;
use crate::testing::gradient::{
    cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
};

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "[{i}] {g} vs {w}");
    }
}

/// Forward then backward with top diff `dy`; returns (top, bottom diffs, param diffs).
fn run(
    l: &mut dyn Layer,
    phase: Phase,
    arena: &mut Vec<Blob>,
    bottoms: &[usize],
    top: usize,
    params: &[usize],
    dy: &[f32],
) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut cx = cpu_ctx(phase);
    run_forward(l, &mut cx, arena, bottoms, &[top], params).unwrap();
    let y = arena[top].data_vec();
    arena[top].set_diff(dy).unwrap();
    let pd = vec![true; bottoms.len()];
    l.backward(&mut cx, &mut Io::new(arena, bottoms, &[top], params), &pd)
        .unwrap();
    let bd = bottoms.iter().map(|&b| arena[b].diff_vec()).collect();
    let pdiff = params.iter().map(|&p| arena[p].diff_vec()).collect();
    (y, bd, pdiff)
}

// ---------------------------------------------------------------- BatchNorm

const BN: &str = r#"type: "BatchNorm""#;

/// Per-channel mean and (biased) variance of an N×C×S tensor.
fn channel_stats(x: &[f32], shape: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (n, c) = (shape[0], shape.get(1).copied().unwrap_or(1));
    let s = x.len() / (n * c);
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for (i, &v) in x.iter().enumerate() {
        mean[(i / s) % c] += v as f64;
    }
    let m = (n * s) as f64;
    mean.iter_mut().for_each(|v| *v /= m);
    for (i, &v) in x.iter().enumerate() {
        let d = v as f64 - mean[(i / s) % c];
        var[(i / s) % c] += d * d;
    }
    var.iter_mut().for_each(|v| *v /= m);
    (mean, var)
}

#[test]
fn batch_norm_train_forward_and_running_stats() {
    let shape = [3, 2, 2, 3];
    let x = gaussian_blob(&shape, 2.0, 11);
    let xv: Vec<f32> = x.data_vec().iter().map(|v| v + 0.5).collect();
    let (mean, var) = channel_stats(&xv, &shape);
    let mut l =
        layer_from_text(r#"type: "BatchNorm" batch_norm_param { moving_average_fraction: 0.9 }"#)
            .unwrap();
    let mut a = vec![Blob::from_host(&shape, xv.clone())];
    let mut cx = cpu_ctx(Phase::Train);
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[2, 3, 4]).unwrap();
    let want: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / 6) % 2;
            ((v as f64 - mean[c]) / (var[c] + 1e-5).sqrt()) as f32
        })
        .collect();
    assert_close(&a[1].data_vec(), &want, 1e-5);
    // After one forward: s = 1, sums = mean and (m/(m-1))·var with m = 18.
    let corr = 18.0 / 17.0;
    assert_eq!(a[4].data_vec(), vec![1.0]);
    assert_close(&a[2].data_vec(), &[mean[0] as f32, mean[1] as f32], 1e-6);
    assert_close(
        &a[3].data_vec(),
        &[(var[0] * corr) as f32, (var[1] * corr) as f32],
        1e-6,
    );
    // A second forward: s = 0.9·1 + 1, sums = stat + 0.9·old.
    let mut io = Io::new(&mut a, &[0], &[1], &[2, 3, 4]);
    l.reshape(&mut cx, &mut io).unwrap();
    l.forward(&mut cx, &mut io).unwrap();
    assert_close(&a[4].data_vec(), &[1.9], 1e-7);
    assert_close(
        &a[2].data_vec(),
        &[(1.9 * mean[0]) as f32, (1.9 * mean[1]) as f32],
        1e-6,
    );
}

#[test]
fn batch_norm_global_stats_divide_by_factor() {
    let shape = [2, 3, 2];
    let x = gaussian_blob(&shape, 1.0, 2);
    // TEST phase defaults to global statistics.
    let mut l = layer_from_text(BN).unwrap();
    let mut a = vec![x.clone()];
    let mut cx = cpu_ctx(Phase::Test);
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[2, 3, 4]).unwrap();
    a[2].set_data(&[0.8, -0.4, 1.6]).unwrap();
    a[3].set_data(&[2.0, 0.4, 0.8]).unwrap();
    a[4].set_data(&[0.8]).unwrap();
    let mut io = Io::new(&mut a, &[0], &[1], &[2, 3, 4]);
    l.reshape(&mut cx, &mut io).unwrap();
    l.forward(&mut cx, &mut io).unwrap();
    let (mean, var) = ([1.0f64, -0.5, 2.0], [2.5f64, 0.5, 1.0]);
    let want: Vec<f32> = x
        .data_vec()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / 2) % 3;
            ((v as f64 - mean[c]) / (var[c] + 1e-5).sqrt()) as f32
        })
        .collect();
    assert_close(&a[1].data_vec(), &want, 1e-6);
    // The statistics are not updated.
    assert_eq!(a[4].data_vec(), vec![0.8]);
    // A zero factor means zero statistics: y = x / sqrt(eps).
    a[4].set_data(&[0.0]).unwrap();
    let mut io = Io::new(&mut a, &[0], &[1], &[2, 3, 4]);
    l.forward(&mut cx, &mut io).unwrap();
    let want: Vec<f32> = x
        .data_vec()
        .iter()
        .map(|&v| (v as f64 / 1e-5f64.sqrt()) as f32)
        .collect();
    assert_close(&a[1].data_vec(), &want, 1e-5);
}

#[test]
fn batch_norm_use_global_stats_follows_phase_unless_set() {
    let check = |text: &str, phase: Phase, want: bool| {
        let lp: crate::proto::caffe::LayerParameter =
            crate::proto::text::parse_text(text, "t", "caffe.LayerParameter").unwrap();
        let mut l = super::BatchNorm::new(&lp).unwrap();
        let mut a = vec![gaussian_blob(&[2, 3], 1.0, 1)];
        run_forward(&mut l, &mut cpu_ctx(phase), &mut a, &[0], &[1], &[2, 3, 4]).unwrap();
        assert_eq!(l.uses_global_stats(), want, "{text} {phase:?}");
    };
    check(BN, Phase::Train, false);
    check(BN, Phase::Test, true);
    let on = r#"type: "BatchNorm" batch_norm_param { use_global_stats: true }"#;
    let off = r#"type: "BatchNorm" batch_norm_param { use_global_stats: false }"#;
    check(on, Phase::Train, true);
    check(off, Phase::Test, false);
}

#[test]
fn batch_norm_gradients() {
    // Caffe's test uses threshold 1e-4 with 60 values per channel; these
    // small shapes (4 per channel) curve more within one step.
    let c = GradientChecker::new(1e-2, 1e-3).check_params(false);
    let global = r#"type: "BatchNorm" batch_norm_param { use_global_stats: true }"#;
    for shape in [&[2usize, 3, 2, 2][..], &[1, 3, 2, 2], &[4, 3]] {
        for (t, phase) in [
            (BN, Phase::Train),
            (global, Phase::Train),
            (BN, Phase::Test),
        ] {
            // (Global mode runs on the zero statistics of a fresh layer here;
            // the golden case covers stored statistics.)
            let x = gaussian_blob(shape, 1.0, 5);
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x.clone()];
            let mut cx = cpu_ctx(phase);
            c.check_layer_exhaustive(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[2, 3, 4])
                .unwrap_or_else(|e| panic!("{t} {phase:?} {shape:?}: {e}"));
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x];
            c.check_layer(l.as_mut(), &mut cx, &mut a, &[0], &[0], &[1, 2, 3])
                .unwrap_or_else(|e| panic!("{t} {phase:?} {shape:?} in place: {e}"));
        }
    }
}

/// Backward uses the saved normalised values: a later in-place layer that
/// overwrites the top does not change the gradient.
#[test]
fn batch_norm_backward_survives_clobbered_top() {
    let x = gaussian_blob(&[2, 3, 4], 1.0, 8);
    let dy = gaussian_blob(&[2, 3, 4], 1.0, 9).data_vec();
    let mut results = Vec::new();
    for clobber in [false, true] {
        for top in [1usize, 0] {
            let mut l = layer_from_text(BN).unwrap();
            let mut a = vec![x.clone()];
            let p = [top + 1, top + 2, top + 3];
            let mut cx = cpu_ctx(Phase::Train);
            run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[top], &p).unwrap();
            if clobber {
                a[top].set_data(&[7.0; 24]).unwrap();
            }
            a[top].set_diff(&dy).unwrap();
            l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[top], &p), &[true])
                .unwrap();
            results.push(a[0].diff_vec());
        }
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
}

#[test]
fn batch_norm_checks_channels() {
    let mut l = layer_from_text(r#"name: "bn" type: "BatchNorm""#).unwrap();
    let mut a = vec![gaussian_blob(&[2, 3], 1.0, 1)];
    let mut cx = cpu_ctx(Phase::Train);
    run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[2, 3, 4]).unwrap();
    a[0] = gaussian_blob(&[2, 4], 1.0, 1);
    let err = l
        .reshape(&mut cx, &mut Io::new(&mut a, &[0], &[1], &[2, 3, 4]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("4 channels"), "{err}");
}

// ---------------------------------------------------------------- Scale / Bias

const SCALE_BIAS: &str = r#"type: "Scale" scale_param {
    filler { type: "gaussian" mean: 1 std: 0.3 } bias_term: true
    bias_filler { type: "gaussian" std: 0.3 } }"#;

#[test]
fn scale_forward_broadcasts() {
    let x = gaussian_blob(&[2, 3, 4], 1.0, 1);
    let mut l = layer_from_text(SCALE_BIAS).unwrap();
    let mut a = vec![x.clone()];
    run_forward(
        l.as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut a,
        &[0],
        &[1],
        &[2, 3],
    )
    .unwrap();
    assert_eq!(a[2].shape(), &[3]);
    assert_eq!(a[3].shape(), &[3]);
    let (s, b) = (a[2].data_vec(), a[3].data_vec());
    let want: Vec<f32> = x
        .data_vec()
        .iter()
        .enumerate()
        .map(|(i, &v)| v * s[(i / 4) % 3] + b[(i / 4) % 3])
        .collect();
    assert_eq!(a[1].data_vec(), want);
}

#[test]
fn scale_defaults_to_identity_and_shapes_its_operand() {
    for (t, shape) in [
        (r#"type: "Scale""#, vec![3]),
        (r#"type: "Scale" scale_param { num_axes: 0 }"#, vec![]),
        (r#"type: "Scale" scale_param { num_axes: -1 }"#, vec![3, 4]),
        (r#"type: "Scale" scale_param { axis: -1 }"#, vec![4]),
        (
            r#"type: "Scale" scale_param { axis: 0 num_axes: 2 }"#,
            vec![2, 3],
        ),
    ] {
        let x = gaussian_blob(&[2, 3, 4], 1.0, 1);
        let mut l = layer_from_text(t).unwrap();
        let mut a = vec![x.clone()];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0],
            &[1],
            &[2],
        )
        .unwrap();
        assert_eq!(a[2].shape(), shape.as_slice(), "{t}");
        assert_eq!(a[1].data_vec(), x.data_vec(), "{t}");
    }
}

#[test]
fn scale_and_bias_reject_bad_operands() {
    let err = layer_from_text(r#"name: "s" type: "Scale" scale_param { num_axes: -2 }"#)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("num_axes"), "{err}");
    // An operand that does not fit the bottom.
    for t in [r#"type: "Scale""#, r#"type: "Bias""#] {
        let mut l = layer_from_text(t).unwrap();
        let mut a = vec![
            gaussian_blob(&[2, 3, 4], 1.0, 1),
            gaussian_blob(&[4], 1.0, 2),
        ];
        let err = run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not match"), "{t}: {err}");
    }
    let mut l = layer_from_text(r#"type: "Bias" bias_param { axis: 2 num_axes: 2 }"#).unwrap();
    let mut a = vec![gaussian_blob(&[2, 3, 4], 1.0, 1)];
    let err = run_forward(
        l.as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut a,
        &[0],
        &[1],
        &[2],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("extends past"), "{err}");
}

/// Gradient checks for every operand form, batch 1, and in place.
#[test]
fn scale_and_bias_gradients() {
    let c = GradientChecker::new(1e-2, 1e-3);
    let learned = [
        SCALE_BIAS,
        r#"type: "Scale" scale_param { filler { type: "gaussian" std: 1 } }"#,
        r#"type: "Scale" scale_param { num_axes: 0 bias_term: true
            filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } }"#,
        r#"type: "Scale" scale_param { axis: 0 num_axes: -1 filler { type: "gaussian" std: 1 } }"#,
        r#"type: "Bias" bias_param { filler { type: "gaussian" std: 1 } }"#,
        r#"type: "Bias" bias_param { axis: -1 filler { type: "gaussian" std: 1 } }"#,
        r#"type: "Bias" bias_param { num_axes: 0 filler { type: "gaussian" std: 1 } }"#,
    ];
    for shape in [&[2usize, 3, 4][..], &[1, 3, 4]] {
        for t in learned {
            let np = if t.contains("bias_term") { 2 } else { 1 };
            let params: Vec<usize> = (2..2 + np).collect();
            let x = gaussian_blob(shape, 1.0, 4);
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x.clone()];
            c.check_layer_exhaustive(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[1],
                &params,
            )
            .unwrap_or_else(|e| panic!("{t} {shape:?}: {e}"));
            let in_place: Vec<usize> = (1..1 + np).collect();
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x];
            c.check_layer(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[0],
                &in_place,
            )
            .unwrap_or_else(|e| panic!("{t} {shape:?} in place: {e}"));
        }
        // Two bottoms: the operand is bottom 1 and gets a gradient.
        for (t, op_shape, np) in [
            (r#"type: "Scale""#, vec![3], 0),
            (r#"type: "Scale" scale_param { axis: 1 }"#, vec![3, 4], 0),
            (
                r#"type: "Scale" scale_param { bias_term: true bias_filler { type: "gaussian" std: 1 } }"#,
                vec![3],
                1,
            ),
            (r#"type: "Scale""#, vec![], 0),
            (r#"type: "Bias""#, vec![3], 0),
            (
                r#"type: "Bias" bias_param { axis: 0 }"#,
                shape[..2].to_vec(),
                0,
            ),
        ] {
            let params: Vec<usize> = (3..3 + np).collect();
            let x = gaussian_blob(shape, 1.0, 4);
            let s = gaussian_blob(&op_shape, 1.0, 6);
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x.clone(), s.clone()];
            c.check_layer_exhaustive(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0, 1],
                &[2],
                &params,
            )
            .unwrap_or_else(|e| panic!("{t} {shape:?} two bottoms: {e}"));
            let params: Vec<usize> = (2..2 + np).collect();
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x, s];
            c.check_layer(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0, 1],
                &[0],
                &params,
            )
            .unwrap_or_else(|e| panic!("{t} {shape:?} two bottoms in place: {e}"));
        }
    }
}

/// Learned operands accumulate their gradients; a second bottom's diff is
/// overwritten; in place and out of place agree.
#[test]
fn scale_and_bias_gradient_accumulation() {
    let x = gaussian_blob(&[2, 3, 4], 1.0, 1);
    let dy = gaussian_blob(&[2, 3, 4], 1.0, 2).data_vec();
    for (t, np) in [(SCALE_BIAS, 2usize), (r#"type: "Bias""#, 1)] {
        let mut got = Vec::new();
        for top in [1usize, 0] {
            let params: Vec<usize> = (top + 1..top + 1 + np).collect();
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x.clone()];
            let (y, bd, pd) = run(l.as_mut(), Phase::Train, &mut a, &[0], top, &params, &dy);
            if top == 1 {
                let mut cx = cpu_ctx(Phase::Train);
                l.backward(
                    &mut cx,
                    &mut Io::new(&mut a, &[0], &[top], &params),
                    &[false],
                )
                .unwrap();
                for (j, &p) in params.iter().enumerate() {
                    let twice: Vec<f32> = pd[j].iter().map(|v| 2.0 * v).collect();
                    assert_close(&a[p].diff_vec(), &twice, 1e-6);
                }
            }
            got.push((y, bd, pd));
        }
        assert_eq!(got[0], got[1], "{t}");
    }
    // Two bottoms: bottom 1's diff is overwritten, not accumulated.
    for t in [r#"type: "Scale""#, r#"type: "Bias""#] {
        let mut l = layer_from_text(t).unwrap();
        let mut a = vec![x.clone(), gaussian_blob(&[3], 1.0, 3)];
        let (_, bd, _) = run(l.as_mut(), Phase::Train, &mut a, &[0, 1], 2, &[], &dy);
        let mut cx = cpu_ctx(Phase::Train);
        l.backward(
            &mut cx,
            &mut Io::new(&mut a, &[0, 1], &[2], &[]),
            &[false, true],
        )
        .unwrap();
        assert_eq!(a[1].diff_vec(), bd[1], "{t}");
    }
}

// ---------------------------------------------------------------- MVN

/// Direct MVN over groups of `dim` consecutive values.
fn mvn_ref(x: &[f32], dim: usize, variance: bool, eps: f64) -> Vec<f32> {
    x.chunks(dim)
        .flat_map(|g| {
            let m = g.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
            let var = g.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / dim as f64;
            let d = if variance { var.sqrt() + eps } else { 1.0 };
            g.iter()
                .map(|&v| ((v as f64 - m) / d) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn mvn_forward() {
    let x = gaussian_blob(&[2, 3, 4, 5], 2.0, 3);
    for (t, dim, var, eps) in [
        (r#"type: "MVN""#, 20, true, 1e-9),
        (
            r#"type: "MVN" mvn_param { across_channels: true }"#,
            60,
            true,
            1e-9,
        ),
        (
            r#"type: "MVN" mvn_param { normalize_variance: false }"#,
            20,
            false,
            0.0,
        ),
        (r#"type: "MVN" mvn_param { eps: 0.5 }"#, 20, true, 0.5),
    ] {
        let want = mvn_ref(&x.data_vec(), dim, var, eps);
        for top in [1usize, 0] {
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x.clone()];
            run_forward(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[top],
                &[],
            )
            .unwrap();
            assert_close(&a[top].data_vec(), &want, 2e-6);
        }
    }
}

#[test]
fn mvn_top_has_legacy_shape() {
    let mut l = layer_from_text(r#"type: "MVN""#).unwrap();
    let mut a = vec![gaussian_blob(&[2, 3], 1.0, 1)];
    run_forward(
        l.as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap();
    assert_eq!(a[1].shape(), &[2, 3, 1, 1]);
    let mut a = vec![gaussian_blob(&[2, 3, 2, 2, 2], 1.0, 1)];
    let err = run_forward(
        l.as_mut(),
        &mut cpu_ctx(Phase::Train),
        &mut a,
        &[0],
        &[1],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("at most 4 axes"), "{err}");
}

#[test]
fn mvn_gradients() {
    let c = GradientChecker::new(1e-2, 1e-3);
    for t in [
        r#"type: "MVN""#,
        r#"type: "MVN" mvn_param { across_channels: true }"#,
        r#"type: "MVN" mvn_param { normalize_variance: false }"#,
        r#"type: "MVN" mvn_param { normalize_variance: false across_channels: true }"#,
    ] {
        for shape in [&[2usize, 3, 2, 3][..], &[1, 2, 3, 2]] {
            let x = gaussian_blob(shape, 1.0, 12);
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x.clone()];
            c.check_layer_exhaustive(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[1],
                &[],
            )
            .unwrap_or_else(|e| panic!("{t} {shape:?}: {e}"));
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![x];
            c.check_layer(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[0],
                &[],
            )
            .unwrap_or_else(|e| panic!("{t} {shape:?} in place: {e}"));
        }
    }
}

#[test]
fn mvn_backward_survives_clobbered_top() {
    let x = gaussian_blob(&[2, 3, 4], 1.0, 8);
    let dy = gaussian_blob(&[2, 3, 4, 1], 1.0, 9).data_vec();
    let mut results = Vec::new();
    for clobber in [false, true] {
        for top in [1usize, 0] {
            let mut l = layer_from_text(r#"type: "MVN""#).unwrap();
            let mut a = vec![x.clone()];
            let mut cx = cpu_ctx(Phase::Train);
            run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[top], &[]).unwrap();
            if clobber {
                a[top].set_data(&[7.0; 24]).unwrap();
            }
            a[top].set_diff(&dy).unwrap();
            l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[top], &[]), &[true])
                .unwrap();
            results.push(a[0].diff_vec());
        }
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
}

#[test]
fn registry_knows_the_family() {
    for t in super::TYPES {
        let l = layer_from_text(&format!(r#"type: "{t}""#)).unwrap();
        assert_eq!(l.type_name(), *t);
        assert!(l.allows_in_place(), "{t}");
    }
}
