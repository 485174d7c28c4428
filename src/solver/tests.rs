//! Solver tests on a tiny net (Input → InnerProduct → SoftmaxWithLoss)
//! with fixed inputs, so every step's gradient is reproducible and the
//! update pipeline can be checked against a hand computation.
use std::sync::Arc;

use super::*;
use crate::backend::cpu::CpuBackend;
use crate::proto::binary;
use crate::proto::caffe::SolverState;

const NET: &str = r#"
name: "tiny"
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 3
          weight_filler { type: "gaussian" std: 0.5 }
          bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "z" bottom: "y" top: "loss" }
"#;

const X: [f32; 12] = [
    0.5, -1.0, 2.0, 1.5, 0.25, -0.5, -2.0, 1.0, 0.75, 0.1, 0.2, -0.3,
];
const Y: [f32; 4] = [0.0, 2.0, 1.0, 2.0];

fn be() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

/// A solver over the tiny net; `extra` is appended to the solver text.
fn solver(extra: &str) -> Solver {
    let mut text = format!(
        "net_param {{ {NET} }} max_iter: 100 random_seed: 7 snapshot_after_train: false {extra}"
    );
    // Defaults unless `extra` sets them (text format forbids repeats).
    if !extra.contains("lr_policy") {
        text.push_str(" lr_policy: \"fixed\"");
    }
    if !extra.contains("base_lr") {
        text.push_str(" base_lr: 0.1");
    }
    let param = text::parse_solver_text(&text, "test_solver").unwrap();
    let mut s = Solver::new(param, be()).unwrap();
    feed(s.net_mut());
    s
}

fn feed(net: &mut Net) {
    net.set_input("x", &X).unwrap();
    net.set_input("y", &Y).unwrap();
}

fn weights(net: &Net) -> Vec<Vec<f32>> {
    (0..net.num_learnable())
        .map(|i| net.learnable(i).data_vec())
        .collect()
}

/// The gradient of the tiny net's loss at `w` (diffs of a fresh net).
fn gradient_at(s: &Solver, w: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let param = text::parse_net_text(NET, "tiny").unwrap();
    let mut net = Net::new(&param, &NetOptions::new(Phase::Train), be()).unwrap();
    for (i, v) in w.iter().enumerate() {
        net.learnable_mut(i).set_data(v).unwrap();
    }
    feed(&mut net);
    net.clear_param_diffs();
    net.forward_backward().unwrap();
    assert_eq!(net.num_learnable(), s.net().num_learnable());
    (0..net.num_learnable())
        .map(|i| net.learnable(i).diff_vec())
        .collect()
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32) {
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?}\nvs\n{b:?}");
    }
}

#[test]
fn sgd_pipeline_matches_hand_computation() {
    // lr_mult 1/2 and decay_mult 1/0 from the net; momentum and decay here.
    let mut s = solver("momentum: 0.9 weight_decay: 0.01");
    let (lr_mult, decay_mult) = ([1.0f32, 2.0], [1.0f32, 0.0]);
    let mut w = weights(s.net());
    let mut h: Vec<Vec<f32>> = w.iter().map(|v| vec![0.0; v.len()]).collect();
    for _ in 0..3 {
        let g = gradient_at(&s, &w);
        for i in 0..2 {
            for k in 0..w[i].len() {
                let grad = g[i][k] + 0.01 * decay_mult[i] * w[i][k];
                h[i][k] = 0.9 * h[i][k] + 0.1 * lr_mult[i] * grad;
                w[i][k] -= h[i][k];
            }
        }
        s.step(1).unwrap();
        assert_close(&weights(s.net()), &w, 1e-5);
    }
    assert_eq!(s.iter(), 3);
    let hist: Vec<Vec<f32>> = s.history().map(|b| b.data_vec()).collect();
    assert_close(&hist, &h, 1e-5);
}

