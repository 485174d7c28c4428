//! LSTM, RNN and LSTMUnit: values against a float64 reference of Caffe's
//! formulas, the hidden state carried across calls, exposed states,
//! gradients (Caffe's checker settings), param counts and error paths.
use crate::layers::{create_layer, Io, Layer};
use crate::net::spec::default_num_param_blobs;
use crate::proto::caffe::{LayerParameter, Phase};
use crate::proto::text::parse_text;
use crate::tensor::Blob;
use crate::testing::gradient::{cpu_ctx, gaussian_blob, GradientChecker};

const FILLERS: &str = "weight_filler { type: 'gaussian' std: 0.3 } \
                       bias_filler { type: 'gaussian' mean: 0.1 std: 0.3 }";

fn lp(text: &str) -> LayerParameter {
    parse_text(text, "<test>", "caffe.LayerParameter").unwrap()
}

/// `type: '<ty>' recurrent_param { num_output: <h> <extra> <fillers> }` with
/// `nb` bottoms named b0, b1, ...
fn rec(ty: &str, h: usize, extra: &str, nb: usize) -> LayerParameter {
    let bottoms: String = (0..nb).map(|i| format!("bottom: 'b{i}' ")).collect();
    lp(&format!(
        "name: 'l' type: '{ty}' {bottoms} recurrent_param {{ num_output: {h} {extra} {FILLERS} }}"
    ))
}

/// T×N continuation indicators: 0 in the first row (a fresh sequence, so
/// repeated forwards do not depend on the carried state) and at `zeros`.
fn cont(t: usize, n: usize, zeros: &[(usize, usize)]) -> Blob {
    let mut v = vec![1.0; t * n];
    v[..n].fill(0.0);
    for &(s, b) in zeros {
        v[s * n + b] = 0.0;
    }
    Blob::from_host(&[t, n], v)
}

/// A layer set up over `bottoms` in an arena `[bottoms, tops, params]`.
struct Rig {
    layer: Box<dyn Layer>,
    arena: Vec<Blob>,
    b: Vec<usize>,
    t: Vec<usize>,
    p: Vec<usize>,
    cx: crate::layers::Ctx,
}

