//! Update rules: how one learnable parameter's (normalised, regularised)
//! gradient becomes the step subtracted from its weights. One object per
//! solver `type`; the history blobs are the solver's (and the
//! solverstate's) business, the rule only says how many it needs.
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::proto::caffe::SolverParameter;
use crate::tensor::Blob;

/// The solver types Caffe's registry knows, in its order.
pub const SOLVER_TYPES: &[&str] = &["AdaDelta", "AdaGrad", "Adam", "Nesterov", "RMSProp", "SGD"];

pub trait UpdateRule: Send {
    /// The solver `type` string.
    fn type_name(&self) -> &'static str;
    /// History blobs per learnable parameter (1, or 2 for AdaDelta and
    /// Adam). A solverstate holds them set by set: all first-set blobs,
    /// then all second-set blobs.
    fn history_sets(&self) -> usize {
        1
    }
    /// Write the step into `param.diff` and subtract it from `param.data`.
    /// `history[k]` is this parameter's blob of history set `k`;
    /// `local_rate` is `rate · lr_mult`; `iter` the updates done so far.
    fn apply(
        &self,
        be: &dyn Backend,
        param: &mut Blob,
        history: &mut [&mut Blob],
        local_rate: f32,
        iter: i32,
    );
}

/// The rule for `param.type` (already upgraded from `solver_type`), with
/// the constructor checks of Caffe's solvers.
pub fn create(p: &SolverParameter) -> Result<Box<dyn UpdateRule>> {
    let momentum = p.momentum();
    let no_momentum = |ty: &str| -> Result<()> {
        if momentum != 0.0 {
            return Err(Error::Solver(format!(
                "Momentum cannot be used with {ty} (momentum is {momentum})."
            )));
        }
        Ok(())
    };
    Ok(match p.r#type() {
        "SGD" => Box::new(Sgd { momentum }),
        "Nesterov" => Box::new(Nesterov { momentum }),
        "AdaGrad" => {
            no_momentum("AdaGrad")?;
            Box::new(AdaGrad { delta: p.delta() })
        }
        "RMSProp" => {
            no_momentum("RMSProp")?;
            let rms_decay = p.rms_decay();
            if !(0.0..1.0).contains(&rms_decay) {
                return Err(Error::Solver(format!(
                    "rms_decay should lie between 0 and 1 (it is {rms_decay})."
                )));
            }
            Box::new(RmsProp {
                rms_decay,
                delta: p.delta(),
            })
        }
        "AdaDelta" => Box::new(AdaDelta {
            momentum,
            delta: p.delta(),
        }),
        "Adam" => Box::new(Adam {
            beta1: momentum,
            beta2: p.momentum2(),
            eps_hat: p.delta(),
        }),
        other => {
            return Err(Error::Solver(format!(
                "Unknown solver type: {other} (known types: {})",
                SOLVER_TYPES.join(", ")
            )))
        }
    })
}

pub struct Sgd {
    pub momentum: f32,
}

impl UpdateRule for Sgd {
    fn type_name(&self) -> &'static str {
        "SGD"
    }
    fn apply(&self, be: &dyn Backend, p: &mut Blob, h: &mut [&mut Blob], lr: f32, _iter: i32) {
        let n = p.count();
        let (diff, data) = (p.diff.view_mut(), p.data.view_mut());
        be.sgd_update(n, self.momentum, lr, diff, h[0].data.view_mut(), data);
    }
}

pub struct Nesterov {
    pub momentum: f32,
}

impl UpdateRule for Nesterov {
    fn type_name(&self) -> &'static str {
        "Nesterov"
    }
    fn apply(&self, be: &dyn Backend, p: &mut Blob, h: &mut [&mut Blob], lr: f32, _iter: i32) {
        let n = p.count();
        let (diff, data) = (p.diff.view_mut(), p.data.view_mut());
        be.nesterov_update(n, self.momentum, lr, diff, h[0].data.view_mut(), data);
    }
}

pub struct AdaGrad {
    pub delta: f32,
}

impl UpdateRule for AdaGrad {
    fn type_name(&self) -> &'static str {
        "AdaGrad"
    }
    fn apply(&self, be: &dyn Backend, p: &mut Blob, h: &mut [&mut Blob], lr: f32, _iter: i32) {
        let n = p.count();
        let (diff, data) = (p.diff.view_mut(), p.data.view_mut());
        be.adagrad_update(n, self.delta, lr, diff, h[0].data.view_mut(), data);
    }
}

