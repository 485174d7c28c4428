//! `RecurrentOps` on the GPU: Caffe's LSTMUnit step and the per-row
//! continuation scaling, one thread per (stream, unit) or value
//! (`kernels/recurrent.cu`).
use super::math::{elementwise, f, ll, CudaBackend};
use crate::backend::{RecurrentOps, View, ViewMut};

impl RecurrentOps for CudaBackend {
    fn lstm_unit_forward(
        &self,
        n: usize,
        h: usize,
        c_prev: View,
        gates: View,
        cont: View,
        c: ViewMut,
        h_out: ViewMut,
    ) {
        let count = n * h;
        if count == 0 {
            return;
        }
        let args = [
            ll(count),
            ll(h),
            self.ptr(&c_prev),
            self.ptr(&gates),
            self.ptr(&cont),
            self.ptr_mut(&c),
            self.ptr_mut(&h_out),
        ];
        self.launch("rc_lstm_unit_fwd", elementwise(count), &args);
    }

    fn lstm_unit_backward(
        &self,
        n: usize,
        h: usize,
        c_prev: View,
        gates: View,
        cont: View,
        c: View,
        dc: View,
        dh: View,
        dc_prev: ViewMut,
        dgates: ViewMut,
    ) {
        let count = n * h;
        if count == 0 {
            return;
        }
        let args = [
            ll(count),
            ll(h),
            self.ptr(&c_prev),
            self.ptr(&gates),
            self.ptr(&cont),
            self.ptr(&c),
            self.ptr(&dc),
            self.ptr(&dh),
            self.ptr_mut(&dc_prev),
            self.ptr_mut(&dgates),
        ];
        self.launch("rc_lstm_unit_bwd", elementwise(count), &args);
    }

    fn scale_rows(&self, rows: usize, cols: usize, s: View, x: View, beta: f32, y: ViewMut) {
        let n = rows * cols;
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            ll(cols),
            self.ptr(&s),
            self.ptr(&x),
            f(beta),
            self.ptr_mut(&y),
        ];
        self.launch("rc_scale_rows", elementwise(n), &args);
    }
}