impl Rig {
    fn new(lp: &LayerParameter, bottoms: Vec<Blob>, ntops: usize) -> Rig {
        let mut layer = create_layer(lp).unwrap();
        let nb = bottoms.len();
        let mut arena = bottoms;
        let mut cx = cpu_ctx(Phase::Train);
        let b: Vec<usize> = (0..nb).collect();
        let params = layer
            .setup(&mut cx, &mut Io::new(&mut arena, &b, &[], &[]))
            .unwrap();
        assert_eq!(
            Some(params.len()),
            default_num_param_blobs(lp),
            "param count of {lp:?}"
        );
        let t: Vec<usize> = (nb..nb + ntops).collect();
        let p: Vec<usize> = (nb + ntops..nb + ntops + params.len()).collect();
        arena.resize_with(nb + ntops, Blob::default);
        arena.extend(params);
        Rig {
            layer,
            arena,
            b,
            t,
            p,
            cx,
        }
    }
    fn forward(&mut self) -> crate::error::Result<()> {
        let mut io = Io::new(&mut self.arena, &self.b, &self.t, &self.p);
        self.layer.reshape(&mut self.cx, &mut io)?;
        self.layer.forward(&mut self.cx, &mut io)
    }
    fn backward(&mut self, pd: &[bool]) -> crate::error::Result<()> {
        let mut io = Io::new(&mut self.arena, &self.b, &self.t, &self.p);
        self.layer.backward(&mut self.cx, &mut io, pd)
    }
    fn top(&self, i: usize) -> Vec<f32> {
        self.arena[self.t[i]].data_vec()
    }
    fn params(&self) -> Vec<Vec<f64>> {
        self.p
            .iter()
            .map(|&i| self.arena[i].data_vec().iter().map(|&v| v as f64).collect())
            .collect()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `out[r][j] = Σ_k w[j][k]·x[r][k]` for one row.
fn matvec(w: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
    let k = x.len();
    (0..rows)
        .map(|j| (0..k).map(|i| w[j * k + i] * x[i]).sum())
        .collect()
}

/// The inputs of a reference run.
struct Seq<'a> {
    t: usize,
    n: usize,
    h: usize,
    x: &'a [f64],
    cont: &'a [f64],
    xs: Option<&'a [f64]>,
}

/// Caffe's LSTM in float64: returns (h of every step, h_T, c_T).
fn lstm_ref(q: &Seq, p: &[Vec<f64>], h0: &[f64], c0: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (t, n, h) = (q.t, q.n, q.h);
    let d = q.x.len() / (t * n);
    let whc = p.last().unwrap();
    let (mut hp, mut cp) = (h0.to_vec(), c0.to_vec());
    let mut out = Vec::new();
    for s in 0..t {
        let (mut hn, mut cn) = (vec![0.0; n * h], vec![0.0; n * h]);
        for b in 0..n {
            let cv = q.cont[s * n + b];
            let xr = &q.x[(s * n + b) * d..(s * n + b + 1) * d];
            let hc: Vec<f64> = hp[b * h..(b + 1) * h].iter().map(|v| v * cv).collect();
            let mut a = matvec(&p[0], xr, 4 * h);
            for (j, aj) in a.iter_mut().enumerate() {
                *aj += p[1][j];
            }
            for (aj, v) in a.iter_mut().zip(matvec(whc, &hc, 4 * h)) {
                *aj += v;
            }
            if let Some(xs) = q.xs {
                let ds = xs.len() / n;
                for (aj, v) in a
                    .iter_mut()
                    .zip(matvec(&p[2], &xs[b * ds..(b + 1) * ds], 4 * h))
                {
                    *aj += v;
                }
            }
            for k in 0..h {
                let i = sigmoid(a[k]);
                let f = if cv == 0.0 {
                    0.0
                } else {
                    cv * sigmoid(a[h + k])
                };
                let o = sigmoid(a[2 * h + k]);
                let g = a[3 * h + k].tanh();
                let c = f * cp[b * h + k] + i * g;
                cn[b * h + k] = c;
                hn[b * h + k] = o * c.tanh();
            }
        }
        out.extend_from_slice(&hn);
        hp = hn;
        cp = cn;
    }
    (out, hp, cp)
}

/// Caffe's RNN in float64: returns (o of every step, h_T).
fn rnn_ref(q: &Seq, p: &[Vec<f64>], h0: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (t, n, h) = (q.t, q.n, q.h);
    let d = q.x.len() / (t * n);
    let r = p.len() - 3;
    let (whh, who, bo) = (&p[r], &p[r + 1], &p[r + 2]);
    let mut hp = h0.to_vec();
    let mut out = Vec::new();
    for s in 0..t {
        let mut hn = vec![0.0; n * h];
        for b in 0..n {
            let cv = q.cont[s * n + b];
            let xr = &q.x[(s * n + b) * d..(s * n + b + 1) * d];
            let hc: Vec<f64> = hp[b * h..(b + 1) * h].iter().map(|v| v * cv).collect();
            let mut a = matvec(&p[0], xr, h);
            for (j, aj) in a.iter_mut().enumerate() {
                *aj += p[1][j];
            }
            for (aj, v) in a.iter_mut().zip(matvec(whh, &hc, h)) {
                *aj += v;
            }
            if let Some(xs) = q.xs {
                let ds = xs.len() / n;
                for (aj, v) in a
                    .iter_mut()
                    .zip(matvec(&p[2], &xs[b * ds..(b + 1) * ds], h))
                {
                    *aj += v;
                }
            }
            for k in 0..h {
                hn[b * h + k] = a[k].tanh();
            }
        }
        for b in 0..n {
            let o = matvec(who, &hn[b * h..(b + 1) * h], h);
            out.extend(o.iter().zip(bo).map(|(v, bb)| (v + bb).tanh()));
        }
        hp = hn;
    }
    (out, hp)
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a as f64 - b).abs() <= 1e-5 + 1e-5 * b.abs(),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn lstm_matches_reference_and_carries_state() {
    let (t, n, h) = (4, 3, 3);
    let x = gaussian_blob(&[t, n, 2, 1], 1.0, 1);
    let c = cont(t, n, &[(2, 1)]);
    let mut r = Rig::new(&rec("LSTM", h, "", 2), vec![x.clone(), c.clone()], 1);
    r.forward().unwrap();
    assert_eq!(r.arena[r.t[0]].shape(), &[t, n, h]);
    let (xv, cv) = (f64s(&x.data_vec()), f64s(&c.data_vec()));
    let q = Seq {
        t,
        n,
        h,
        x: &xv,
        cont: &cv,
        xs: None,
    };
    let zeros = vec![0.0; n * h];
    let (want, h_t, c_t) = lstm_ref(&q, &r.params(), &zeros, &zeros);
    assert_close(&r.top(0), &want, "h");
    // A second call whose sequences continue (cont all 1) starts from the
    // first call's final state.
    let ones = Blob::from_host(&[t, n], vec![1.0; t * n]);
    r.arena[1] = ones;
    r.forward().unwrap();
    let one_v = vec![1.0; t * n];
    let q = Seq { cont: &one_v, ..q };
    let (want, _, _) = lstm_ref(&q, &r.params(), &h_t, &c_t);
    assert_close(&r.top(0), &want, "h (continued)");
}

#[test]
fn lstm_static_input_and_exposed_hidden_match_reference() {
    let (t, n, h) = (3, 2, 4);
    let x = gaussian_blob(&[t, n, 3], 1.0, 2);
    let xs = gaussian_blob(&[n, 5], 1.0, 3);
    let h0 = gaussian_blob(&[1, n, h], 0.5, 4);
    let c0 = gaussian_blob(&[1, n, h], 0.5, 5);
    let c = Blob::from_host(&[t, n], vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    let bottoms = vec![x.clone(), c.clone(), xs.clone(), h0.clone(), c0.clone()];
    let mut r = Rig::new(&rec("LSTM", h, "expose_hidden: true", 5), bottoms, 3);
    r.forward().unwrap();
    let (xv, cv, sv) = (
        f64s(&x.data_vec()),
        f64s(&c.data_vec()),
        f64s(&xs.data_vec()),
    );
    let q = Seq {
        t,
        n,
        h,
        x: &xv,
        cont: &cv,
        xs: Some(&sv),
    };
    let (want, h_t, c_t) = lstm_ref(
        &q,
        &r.params(),
        &f64s(&h0.data_vec()),
        &f64s(&c0.data_vec()),
    );
    assert_close(&r.top(0), &want, "h");
    assert_close(&r.top(1), &h_t, "h_T");
    assert_close(&r.top(2), &c_t, "c_T");
    assert_eq!(r.arena[r.t[2]].shape(), &[1, n, h]);
    // Exposed states get no gradient (Caffe shares only their data).
    for &i in &r.t.clone() {
        let k = r.arena[i].count();
        r.arena[i].set_diff(&vec![1.0; k]).unwrap();
    }
    r.arena[3].set_diff(&vec![7.0; n * h]).unwrap();
    r.backward(&[true, false, true, true, true]).unwrap();
    assert!(r.arena[3].diff_vec().iter().all(|&v| v == 0.0));
    assert!(r.arena[4].diff_vec().iter().all(|&v| v == 0.0));
}

#[test]
fn rnn_matches_reference_with_static_input() {
    let (t, n, h) = (3, 2, 4);
    let x = gaussian_blob(&[t, n, 3], 1.0, 6);
    let xs = gaussian_blob(&[n, 2, 2], 1.0, 7);
    let c = cont(t, n, &[(1, 0)]);
    let bottoms = vec![x.clone(), c.clone(), xs.clone()];
    let mut r = Rig::new(&rec("RNN", h, "", 3), bottoms, 1);
    r.forward().unwrap();
    let (xv, cv, sv) = (
        f64s(&x.data_vec()),
        f64s(&c.data_vec()),
        f64s(&xs.data_vec()),
    );
    let q = Seq {
        t,
        n,
        h,
        x: &xv,
        cont: &cv,
        xs: Some(&sv),
    };
    let (want, _) = rnn_ref(&q, &r.params(), &vec![0.0; n * h]);
    assert_close(&r.top(0), &want, "o");
}

#[test]
fn rnn_exposed_hidden_and_carry() {
    let (t, n, h) = (2, 3, 2);
    let x = gaussian_blob(&[t, n, 2], 1.0, 8);
    let h0 = gaussian_blob(&[1, n, h], 0.5, 9);
    let c = Blob::from_host(&[t, n], vec![1.0; t * n]);
    let bottoms = vec![x.clone(), c.clone(), h0.clone()];
    let mut r = Rig::new(&rec("RNN", h, "expose_hidden: true", 3), bottoms, 2);
    r.forward().unwrap();
    let (xv, cv) = (f64s(&x.data_vec()), f64s(&c.data_vec()));
    let q = Seq {
        t,
        n,
        h,
        x: &xv,
        cont: &cv,
        xs: None,
    };
    let (want, h_t) = rnn_ref(&q, &r.params(), &f64s(&h0.data_vec()));
    assert_close(&r.top(0), &want, "o");
    assert_close(&r.top(1), &h_t, "h_T");
    // Without exposure, a T=1 layer fed step by step reproduces the run.
    let x1 = Blob::from_host(&[1, n, 2], x.data_vec()[..n * 2].to_vec());
    let c1 = Blob::from_host(&[1, n], vec![0.0; n]);
    let mut s = Rig::new(&rec("RNN", h, "", 2), vec![x1, c1], 1);
    for (dst, src) in s.p.clone().into_iter().zip(r.p.clone()) {
        let v = r.arena[src].data_vec();
        s.arena[dst].set_data(&v).unwrap();
    }
    let mut got = Vec::new();
    for step in 0..t {
        s.arena[0]
            .set_data(&x.data_vec()[step * n * 2..(step + 1) * n * 2])
            .unwrap();
        let cv = if step == 0 { 0.0 } else { 1.0 };
        s.arena[1].set_data(&vec![cv; n]).unwrap();
        s.forward().unwrap();
        got.extend(s.top(0));
    }
    let q = Seq {
        cont: &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        ..q
    };
    let (want, _) = rnn_ref(&q, &r.params(), &vec![0.0; n * h]);
    assert_close(&got, &want, "stepwise");
}

#[test]
fn lstm_stepwise_equals_sequence() {
    let (t, n, h) = (3, 2, 3);
    let x = gaussian_blob(&[t, n, 2], 1.0, 10);
    let c = cont(t, n, &[(2, 0)]);
    let mut full = Rig::new(&rec("LSTM", h, "", 2), vec![x.clone(), c.clone()], 1);
    full.forward().unwrap();
    let x1 = Blob::from_host(&[1, n, 2], vec![0.0; n * 2]);
    let c1 = Blob::from_host(&[1, n], vec![0.0; n]);
    let mut step = Rig::new(&rec("LSTM", h, "", 2), vec![x1, c1], 1);
    for (dst, src) in step.p.clone().into_iter().zip(full.p.clone()) {
        let v = full.arena[src].data_vec();
        step.arena[dst].set_data(&v).unwrap();
    }
    let (xv, cv) = (x.data_vec(), c.data_vec());
    let mut got = Vec::new();
    for s in 0..t {
        step.arena[0]
            .set_data(&xv[s * n * 2..(s + 1) * n * 2])
            .unwrap();
        step.arena[1].set_data(&cv[s * n..(s + 1) * n]).unwrap();
        step.forward().unwrap();
        got.extend(step.top(0));
    }
    assert_close(&got, &f64s(&full.top(0)), "stepwise h");
}

#[test]
fn batch_size_may_change_but_not_timesteps() {
    let (t, h) = (2, 3);
    let mut r = Rig::new(
        &rec("LSTM", h, "", 2),
        vec![gaussian_blob(&[t, 3, 2], 1.0, 11), cont(t, 3, &[])],
        1,
    );
    r.forward().unwrap();
    r.arena[0] = gaussian_blob(&[t, 2, 2], 1.0, 12);
    r.arena[1] = cont(t, 2, &[]);
    r.forward().unwrap();
    assert_eq!(r.arena[r.t[0]].shape(), &[t, 2, h]);
    r.arena[0] = gaussian_blob(&[t + 1, 2, 2], 1.0, 12);
    r.arena[1] = cont(t + 1, 2, &[]);
    let e = r.forward().unwrap_err().to_string();
    assert!(e.contains("timesteps changed"), "{e}");
    r.arena[0] = gaussian_blob(&[t, 2, 3], 1.0, 12);
    r.arena[1] = cont(t, 2, &[]);
    let e = r.forward().unwrap_err().to_string();
    assert!(e.contains("input size changed"), "{e}");
}

/// The error text of creating and setting up a layer over `bottoms`.
fn setup_err(l: &LayerParameter, bottoms: Vec<Blob>) -> String {
    let run = || -> crate::error::Result<()> {
        let mut layer = create_layer(l)?;
        let mut arena = bottoms;
        let b: Vec<usize> = (0..arena.len()).collect();
        layer.arity().check(b.len(), 1)?;
        let mut cx = cpu_ctx(Phase::Train);
        layer.setup(&mut cx, &mut Io::new(&mut arena, &b, &[], &[]))?;
        Ok(())
    };
    run().err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn bad_configurations_are_rejected() {
    let x = || gaussian_blob(&[2, 3, 2], 1.0, 1);
    let e = create_layer(&lp("name: 'l' type: 'LSTM' recurrent_param { }"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("num_output must be positive"), "{e}");
    let e = setup_err(&rec("LSTM", 2, "", 2), vec![x(), cont(2, 2, &[])]);
    assert!(e.contains("bottom[1]"), "{e}");
    let e = setup_err(
        &rec("RNN", 2, "", 2),
        vec![gaussian_blob(&[2, 3], 1.0, 1), cont(2, 3, &[])],
    );
    assert!(e.contains("at least 3 axes"), "{e}");
    let e = setup_err(&rec("LSTM", 2, "", 1), vec![x()]);
    assert!(e.contains("bottom"), "{e}");
    let e = setup_err(
        &rec("LSTM", 2, "expose_hidden: true", 3),
        vec![x(), cont(2, 3, &[]), gaussian_blob(&[1, 3, 3], 1.0, 1)],
    );
    assert!(e.contains("bottom"), "{e}");
}

#[test]
fn no_gradient_to_cont() {
    let mut r = Rig::new(
        &rec("RNN", 2, "", 2),
        vec![gaussian_blob(&[2, 2, 2], 1.0, 1), cont(2, 2, &[])],
        1,
    );
    r.forward().unwrap();
    let e = r.backward(&[true, true]).unwrap_err().to_string();
    assert!(e.contains("continuation"), "{e}");
    assert!(!r.layer.allow_force_backward(1));
    assert!(r.layer.allow_force_backward(0));
    let l = create_layer(&lp("name: 'u' type: 'LSTMUnit'")).unwrap();
    assert!(!l.allow_force_backward(2));
}

/// Caffe's checker (step 1e-2, threshold 1e-3) on every param and on the
/// differentiable bottoms `check`, with only top 0 in the objective.
fn check(lp: &LayerParameter, bottoms: Vec<Blob>, ntops: usize, check: &[usize]) {
    let mut layer = create_layer(lp).unwrap();
    let nb = bottoms.len();
    let np = default_num_param_blobs(lp).unwrap();
    let mut arena = bottoms;
    let b: Vec<usize> = (0..nb).collect();
    let t: Vec<usize> = (nb..nb + ntops).collect();
    let p: Vec<usize> = (nb + ntops..nb + ntops + np).collect();
    GradientChecker::new(1e-2, 1e-3)
        .check_bottoms(check)
        .objective_tops(&[0])
        .check_layer(
            layer.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut arena,
            &b,
            &t,
            &p,
        )
        .unwrap_or_else(|e| panic!("{} {:?}: {e}", lp.r#type(), lp.bottom));
}

#[test]
fn lstm_and_rnn_gradients() {
    for ty in ["LSTM", "RNN"] {
        // Resets in the middle of the sequences.
        check(
            &rec(ty, 3, "", 2),
            vec![
                gaussian_blob(&[4, 3, 2], 1.0, 1),
                cont(4, 3, &[(2, 0), (1, 2)]),
            ],
            1,
            &[0],
        );
        // Static input.
        check(
            &rec(ty, 3, "", 3),
            vec![
                gaussian_blob(&[3, 2, 2], 1.0, 2),
                cont(3, 2, &[(2, 1)]),
                gaussian_blob(&[2, 3], 1.0, 3),
            ],
            1,
            &[0, 2],
        );
        // One step of one stream.
        check(
            &rec(ty, 2, "", 2),
            vec![gaussian_blob(&[1, 1, 3], 1.0, 4), cont(1, 1, &[])],
            1,
            &[0],
        );
    }
}

#[test]
fn exposed_hidden_gradients() {
    // Non-zero initial states with continuing sequences exercise the first
    // step's recurrent terms.
    let (t, n, h) = (3, 2, 2);
    let all_cont = || Blob::from_host(&[t, n], vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    check(
        &rec("LSTM", h, "expose_hidden: true", 4),
        vec![
            gaussian_blob(&[t, n, 2], 1.0, 5),
            all_cont(),
            gaussian_blob(&[1, n, h], 1.0, 6),
            gaussian_blob(&[1, n, h], 1.0, 7),
        ],
        3,
        &[0],
    );
    check(
        &rec("RNN", h, "expose_hidden: true", 4),
        vec![
            gaussian_blob(&[t, n, 2], 1.0, 5),
            all_cont(),
            gaussian_blob(&[n, 3], 1.0, 8),
            gaussian_blob(&[1, n, h], 1.0, 6),
        ],
        2,
        &[0, 2],
    );
}

#[test]
fn lstm_unit_gradients_and_shapes() {
    let (n, h) = (3, 2);
    let l = lp("name: 'u' type: 'LSTMUnit'");
    let bottoms = || {
        vec![
            gaussian_blob(&[1, n, h], 1.0, 1),
            gaussian_blob(&[1, n, 4 * h], 1.0, 2),
            Blob::from_host(&[1, n], vec![1.0, 0.0, 1.0]),
        ]
    };
    let mut layer = create_layer(&l).unwrap();
    GradientChecker::new(1e-2, 1e-3)
        .check_bottoms(&[0, 1])
        .check_layer(
            layer.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut bottoms(),
            &[0, 1, 2],
            &[3, 4],
            &[],
        )
        .unwrap();
    // Only one bottom asked for: the other's diff is left alone.
    let mut a = bottoms();
    a.resize_with(5, Blob::default);
    let mut cx = cpu_ctx(Phase::Train);
    let mut io = Io::new(&mut a, &[0, 1, 2], &[3, 4], &[]);
    layer.reshape(&mut cx, &mut io).unwrap();
    layer.forward(&mut cx, &mut io).unwrap();
    assert_eq!(io.top(0).shape(), &[1, n, h]);
    io.top_mut(0).set_diff(&[1.0; 6]).unwrap();
    io.top_mut(1).set_diff(&[1.0; 6]).unwrap();
    io.bottom_mut(0).set_diff(&[5.0; 6]).unwrap();
    layer
        .backward(&mut cx, &mut io, &[false, true, false])
        .unwrap();
    assert_eq!(io.bottom(0).diff_vec(), vec![5.0; 6]);
    // The forget gate of a stream with cont = 0 gets no gradient.
    let dg = io.bottom(1).diff_vec();
    assert!(dg[4 * h + h..4 * h + 2 * h].iter().all(|&v| v == 0.0));
    assert!(layer
        .backward(&mut cx, &mut io, &[true, true, true])
        .is_err());
    // Shape errors.
    a[1] = gaussian_blob(&[1, n, 4 * h + 1], 1.0, 2);
    let mut io = Io::new(&mut a, &[0, 1, 2], &[3, 4], &[]);
    let e = layer.reshape(&mut cx, &mut io).unwrap_err().to_string();
    assert!(e.contains("4·H"), "{e}");
    a[1] = gaussian_blob(&[2, n, 4 * h], 1.0, 2);
    let mut io = Io::new(&mut a, &[0, 1, 2], &[3, 4], &[]);
    assert!(layer.reshape(&mut cx, &mut io).is_err());
}

#[test]
fn family_is_registered() {
    for ty in super::TYPES {
        assert!(crate::layers::layer_types().contains(ty));
    }
    assert!(super::create("ReLU", &LayerParameter::default()).is_none());
}
