//! The layer behind every element-wise neuron whose formula is a `Unary`
//! (ELU, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip, Swish). In place,
//! ops whose gradient needs the input (`Unary::grad_needs_input`) keep a copy
//! of it, so their gradients stay exact where Caffe would read the
//! overwritten top instead.
use crate::backend::Unary;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Pointwise {
    name: &'static str,
    op: Unary,
    /// Forward only (Threshold): backward is refused, as in Caffe.
    has_backward: bool,
    /// In-place runs of ops that need the input: its data is the saved
    /// input, its diff a copy of the top diff (which shares the bottom's).
    saved: Option<Blob>,
}

impl Pointwise {
    pub fn new(name: &'static str, op: Unary) -> Self {
        Pointwise {
            name,
            op,
            has_backward: true,
            saved: None,
        }
    }
    /// A layer whose backward is an error (Caffe's NOT_IMPLEMENTED).
    pub fn forward_only(name: &'static str, op: Unary) -> Self {
        Pointwise {
            has_backward: false,
            ..Pointwise::new(name, op)
        }
    }
    pub fn op(&self) -> Unary {
        self.op
    }
    fn keeps_input(&self, io: &Io) -> bool {
        self.has_backward && io.in_place(0, 0) && self.op.grad_needs_input()
    }
}

impl Layer for Pointwise {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        if !io.in_place(0, 0) {
            io.top_mut(0).reshape(&shape)?;
        }
        if self.keeps_input(io) {
            match &mut self.saved {
                Some(s) => s.reshape(&shape)?,
                None => self.saved = Some(Blob::new(&*cx.be, &shape)),
            }
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = io.bottom(0).count();
        if !io.in_place(0, 0) {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            cx.be.unary(self.op, n, x.data.view(), y.data.view_mut());
            return Ok(());
        }
        if self.keeps_input(io) {
            let saved = self
                .saved
                .as_mut()
                .ok_or_else(|| layer_err!("forward before reshape"))?;
            cx.be
                .copy(n, io.bottom(0).data.view(), saved.data.view_mut());
        }
        cx.be
            .unary_inplace(self.op, n, io.top_mut(0).data.view_mut());
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        if !self.has_backward {
            return Err(layer_err!(
                "{} has no gradient (Caffe does not implement its backward either); \
                 keep it out of the backward path",
                self.name
            ));
        }
        let n = io.bottom(0).count();
        if !io.in_place(0, 0) {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            cx.be.unary_grad(
                self.op,
                n,
                x.data.view(),
                y.data.view(),
                y.diff.view(),
                x.diff.view_mut(),
            );
        } else if self.keeps_input(io) {
            let saved = self
                .saved
                .as_mut()
                .ok_or_else(|| layer_err!("backward before forward"))?;
            let t = io.top_mut(0);
            // dy and dx share one buffer: read dy from a copy.
            cx.be.copy(n, t.diff.view(), saved.diff.view_mut());
            cx.be.unary_grad(
                self.op,
                n,
                saved.data.view(),
                t.data.view(),
                saved.diff.view(),
                t.diff.view_mut(),
            );
        } else {
            let t = io.top_mut(0);
            cx.be
                .unary_grad_inplace(self.op, n, t.data.view(), t.diff.view_mut());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::Io;
    use crate::proto::caffe::Phase;
    use crate::tensor::Blob;
    use crate::testing::gradient::{
        cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
    };

    /// Maps N(0, 1) samples into an op's domain.
    type Dom = fn(f32) -> f32;

    /// Batch 2 and batch 1.
    const SHAPES: &[&[usize]] = &[&[2, 3, 4, 5], &[1, 3, 2, 2]];

    /// The input: N(0, 1) values, mapped by `dom` into the op's domain.
    fn input(shape: &[usize], seed: u64, dom: Dom) -> Blob {
        let x = gaussian_blob(shape, 1.0, seed);
        let v: Vec<f32> = x.data_vec().into_iter().map(dom).collect();
        Blob::from_host(shape, v)
    }

    fn id(x: f32) -> f32 {
        x
    }

    /// Forward out of place and in place against an f64 reference formula.
    fn check_forward(text: &str, dom: Dom, f: impl Fn(f64) -> f64) {
        for shape in SHAPES {
            let x = input(shape, 5, dom);
            let want: Vec<f32> = x.data_vec().iter().map(|&v| f(v as f64) as f32).collect();
            for in_place in [false, true] {
                let mut l = layer_from_text(text).unwrap();
                let mut a = vec![x.clone(), Blob::default()];
                let top = if in_place { 0 } else { 1 };
                run_forward(
                    l.as_mut(),
                    &mut cpu_ctx(Phase::Train),
                    &mut a,
                    &[0],
                    &[top],
                    &[],
                )
                .unwrap();
                assert_eq!(a[top].shape(), *shape);
                for (i, (g, w)) in a[top].data_vec().iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 + 2e-6 * w.abs(),
                        "{text} [{i}] x = {}: {g} vs {w}",
                        x.data_vec()[i]
                    );
                }
            }
        }
    }

