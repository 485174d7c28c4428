//! Learning-rate policies, exactly as Caffe's `SGDSolver::GetLearningRate`.
//!
//! Pure: the rate is a function of the iteration (and, for `multistep`,
//! of the step counter the solver keeps and snapshots). The arithmetic
//! follows Caffe's C++ types: `pow(float, int)` promotes to double, while
//! `pow(float, float)` and `exp(float)` stay in float; the result is a
//! float.
use crate::error::{Error, Result};
use crate::proto::caffe::SolverParameter;

/// A parsed `lr_policy` with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum LrPolicy {
    Fixed {
        base_lr: f32,
    },
    Step {
        base_lr: f32,
        gamma: f32,
        stepsize: i32,
    },
    Exp {
        base_lr: f32,
        gamma: f32,
    },
    Inv {
        base_lr: f32,
        gamma: f32,
        power: f32,
    },
    MultiStep {
        base_lr: f32,
        gamma: f32,
        stepvalues: Vec<i32>,
    },
    Poly {
        base_lr: f32,
        power: f32,
        max_iter: i32,
    },
    Sigmoid {
        base_lr: f32,
        gamma: f32,
        stepsize: i32,
    },
}

/// What one rate computation produced besides the rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub rate: f32,
    /// `multistep` moved to a new step: Caffe logs
    /// `MultiStep Status: Iteration <it>, step = <k>`.
    pub multistep_advanced: bool,
}

impl LrPolicy {
    /// Read `lr_policy` and its parameters; Caffe's CHECKs (which Caffe
    /// only runs at the first update) are reported here, before training.
    pub fn from_param(p: &SolverParameter) -> Result<LrPolicy> {
        let base_lr = p.base_lr();
        let gamma = p.gamma();
        let need_gamma = |name: &str| -> Result<()> {
            if gamma < 0.0 {
                return Err(Error::Solver(format!(
                    "lr_policy \"{name}\" needs gamma >= 0 (gamma is {gamma})"
                )));
            }
            Ok(())
        };
        let need_stepsize = |name: &str| -> Result<()> {
            if p.stepsize() <= 0 {
                return Err(Error::Solver(format!(
                    "lr_policy \"{name}\" needs stepsize > 0 (stepsize is {})",
                    p.stepsize()
                )));
            }
            Ok(())
        };
        let policy = p.lr_policy();
        Ok(match policy {
            "fixed" => LrPolicy::Fixed { base_lr },
            "step" => {
                need_stepsize(policy)?;
                need_gamma(policy)?;
                LrPolicy::Step {
                    base_lr,
                    gamma,
                    stepsize: p.stepsize(),
                }
            }
            "exp" => {
                need_gamma(policy)?;
                LrPolicy::Exp { base_lr, gamma }
            }
            "inv" => {
                need_gamma(policy)?;
                LrPolicy::Inv {
                    base_lr,
                    gamma,
                    power: p.power(),
                }
            }
            "multistep" => {
                need_gamma(policy)?;
                LrPolicy::MultiStep {
                    base_lr,
                    gamma,
                    stepvalues: p.stepvalue.clone(),
                }
            }
            "poly" => LrPolicy::Poly {
                base_lr,
                power: p.power(),
                max_iter: p.max_iter(),
            },
            "sigmoid" => {
                need_gamma(policy)?;
                need_stepsize(policy)?;
                LrPolicy::Sigmoid {
                    base_lr,
                    gamma,
                    stepsize: p.stepsize(),
                }
            }
            other => {
                return Err(Error::Solver(format!(
                    "Unknown learning rate policy: \"{other}\" (known policies: fixed, step, \
                     exp, inv, multistep, poly, sigmoid)"
                )))
            }
        })
    }

