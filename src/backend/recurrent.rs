//! Recurrent kernels: Caffe's LSTMUnit step (forward and backward) and the
//! per-row scaling by continuation indicators (`cont_t · h_{t−1}`) that
//! LSTM and RNN apply at every time step.
//!
//! A step works on `n` independent streams of `h` hidden units. Gate
//! pre-activations are `n × 4h`, in Caffe's block order `[i, f, o, g]`;
//! `cont` holds one value per stream.
use super::{Math, View, ViewMut};

#[allow(clippy::too_many_arguments)]
pub trait RecurrentOps: Math {
    /// One LSTM step (Caffe's LSTMUnit forward):
    /// `i = σ(·)`, `f = cont·σ(·)` (exactly 0 when `cont == 0`), `o = σ(·)`,
    /// `g = tanh(·)`; `c = f·c_prev + i·g`, `h = o·tanh(c)`, with
    /// `σ(x) = 1/(1+e^−x)` and `tanh(x) = 2σ(2x) − 1` as Caffe computes them.
    fn lstm_unit_forward(
        &self,
        n: usize,
        h: usize,
        c_prev: View,
        gates: View,
        cont: View,
        c: ViewMut,
        h_out: ViewMut,
    );
    /// Caffe's LSTMUnit backward from the step's inputs, its cell output `c`
    /// and the top diffs `dc`, `dh`: overwrites `dc_prev` (`n × h`) and
    /// `dgates` (`n × 4h`, gradients of the pre-activations).
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
    );
    /// `y[r, :] = s[r] · x[r, :] + beta · y[r, :]` for `rows × cols` row-major
    /// matrices (`y` is not read when `beta == 0`).
    fn scale_rows(&self, rows: usize, cols: usize, s: View, x: View, beta: f32, y: ViewMut);
}