pub struct RmsProp {
    pub rms_decay: f32,
    pub delta: f32,
}

impl UpdateRule for RmsProp {
    fn type_name(&self) -> &'static str {
        "RMSProp"
    }
    fn apply(&self, be: &dyn Backend, p: &mut Blob, h: &mut [&mut Blob], lr: f32, _iter: i32) {
        let n = p.count();
        let (diff, data) = (p.diff.view_mut(), p.data.view_mut());
        be.rmsprop_update(
            n,
            self.rms_decay,
            self.delta,
            lr,
            diff,
            h[0].data.view_mut(),
            data,
        );
    }
}

pub struct AdaDelta {
    pub momentum: f32,
    pub delta: f32,
}

impl UpdateRule for AdaDelta {
    fn type_name(&self) -> &'static str {
        "AdaDelta"
    }
    fn history_sets(&self) -> usize {
        2
    }
    fn apply(&self, be: &dyn Backend, p: &mut Blob, h: &mut [&mut Blob], lr: f32, _iter: i32) {
        let n = p.count();
        let (diff, data) = (p.diff.view_mut(), p.data.view_mut());
        let [h1, h2] = h else {
            unreachable!("AdaDelta keeps two history blobs per parameter")
        };
        be.adadelta_update(
            n,
            self.momentum,
            self.delta,
            lr,
            diff,
            h1.data.view_mut(),
            h2.data.view_mut(),
            data,
        );
    }
}

pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps_hat: f32,
}

impl Adam {
    /// `sqrt(1 − β2^t) / (1 − β1^t)` with `t = iter + 1`; `pow(float, int)`
    /// is a double computation in Caffe's C++, rounded to float at the end.
    pub fn correction(&self, iter: i32) -> f32 {
        let t = f64::from(iter + 1);
        let b1 = f64::from(self.beta1).powf(t);
        let b2 = f64::from(self.beta2).powf(t);
        ((1.0 - b2).sqrt() / (1.0 - b1)) as f32
    }
}

impl UpdateRule for Adam {
    fn type_name(&self) -> &'static str {
        "Adam"
    }
    fn history_sets(&self) -> usize {
        2
    }
    fn apply(&self, be: &dyn Backend, p: &mut Blob, h: &mut [&mut Blob], lr: f32, iter: i32) {
        let n = p.count();
        let (diff, data) = (p.diff.view_mut(), p.data.view_mut());
        let [m, v] = h else {
            unreachable!("Adam keeps two history blobs per parameter")
        };
        be.adam_update(
            n,
            self.beta1,
            self.beta2,
            self.eps_hat,
            lr * self.correction(iter),
            diff,
            m.data.view_mut(),
            v.data.view_mut(),
            data,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    fn param(text: &str) -> SolverParameter {
        crate::proto::text::parse_solver_text(text, "solver.prototxt").unwrap()
    }

    #[test]
    fn create_checks_like_caffe() {
        assert_eq!(create(&param("")).unwrap().type_name(), "SGD");
        assert_eq!(create(&param("type: \"Adam\"")).unwrap().history_sets(), 2);
        let e = create(&param("type: \"AdaGrad\" momentum: 0.9"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Momentum cannot be used with AdaGrad"), "{e}");
        let e = create(&param("type: \"RMSProp\" rms_decay: 1.0"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("rms_decay"), "{e}");
        let e = create(&param("type: \"sgd\"")).err().unwrap().to_string();
        assert!(
            e.contains("Unknown solver type: sgd") && e.contains("Nesterov"),
            "{e}"
        );
    }

    #[test]
    fn adam_bias_correction() {
        let a = Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps_hat: 1e-8,
        };
        let want = ((1.0f64 - 0.999f32 as f64).sqrt() / (1.0 - 0.9f32 as f64)) as f32;
        assert_eq!(a.correction(0), want);
    }

    #[test]
    fn sgd_rule_updates_weights_and_history() {
        let be = CpuBackend::new();
        let mut p = Blob::from_host(&[2], vec![1.0, 2.0]);
        p.set_diff(&[0.5, -0.5]).unwrap();
        let mut h = Blob::from_host(&[2], vec![0.0, 0.0]);
        let rule = Sgd { momentum: 0.9 };
        rule.apply(&be, &mut p, &mut [&mut h], 0.1, 0);
        assert_eq!(h.data_vec(), vec![0.05, -0.05]);
        assert_eq!(p.diff_vec(), vec![0.05, -0.05]);
        assert_eq!(p.data_vec(), vec![0.95, 2.05]);
    }
}