#[test]
fn l1_decay_uses_the_sign_of_the_weights() {
    let mut s = solver("weight_decay: 0.05 regularization_type: \"L1\"");
    let w0 = weights(s.net());
    let g = gradient_at(&s, &w0);
    s.step(1).unwrap();
    let sign = |x: f32| (x > 0.0) as i32 as f32 - (x < 0.0) as i32 as f32;
    let want: Vec<Vec<f32>> = (0..2)
        .map(|i| {
            let (lm, dm) = ([1.0f32, 2.0][i], [1.0f32, 0.0][i]);
            w0[i]
                .iter()
                .zip(&g[i])
                .map(|(&w, &gr)| w - 0.1 * lm * (gr + 0.05 * dm * sign(w)))
                .collect()
        })
        .collect();
    assert_close(&weights(s.net()), &want, 1e-6);
}

#[test]
fn iter_size_averages_the_accumulated_gradient() {
    // The same batch twice: the sum halved is the single gradient exactly.
    let mut a = solver("momentum: 0.9");
    let mut b = solver("momentum: 0.9 iter_size: 2");
    a.step(3).unwrap();
    b.step(3).unwrap();
    // Accumulating into a non-zero diff may round differently (gemv's beta).
    assert_close(&weights(a.net()), &weights(b.net()), 1e-6);
    assert_eq!(a.smoothed_loss(), b.smoothed_loss());
}

#[test]
fn clipping_limits_the_global_norm() {
    let mut s = solver("base_lr: 1 clip_gradients: 0.001");
    let w0 = weights(s.net());
    s.step(1).unwrap();
    let w1 = weights(s.net());
    // Step = lr_mult · clipped gradient; undo the bias lr_mult of 2.
    let mut sq = 0.0f32;
    for (i, lm) in [1.0f32, 2.0].iter().enumerate() {
        for (a, b) in w0[i].iter().zip(&w1[i]) {
            sq += ((a - b) / lm).powi(2);
        }
    }
    assert!((sq.sqrt() - 0.001).abs() < 1e-6, "{}", sq.sqrt());
}

#[test]
fn smoothed_loss_is_a_running_then_windowed_mean() {
    let mut s = solver("average_loss: 3");
    s.losses.clear();
    s.smoothed_loss = 0.0;
    let start = s.iter;
    let mut seen = Vec::new();
    for (k, l) in [3.0f32, 6.0, 9.0, 12.0, 0.0].into_iter().enumerate() {
        s.iter = start + k as i32;
        s.update_smoothed_loss(l, start, 3);
        seen.push(s.smoothed_loss);
    }
    assert_eq!(seen, vec![3.0, 4.5, 6.0, 9.0, 7.0]);
}

#[test]
fn snapshot_and_restore_continue_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for ty in SOLVER_TYPES {
        let extra = match *ty {
            "AdaGrad" | "RMSProp" => String::new(),
            _ => "momentum: 0.9".to_string(),
        };
        let prefix = dir.path().join(ty).display().to_string();
        let cfg = format!(
            "type: \"{ty}\" {extra} weight_decay: 0.001 snapshot_prefix: \"{prefix}\" \
             lr_policy: \"multistep\" gamma: 0.5 stepvalue: 2 stepvalue: 4"
        );
        let mut straight = solver(&cfg);
        straight.step(6).unwrap();

        let mut first = solver(&cfg);
        first.step(3).unwrap();
        let (model, state) = first.snapshot().unwrap();
        assert!(model.ends_with(format!("{ty}_iter_3.caffemodel")));
        let mut resumed = solver(&cfg);
        resumed.restore(&state).unwrap();
        assert_eq!((resumed.iter(), resumed.current_step()), (3, 1));
        resumed.step(3).unwrap();

        assert_eq!(weights(resumed.net()), weights(straight.net()), "{ty}");
        let h = |s: &Solver| s.history().map(|b| b.data_vec()).collect::<Vec<_>>();
        assert_eq!(h(&resumed), h(&straight), "{ty}");
        assert_eq!(resumed.current_step(), 2);
        let sets = straight.update_rule().history_sets();
        assert_eq!(straight.history().count(), 2 * sets);
    }
}