    /// Gradient checks: exhaustive out of place, weighted in place.
    fn check_grad(text: &str, dom: Dom, checker: &GradientChecker) {
        for shape in SHAPES {
            let x = input(shape, 9, dom);
            let mut l = layer_from_text(text).unwrap();
            let mut a = vec![x.clone(), Blob::default()];
            checker
                .check_layer_exhaustive(
                    l.as_mut(),
                    &mut cpu_ctx(Phase::Train),
                    &mut a,
                    &[0],
                    &[1],
                    &[],
                )
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut l = layer_from_text(text).unwrap();
            let mut a = vec![x];
            checker
                .check_layer(
                    l.as_mut(),
                    &mut cpu_ctx(Phase::Train),
                    &mut a,
                    &[0],
                    &[0],
                    &[],
                )
                .unwrap_or_else(|e| panic!("{text} in place: {e}"));
        }
    }

    fn default_checker() -> GradientChecker {
        GradientChecker::new(1e-2, 1e-3)
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn elu() {
        for alpha in [1.0f64, 0.5] {
            let t = format!(r#"type: "ELU" elu_param {{ alpha: {alpha} }}"#);
            check_forward(
                &t,
                id,
                |x| if x > 0.0 { x } else { alpha * (x.exp() - 1.0) },
            );
            check_grad(&t, id, &default_checker().kink(0.0, 0.01));
        }
        // Default alpha 1.
        check_forward(r#"type: "ELU""#, id, |x| {
            if x > 0.0 {
                x
            } else {
                x.exp() - 1.0
            }
        });
        // A negative alpha keeps the input in place for an exact gradient.
        let t = r#"type: "ELU" elu_param { alpha: -0.5 }"#;
        check_grad(t, id, &default_checker().kink(0.0, 0.01));
    }

    #[test]
    fn absval() {
        let t = r#"type: "AbsVal""#;
        check_forward(t, id, f64::abs);
        check_grad(t, id, &default_checker().kink(0.0, 0.01));
    }

    #[test]
    fn bnll() {
        let t = r#"type: "BNLL""#;
        check_forward(t, |x| 4.0 * x, |x| (1.0 + x.exp()).ln());
        check_grad(t, |x| 4.0 * x, &default_checker());
        // No overflow for large inputs; the gradient saturates at 1.
        let mut l = layer_from_text(t).unwrap();
        let mut a = vec![
            Blob::from_host(&[1, 3], vec![100.0, -100.0, 0.0]),
            Blob::default(),
        ];
        let mut cx = cpu_ctx(Phase::Train);
        run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[]).unwrap();
        let y = a[1].data_vec();
        assert_eq!(y[0], 100.0);
        assert!((0.0..1e-40).contains(&y[1]));
        assert!((y[2] - 2f32.ln()).abs() < 1e-7);
        a[1].set_diff(&[1.0, 1.0, 1.0]).unwrap();
        l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[1], &[]), &[true])
            .unwrap();
        let dx = a[0].diff_vec();
        assert_eq!((dx[0], dx[2]), (1.0, 0.5));
        assert!((0.0..1e-40).contains(&dx[1]));
    }

    #[test]
    fn power() {
        // General form (positive base), power 2, power 1, shift 0.
        let cases: &[(f64, f64, f64, Dom)] = &[
            (1.5, 0.5, 3.0, id),
            (2.0, 0.5, 1.0, id),
            (1.0, 2.0, -1.0, id),
            (3.0, 0.8, 0.0, id),
            (-1.5, 1.0, 0.0, |x| x.abs() + 0.5),
        ];
        for &(p, s, h, dom) in cases {
            let t = format!(r#"type: "Power" power_param {{ power: {p} scale: {s} shift: {h} }}"#);
            check_forward(&t, dom, |x| (h + s * x).powf(p));
            check_grad(&t, dom, &default_checker());
        }
    }

    #[test]
    fn power_constant_cases() {
        // power 0 gives 1; scale 0 gives shift^power; both have zero gradient.
        for (p, s, h, want) in [(0.0f32, 1.0f32, 5.0f32, 1.0f32), (2.0, 0.0, 3.0, 9.0)] {
            let t = format!(r#"type: "Power" power_param {{ power: {p} scale: {s} shift: {h} }}"#);
            check_forward(&t, id, |_| want as f64);
            check_grad(&t, id, &default_checker());
        }
    }

    #[test]
    fn exp() {
        check_forward(r#"type: "Exp""#, id, f64::exp);
        check_grad(r#"type: "Exp""#, id, &default_checker());
        let t = r#"type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }"#;
        check_forward(t, id, |x| 2f64.powf(1.0 + 0.5 * x));
        check_grad(t, id, &default_checker());
        let t = r#"type: "Exp" exp_param { scale: 0.3 shift: -0.5 }"#;
        check_forward(t, id, |x| (-0.5 + 0.3 * x).exp());
        check_grad(t, id, &default_checker());
    }

    #[test]
    fn log() {
        let pos = |x: f32| x.abs() + 0.5;
        check_forward(r#"type: "Log""#, pos, f64::ln);
        check_grad(r#"type: "Log""#, pos, &default_checker());
        let t = r#"type: "Log" log_param { base: 2 scale: 0.5 shift: 3 }"#;
        check_forward(t, id, |x| (3.0 + 0.5 * x).log2());
        check_grad(t, id, &default_checker());
    }

    #[test]
    fn exp_log_reject_bad_base() {
        for t in [
            r#"name: "e" type: "Exp" exp_param { base: 0 }"#,
            r#"name: "e" type: "Log" log_param { base: -2 }"#,
        ] {
            let err = layer_from_text(t).err().unwrap().to_string();
            assert!(err.contains("base") && err.contains("'e'"), "{err}");
        }
    }

    #[test]
    fn threshold_is_forward_only() {
        let t = r#"type: "Threshold" threshold_param { threshold: 0.2 }"#;
        check_forward(t, id, |x| if x > 0.2 { 1.0 } else { 0.0 });
        check_forward(
            r#"type: "Threshold""#,
            id,
            |x| if x > 0.0 { 1.0 } else { 0.0 },
        );
        // Strictly greater: the threshold itself maps to 0.
        let mut l = layer_from_text(t).unwrap();
        let mut a = vec![
            Blob::from_host(&[3], vec![0.2, 0.2001, -1.0]),
            Blob::default(),
        ];
        let mut cx = cpu_ctx(Phase::Train);
        run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[1], &[]).unwrap();
        assert_eq!(a[1].data_vec(), vec![0.0, 1.0, 0.0]);
        let mut io = Io::new(&mut a, &[0], &[1], &[]);
        let err = l
            .backward(&mut cx, &mut io, &[true])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no gradient"), "{err}");
        // Nothing to propagate: fine.
        l.backward(&mut cx, &mut io, &[false]).unwrap();
    }

    #[test]
    fn clip() {
        let t = r#"type: "Clip" clip_param { min: -0.5 max: 0.8 }"#;
        check_forward(t, id, |x| x.clamp(-0.5, 0.8));
        // Finite differences need inputs away from the two kinks.
        fn away(x: f32) -> f32 {
            if (x + 0.5).abs() < 0.02 || (x - 0.8).abs() < 0.02 {
                x + 0.05
            } else {
                x
            }
        }
        check_grad(t, away, &default_checker());
        // Bounds pass the gradient (inclusive); in place uses the saved input.
        for top in [1usize, 0] {
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![
                Blob::from_host(&[4], vec![-0.5, 0.8, -0.51, 0.81]),
                Blob::default(),
            ];
            let mut cx = cpu_ctx(Phase::Train);
            run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[top], &[]).unwrap();
            assert_eq!(a[top].data_vec(), vec![-0.5, 0.8, -0.5, 0.8]);
            a[top].set_diff(&[1.0, 2.0, 3.0, 4.0]).unwrap();
            l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[top], &[]), &[true])
                .unwrap();
            assert_eq!(a[0].diff_vec(), vec![1.0, 2.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn clip_rejects_inverted_bounds() {
        let err = layer_from_text(r#"name: "c" type: "Clip" clip_param { min: 1 max: 0 }"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("min <= max") && err.contains("'c'"), "{err}");
    }

    #[test]
    fn swish() {
        for beta in [1.0f64, 1.5] {
            let t = format!(r#"type: "Swish" swish_param {{ beta: {beta} }}"#);
            check_forward(&t, id, |x| x * sigmoid(beta * x));
            check_grad(&t, id, &default_checker());
        }
    }

    /// In place and out of place give identical values and gradients.
    #[test]
    fn in_place_matches_out_of_place() {
        for t in [
            r#"type: "ELU" elu_param { alpha: 0.7 }"#,
            r#"type: "AbsVal""#,
            r#"type: "BNLL""#,
            r#"type: "Power" power_param { power: 2.5 scale: 0.5 shift: 3 }"#,
            r#"type: "Exp" exp_param { base: 3 }"#,
            r#"type: "Log" log_param { shift: 4 }"#,
            r#"type: "Clip" clip_param { min: -1 max: 1 }"#,
            r#"type: "Swish" swish_param { beta: 0.7 }"#,
        ] {
            let x = gaussian_blob(&[2, 3, 4], 1.0, 3);
            let dy = gaussian_blob(&[2, 3, 4], 1.0, 4).data_vec();
            let mut got = Vec::new();
            for top in [1usize, 0] {
                let mut l = layer_from_text(t).unwrap();
                let mut a = vec![x.clone(), Blob::default()];
                let mut cx = cpu_ctx(Phase::Train);
                run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[top], &[]).unwrap();
                a[top].set_diff(&dy).unwrap();
                l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[top], &[]), &[true])
                    .unwrap();
                got.push((a[top].data_vec(), a[0].diff_vec()));
            }
            assert_eq!(got[0], got[1], "{t}");
        }
    }
}