    /// The policy's name as written in the solver file.
    pub fn name(&self) -> &'static str {
        match self {
            LrPolicy::Fixed { .. } => "fixed",
            LrPolicy::Step { .. } => "step",
            LrPolicy::Exp { .. } => "exp",
            LrPolicy::Inv { .. } => "inv",
            LrPolicy::MultiStep { .. } => "multistep",
            LrPolicy::Poly { .. } => "poly",
            LrPolicy::Sigmoid { .. } => "sigmoid",
        }
    }

    /// The rate for the update that turns `iter` into `iter + 1`.
    /// `current_step` is the solver's step counter: `step` overwrites it,
    /// `multistep` advances it by at most one per call (as Caffe does).
    pub fn rate(&self, iter: i32, current_step: &mut i32) -> Rate {
        let mut advanced = false;
        // pow(float, int) in C++11 is pow(double, double).
        let powi_d = |base: f32, e: i32| f64::from(base).powf(f64::from(e));
        let rate = match *self {
            LrPolicy::Fixed { base_lr } => base_lr,
            LrPolicy::Step {
                base_lr,
                gamma,
                stepsize,
            } => {
                *current_step = iter / stepsize;
                (f64::from(base_lr) * powi_d(gamma, *current_step)) as f32
            }
            LrPolicy::Exp { base_lr, gamma } => (f64::from(base_lr) * powi_d(gamma, iter)) as f32,
            LrPolicy::Inv {
                base_lr,
                gamma,
                power,
            } => base_lr * (1.0f32 + gamma * iter as f32).powf(-power),
            LrPolicy::MultiStep {
                base_lr,
                gamma,
                ref stepvalues,
            } => {
                let k = *current_step;
                if k >= 0 && (k as usize) < stepvalues.len() && iter >= stepvalues[k as usize] {
                    *current_step += 1;
                    advanced = true;
                }
                (f64::from(base_lr) * powi_d(gamma, *current_step)) as f32
            }
            LrPolicy::Poly {
                base_lr,
                power,
                max_iter,
            } => base_lr * (1.0f32 - iter as f32 / max_iter as f32).powf(power),
            LrPolicy::Sigmoid {
                base_lr,
                gamma,
                stepsize,
            } => base_lr * (1.0f32 / (1.0f32 + (-gamma * (iter as f32 - stepsize as f32)).exp())),
        };
        Rate {
            rate,
            multistep_advanced: advanced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::g;

    fn solver(text: &str) -> SolverParameter {
        crate::proto::text::parse_solver_text(text, "solver.prototxt").unwrap()
    }

    fn rates(p: &LrPolicy, n: i32) -> Vec<String> {
        let mut step = 0;
        (0..n).map(|it| g(p.rate(it, &mut step).rate)).collect()
    }

    /// The `lr` column of a golden `losses.tsv` (iterations 0..49).
    fn golden_lr(folder: &str) -> Option<Vec<String>> {
        let path = format!("../shared/golden/train/{folder}/losses.tsv");
        let text = std::fs::read_to_string(path).ok()?;
        Some(
            text.lines()
                .skip(1)
                .map(|l| l.split('\t').nth(2).unwrap().to_string())
                .filter(|s| s != "NA")
                .collect(),
        )
    }

    fn golden_policy(folder: &str) -> Option<LrPolicy> {
        let path = format!("../shared/golden/train/{folder}/solver.prototxt");
        let text = std::fs::read_to_string(path).ok()?;
        Some(LrPolicy::from_param(&solver(&text)).unwrap())
    }

    #[test]
    fn golden_lr_columns_match_exactly() {
        for folder in [
            "sgd",
            "lr_step",
            "lr_multistep",
            "lr_exp",
            "lr_poly",
            "lr_sigmoid",
            "adagrad",
            "rmsprop",
            "adam",
        ] {
            let (Some(p), Some(want)) = (golden_policy(folder), golden_lr(folder)) else {
                eprintln!("golden data missing for {folder}; skipped");
                continue;
            };
            assert_eq!(want.len(), 50, "{folder}");
            assert_eq!(rates(&p, 50), want, "{folder}");
        }
    }

    #[test]
    fn formulas() {
        let mut s = 0;
        let p = LrPolicy::Step {
            base_lr: 0.1,
            gamma: 0.1,
            stepsize: 10,
        };
        assert_eq!(p.rate(9, &mut s).rate, 0.1);
        assert!((p.rate(25, &mut s).rate - 0.001).abs() < 1e-9);
        assert_eq!(s, 2);
        let p = LrPolicy::Poly {
            base_lr: 1.0,
            power: 1.0,
            max_iter: 100,
        };
        assert!((p.rate(25, &mut s).rate - 0.75).abs() < 1e-7);
        let p = LrPolicy::Sigmoid {
            base_lr: 1.0,
            gamma: 1.0,
            stepsize: 5,
        };
        assert!((p.rate(5, &mut s).rate - 0.5).abs() < 1e-7);
    }

    #[test]
    fn multistep_advances_one_step_per_call() {
        let p = LrPolicy::MultiStep {
            base_lr: 1.0,
            gamma: 0.5,
            stepvalues: vec![2, 3],
        };
        let mut step = 0;
        // Resumed at iteration 10 with a stale step: one step per call.
        let r = p.rate(10, &mut step);
        assert!(r.multistep_advanced);
        assert_eq!((step, r.rate), (1, 0.5));
        let r = p.rate(11, &mut step);
        assert_eq!((step, r.rate), (2, 0.25));
        let r = p.rate(12, &mut step);
        assert!(!r.multistep_advanced);
        assert_eq!(step, 2);
    }

    #[test]
    fn checks_and_unknown_policy() {
        let e = LrPolicy::from_param(&solver("lr_policy: \"sigmoid\" gamma: -0.25 stepsize: 25"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gamma >= 0"), "{e}");
        let e = LrPolicy::from_param(&solver("lr_policy: \"step\" gamma: 0.5"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("stepsize > 0"), "{e}");
        let e = LrPolicy::from_param(&solver("base_lr: 0.1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Unknown learning rate policy: \"\""), "{e}");
        let e = LrPolicy::from_param(&solver("lr_policy: \"cosine\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cosine") && e.contains("multistep"), "{e}");
    }
}