#[test]
fn restore_refuses_a_model_or_a_mismatched_history() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("s").display().to_string();
    let mut s = solver(&format!("snapshot_prefix: \"{prefix}\""));
    s.step(1).unwrap();
    let (model, state) = s.snapshot().unwrap();
    // A model given where a state belongs resumes from its sibling state...
    let mut r = solver("");
    r.restore(&model).unwrap();
    assert_eq!(r.iter(), 1);
    assert_eq!(weights(r.net()), weights(s.net()));
    // ... and without one, says what to pass.
    let lone = dir.path().join("lone.caffemodel");
    std::fs::copy(&model, &lone).unwrap();
    let e = solver("").restore(&lone).unwrap_err().to_string();
    assert!(
        e.contains("no ") && e.contains("lone.solverstate next to it"),
        "{e}"
    );
    assert!(e.contains("--weights ") && e.contains("--snapshot "), "{e}");
    // A model under another name is recognised by its content.
    let odd = dir.path().join("model.bin");
    std::fs::copy(&model, &odd).unwrap();
    let e = solver("").restore(&odd).unwrap_err().to_string();
    assert!(e.contains("not a solver state"), "{e}");
    assert!(e.contains(".solverstate") && e.contains("--weights"), "{e}");
    // A state without history (e.g. from another tool) is refused by count.
    let empty = dir.path().join("empty.solverstate");
    let st = SolverState {
        iter: Some(1),
        ..Default::default()
    };
    binary::write_solver_state(&empty, &st).unwrap();
    let e = solver("").restore(&empty).unwrap_err().to_string();
    assert!(
        e.contains("Incorrect length of history blobs (0 vs. 2"),
        "{e}"
    );
    // SGD (1 set) → Adam (2 sets) must fail, as in Caffe.
    let e = solver("type: \"Adam\"")
        .restore(&state)
        .unwrap_err()
        .to_string();
    assert!(e.contains("(2 vs. 4"), "{e}");
    // The state names the model by the path it was written to.
    let st = binary::read_solver_state(&state).unwrap();
    assert_eq!(st.learned_net(), model.display().to_string());
    assert_eq!(st.iter(), 1);
}

#[test]
fn stop_request_ends_early_with_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("stop").display().to_string();
    let text = format!(
        "net_param {{ {NET} }} base_lr: 0.1 lr_policy: \"fixed\" max_iter: 100 display: 1 \
         snapshot_prefix: \"{prefix}\""
    );
    let mut s = Solver::new(text::parse_solver_text(&text, "s").unwrap(), be()).unwrap();
    feed(s.net_mut());
    let mut polls = 0;
    s.set_action_fn(Box::new(move || {
        polls += 1;
        match polls {
            2 => SolverAction::Snapshot,
            4 => SolverAction::Stop,
            _ => SolverAction::None,
        }
    }));
    s.solve().unwrap();
    assert!(s.requested_early_exit());
    assert_eq!(s.iter(), 4);
    assert!(Path::new(&format!("{prefix}_iter_2.caffemodel")).exists());
    assert!(Path::new(&format!("{prefix}_iter_4.solverstate")).exists());
}

#[test]
fn test_nets_average_their_outputs() {
    let text = format!(
        "net_param {{ {NET} }} base_lr: 0.1 lr_policy: \"fixed\" max_iter: 1 test_iter: 3 \
         test_iter: 2 test_interval: 1 test_compute_loss: true"
    );
    let mut s = Solver::new(text::parse_solver_text(&text, "s").unwrap(), be()).unwrap();
    assert_eq!(s.test_nets().len(), 2);
    s.test_all().unwrap();
    for scores in s.test_scores() {
        assert_eq!(scores.len(), 1);
        assert_eq!(scores[0].name, "loss");
        assert_eq!(scores[0].loss_weight, 1.0);
        assert!(scores[0].value.is_finite());
    }
}

