//! `SolverOps` on the GPU: one fused kernel launch per parameter and rule
//! (`kernels/solver.cu`), parameters and history staying on the device;
//! `sumsq` is the deterministic two-pass double reduction of `Math`.
use super::math::{elementwise, f, ll, CudaBackend};
use crate::backend::solver::Regularization;
use crate::backend::{SolverOps, View, ViewMut};

impl SolverOps for CudaBackend {
    /// Σ x² in double over a fixed grid (partials summed in block order),
    /// downloaded once: the value the trait returns.
    fn sumsq(&self, n: usize, x: View) -> f32 {
        self.reduce("rc_sumsq_partial", n, &[self.ptr(&x)])
    }

    fn regularize(&self, n: usize, kind: Regularization, decay: f32, data: View, diff: ViewMut) {
        if n == 0 {
            return;
        }
        let kernel = match kind {
            Regularization::L2 => "rc_regularize_l2",
            Regularization::L1 => "rc_regularize_l1",
        };
        let args = [ll(n), f(decay), self.ptr(&data), self.ptr_mut(&diff)];
        self.launch(kernel, elementwise(n), &args);
    }

    fn sgd_update(
        &self,
        n: usize,
        momentum: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    ) {
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            f(momentum),
            f(lr),
            self.ptr_mut(&diff),
            self.ptr_mut(&history),
            self.ptr_mut(&data),
        ];
        self.launch("rc_sgd_update", elementwise(n), &args);
    }

    fn nesterov_update(
        &self,
        n: usize,
        momentum: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    ) {
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            f(momentum),
            f(lr),
            self.ptr_mut(&diff),
            self.ptr_mut(&history),
            self.ptr_mut(&data),
        ];
        self.launch("rc_nesterov_update", elementwise(n), &args);
    }

    fn adagrad_update(
        &self,
        n: usize,
        delta: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    ) {
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            f(delta),
            f(lr),
            self.ptr_mut(&diff),
            self.ptr_mut(&history),
            self.ptr_mut(&data),
        ];
        self.launch("rc_adagrad_update", elementwise(n), &args);
    }

    fn rmsprop_update(
        &self,
        n: usize,
        rms_decay: f32,
        delta: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        data: ViewMut,
    ) {
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            f(rms_decay),
            f(delta),
            f(lr),
            self.ptr_mut(&diff),
            self.ptr_mut(&history),
            self.ptr_mut(&data),
        ];
        self.launch("rc_rmsprop_update", elementwise(n), &args);
    }

    fn adadelta_update(
        &self,
        n: usize,
        momentum: f32,
        delta: f32,
        lr: f32,
        diff: ViewMut,
        history: ViewMut,
        history2: ViewMut,
        data: ViewMut,
    ) {
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            f(momentum),
            f(delta),
            f(lr),
            self.ptr_mut(&diff),
            self.ptr_mut(&history),
            self.ptr_mut(&history2),
            self.ptr_mut(&data),
        ];
        self.launch("rc_adadelta_update", elementwise(n), &args);
    }

    fn adam_update(
        &self,
        n: usize,
        beta1: f32,
        beta2: f32,
        eps_hat: f32,
        corrected_lr: f32,
        diff: ViewMut,
        m: ViewMut,
        v: ViewMut,
        data: ViewMut,
    ) {
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            f(beta1),
            f(beta2),
            f(eps_hat),
            f(corrected_lr),
            self.ptr_mut(&diff),
            self.ptr_mut(&m),
            self.ptr_mut(&v),
            self.ptr_mut(&data),
        ];
        self.launch("rc_adam_update", elementwise(n), &args);
    }
}