#[test]
fn settings_are_checked_before_training() {
    let make = |extra: &str| {
        let text = format!("net_param {{ {NET} }} lr_policy: \"fixed\" {extra}");
        Solver::new(text::parse_solver_text(&text, "s").unwrap(), be())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(make("average_loss: 0").contains("average_loss"));
    assert!(make("test_iter: 1").contains("test_interval"));
    assert!(make("regularization_type: \"L3\"").contains("L3"));
    assert!(make("type: \"Foo\"").contains("Unknown solver type: Foo"));
    assert!(make("snapshot: 10 snapshot_prefix: \"/nonexistent/dir/x\"")
        .contains("Cannot write to snapshot prefix"));
    let none = Solver::new(
        text::parse_solver_text("lr_policy: \"fixed\"", "s").unwrap(),
        be(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(none.contains("must specify a train net"), "{none}");
}

#[test]
fn learned_net_is_found_next_to_a_moved_solverstate() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run_iter_5.solverstate");
    std::fs::write(dir.path().join("run_iter_5.caffemodel"), b"x").unwrap();
    // Written as a path relative to the training directory, now elsewhere.
    let got = Solver::resolve_learned_net("old/dir/run_iter_5.caffemodel", &state);
    assert_eq!(got, dir.path().join("run_iter_5.caffemodel"));
    let missing = Solver::resolve_learned_net("gone.caffemodel", &state);
    assert_eq!(missing, PathBuf::from("gone.caffemodel"));
}

/// A solver over the tiny net that snapshots into `dir`.
fn snapping_solver(dir: &Path, extra: &str) -> Solver {
    let prefix = dir.join("run").display().to_string();
    let text =
        format!("net_param {{ {NET} }} random_seed: 7 snapshot_prefix: \"{prefix}\" {extra}");
    let mut s = Solver::new(text::parse_solver_text(&text, "s").unwrap(), be()).unwrap();
    feed(s.net_mut());
    s
}

#[test]
fn snapshot_diff_saves_the_last_step_and_after_train_the_last_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = snapping_solver(
        dir.path(),
        "lr_policy: \"fixed\" base_lr: 0.1 momentum: 0.9 max_iter: 3 snapshot: 2 snapshot_diff: true",
    );
    s.solve().unwrap();
    // Every 2 iterations, and after training (3 is not a multiple of 2).
    for n in [2, 3] {
        assert!(dir
            .path()
            .join(format!("run_iter_{n}.solverstate"))
            .exists());
    }
    let model = binary::read_net_binary(&dir.path().join("run_iter_3.caffemodel")).unwrap();
    let blobs: Vec<_> = model.layer.iter().flat_map(|l| l.blobs.clone()).collect();
    assert_eq!(blobs.len(), 2);
    // SGD's diff holds the step, which is the momentum history.
    let hist: Vec<Vec<f32>> = s.history().map(|b| b.data_vec()).collect();
    for (b, h) in blobs.iter().zip(&hist) {
        assert_eq!(&b.diff, h);
        assert!(b.diff.iter().any(|&v| v != 0.0));
    }
    assert_eq!(
        blobs.iter().map(|b| b.data.clone()).collect::<Vec<_>>(),
        weights(s.net())
    );

    // Without snapshot_diff no diff is saved; without snapshot_after_train
    // there is no final snapshot.
    let dir = tempfile::tempdir().unwrap();
    let mut s = snapping_solver(
        dir.path(),
        "lr_policy: \"fixed\" base_lr: 0.1 max_iter: 3 snapshot: 2 snapshot_after_train: false",
    );
    s.solve().unwrap();
    assert!(!dir.path().join("run_iter_3.caffemodel").exists());
    let model = binary::read_net_binary(&dir.path().join("run_iter_2.caffemodel")).unwrap();
    assert!(model
        .layer
        .iter()
        .flat_map(|l| &l.blobs)
        .all(|b| b.diff.is_empty()));
}

#[test]
fn non_finite_values_are_traced_to_their_layer() {
    let param = text::parse_net_text(NET, "tiny").unwrap();
    let mut net = Net::new(&param, &NetOptions::new(Phase::Train), be()).unwrap();
    feed(&mut net);
    net.forward_backward().unwrap();
    assert_eq!(net.find_non_finite(), None);

    // A finite weight so large that the inner product overflows: its output.
    let w0 = net.learnable(0).data_vec();
    let mut w = w0.clone();
    w[2] = 3e38; // meets x[2] = 2
    net.learnable_mut(0).set_data(&w).unwrap();
    net.forward_backward().unwrap();
    let nf = net.find_non_finite().unwrap();
    assert_eq!(
        (nf.layer.as_str(), nf.layer_type.as_str()),
        ("ip", "InnerProduct")
    );
    assert_eq!(nf.what, "top blob 'z' data");
    assert_eq!(
        nf.to_string(),
        "top blob 'z' data of layer 'ip' (InnerProduct)"
    );

    // A non-finite weight is named before the outputs it spoils.
    // A non-finite gradient: the loss weight (kept in the loss top's diff)
    // poisons the first backward step.
    net.learnable_mut(0).set_data(&w0).unwrap();
    net.forward().unwrap();
    net.blob_by_name_mut("loss")
        .unwrap()
        .set_diff(&[f32::NAN])
        .unwrap();
    net.backward().unwrap();
    let nf = net.find_non_finite().unwrap();
    assert_eq!(
        nf.to_string(),
        "bottom blob 'z' diff (the gradient) of layer 'loss' (SoftmaxWithLoss)"
    );

    let mut w = w0;
    w[4] = f32::NAN;
    net.learnable_mut(0).set_data(&w).unwrap();
    net.forward_backward().unwrap();
    let nf = net.find_non_finite().unwrap();
    assert_eq!(nf.what, "param blob 0 data (the weights)");
    assert_eq!(nf.layer, "ip");
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // The rate grows 1e10-fold per iteration: inf at iteration 4.
    let mut s = snapping_solver(
        dir.path(),
        "base_lr: 1 lr_policy: \"exp\" gamma: 1e10 max_iter: 50 snapshot: 1",
    );
    let e = s.solve().unwrap_err().to_string();
    assert!(e.starts_with("Training diverged at iteration "), "{e}");
    assert!(e.contains("of layer 'ip' (InnerProduct)"), "{e}");
    let (model, state) = s
        .last_snapshot()
        .cloned()
        .expect("a snapshot before the failure");
    assert!(
        e.contains(&format!("the last good snapshot is {}", model.display())),
        "{e}"
    );
    // Every snapshot on disk is finite and the last one is the one named.
    let mut newest = 0;
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|x| x == "caffemodel") {
            let net = binary::read_net_binary(&p).unwrap();
            let finite = net
                .layer
                .iter()
                .flat_map(|l| &l.blobs)
                .flat_map(|b| &b.data);
            assert!(finite.into_iter().all(|v| v.is_finite()), "{}", p.display());
            let n: i32 = p
                .to_string_lossy()
                .rsplit("_iter_")
                .next()
                .unwrap()
                .trim_end_matches(".caffemodel")
                .parse()
                .unwrap();
            newest = newest.max(n);
        }
    }
    assert!(
        model.ends_with(format!("run_iter_{newest}.caffemodel")),
        "{}",
        model.display()
    );
    assert!(state.exists());
    assert!(s.iter() >= newest);

    // Without snapshots the next forward/backward meets the weights.
    let dir = tempfile::tempdir().unwrap();
    let mut s = snapping_solver(
        dir.path(),
        "base_lr: 1 lr_policy: \"exp\" gamma: 1e10 max_iter: 50",
    );
    let e = s.solve().unwrap_err().to_string();
    assert!(
        e.starts_with("Training diverged at iteration 5: ")
            && e.contains(
                "; first non-finite value: param blob 0 data (the weights) of layer 'ip' \
                 (InnerProduct), set by the update of iteration 4"
            )
            && e.contains("this run wrote no snapshot before"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
