//! RNN (Caffe's RNNLayer, an Elman network), computed directly instead of
//! through Caffe's unrolled net:
//!
//! ```text
//! h_t = tanh(W_xh·x_t + b_h [+ W_xh_static·x_static] + W_hh·(cont_t·h_{t−1}))
//! o_t = tanh(W_ho·h_t + b_o)
//! ```
//!
//! Params, in Caffe's order: W_xh (H×D), b_h (H), [W_xh_static (H×D_s)],
//! W_hh (H×H), W_ho (H×H), b_o (H). As in Caffe, no gradient flows into an
//! exposed h_0 or out of an exposed h_T, and none to the indicators.
use super::common::{check_param_shapes, grow, Carry, Dims, RecurrentConfig};
use crate::backend::{Backend, Buffer, Unary};
use crate::error::Result;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Rnn {
    cfg: RecurrentConfig,
    dims: Dims,
    /// Pre-activations of h for every step (T·N × H), then their gradients
    /// in backward.
    pre: Buffer,
    /// h_1 … h_T (T·N × H).
    hs: Buffer,
    /// `cont_t · h_{t−1}` of every step (T·N × H): W_hh's input.
    hc: Buffer,
    /// h_0 (N × H).
    h0: Buffer,
    /// W_xh_static·x_static (N × H), and its gradient.
    static_pre: Buffer,
    dstatic: Buffer,
    /// Gradients w.r.t. the output pre-activations and the h_t (T·N × H).
    dout: Buffer,
    dh: Buffer,
    /// N × H scratch.
    tmp: Buffer,
    /// T·N ones (the bias multiplier).
    ones: Buffer,
    carry: Carry,
}

impl Rnn {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        Ok(Rnn {
            cfg: RecurrentConfig::new(lp, 1)?,
            dims: Dims::default(),
            pre: Buffer::default(),
            hs: Buffer::default(),
            hc: Buffer::default(),
            h0: Buffer::default(),
            static_pre: Buffer::default(),
            dstatic: Buffer::default(),
            dout: Buffer::default(),
            dh: Buffer::default(),
            tmp: Buffer::default(),
            ones: Buffer::default(),
            carry: Carry::default(),
        })
    }

    /// (name, shape, is_bias) of the learnable blobs, in Caffe's order.
    fn params(&self) -> Vec<(&'static str, Vec<usize>, bool)> {
        let (h, d) = (self.cfg.num_output, &self.dims);
        let mut v = vec![
            ("W_xh", vec![h, d.input_dim], false),
            ("b_h", vec![h], true),
        ];
        if d.static_input {
            v.push(("W_xh_static", vec![h, d.static_dim], false));
        }
        v.push(("W_hh", vec![h, h], false));
        v.push(("W_ho", vec![h, h], false));
        v.push(("b_o", vec![h], true));
        v
    }
}

impl Layer for Rnn {
    fn type_name(&self) -> &'static str {
        "RNN"
    }

    fn arity(&self) -> Arity {
        self.cfg.arity()
    }

    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }

    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        self.dims = self.cfg.dims(io)?;
        let shapes: Vec<(Vec<usize>, bool)> =
            self.params().into_iter().map(|(_, s, b)| (s, b)).collect();
        self.cfg.make_params(cx, &shapes)
    }

    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        self.cfg.check(io, &mut self.dims)?;
        let p = self.params();
        let names: Vec<&str> = p.iter().map(|x| x.0).collect();
        let shapes: Vec<Vec<usize>> = p.into_iter().map(|x| x.1).collect();
        check_param_shapes(io, &names, &shapes)?;
        let be: &dyn Backend = cx.be.as_ref();
        let (t, n, h) = (self.dims.t, self.dims.n, self.cfg.num_output);
        let (m, nh) = (t * n, n * h);
        for b in [
            &mut self.pre,
            &mut self.hs,
            &mut self.hc,
            &mut self.dout,
            &mut self.dh,
        ] {
            grow(be, b, m * h);
        }
        grow(be, &mut self.h0, nh);
        grow(be, &mut self.tmp, nh);
        if self.dims.static_input {
            grow(be, &mut self.static_pre, nh);
            grow(be, &mut self.dstatic, nh);
        }
        if grow(be, &mut self.ones, m) {
            be.set(m, 1.0, self.ones.view_mut());
        }
        if !self.cfg.expose_hidden {
            self.carry.fit(be, 1, nh);
        }
        io.top_mut(0).reshape(&[t, n, h])?;
        if self.cfg.expose_hidden {
            io.top_mut(1).reshape(&[1, n, h])?;
        }
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let be: &dyn Backend = cx.be.as_ref();
        let d = self.dims;
        let (t, n, h) = (d.t, d.n, self.cfg.num_output);
        let (m, nh) = (t * n, n * h);
        if self.cfg.expose_hidden {
            be.copy(
                nh,
                io.bottom(d.hidden_bottom(0)).data.view(),
                self.h0.view_mut(),
            );
        } else {
            be.copy(nh, self.carry.bufs[0].view(), self.h0.view_mut());
        }
        // Input transform of all steps at once: W_xh·x + b_h.
        {
            let [x, w, b] = [Slot::B(0), Slot::P(0), Slot::P(1)].map(|s| io.get(s));
            let k = d.input_dim;
            be.gemm(
                false,
                true,
                m,
                h,
                k,
                1.0,
                x.data.view(),
                w.data.view(),
                0.0,
                self.pre.view_mut(),
            );
            let (ones, bias) = (self.ones.view(), b.data.view());
            be.gemm(
                false,
                false,
                m,
                h,
                1,
                1.0,
                ones,
                bias,
                1.0,
                self.pre.view_mut(),
            );
        }
        if d.static_input {
            let (xs, ws) = (io.bottom(2), io.param(2));
            let k = d.static_dim;
            let out = self.static_pre.view_mut();
            be.gemm(
                false,
                true,
                n,
                h,
                k,
                1.0,
                xs.data.view(),
                ws.data.view(),
                0.0,
                out,
            );
            for s in 0..t {
                be.axpy(nh, 1.0, self.static_pre.view(), self.pre.at_mut(s * nh));
            }
        }
        let wh = d.recur_param();
        {
            let [cont, whh] = [Slot::B(1), Slot::P(wh)].map(|s| io.get(s));
            for s in 0..t {
                let h_prev = if s == 0 {
                    self.h0.view()
                } else {
                    self.hs.at((s - 1) * nh)
                };
                let cont_s = cont.data.at(s * n);
                be.scale_rows(n, h, cont_s, h_prev, 0.0, self.hc.at_mut(s * nh));
                be.gemm(
                    false,
                    true,
                    n,
                    h,
                    h,
                    1.0,
                    self.hc.at(s * nh),
                    whh.data.view(),
                    1.0,
                    self.pre.at_mut(s * nh),
                );
                be.unary(Unary::TanH, nh, self.pre.at(s * nh), self.hs.at_mut(s * nh));
            }
        }
        // Output of all steps at once: o = tanh(W_ho·h + b_o).
        {
            let ([who, bo], [top]) = io.split([Slot::P(wh + 1), Slot::P(wh + 2)], [Slot::T(0)])?;
            let (hs, w) = (self.hs.view(), who.data.view());
            be.gemm(false, true, m, h, h, 1.0, hs, w, 0.0, top.data.view_mut());
            let (ones, bias) = (self.ones.view(), bo.data.view());
            be.gemm(
                false,
                false,
                m,
                h,
                1,
                1.0,
                ones,
                bias,
                1.0,
                top.data.view_mut(),
            );
            be.unary_inplace(Unary::TanH, m * h, top.data.view_mut());
        }
        let h_last = self.hs.at((t - 1) * nh);
        if self.cfg.expose_hidden {
            be.copy(nh, h_last, io.top_mut(1).data.view_mut());
        } else {
            be.copy(nh, h_last, self.carry.bufs[0].view_mut());
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down.get(1).copied().unwrap_or(false) {
            return Err(crate::layer_err!(
                "cannot backpropagate to sequence continuation indicators (bottom[1])"
            ));
        }
        let be: &dyn Backend = cx.be.as_ref();
        let d = self.dims;
        let (t, n, h) = (d.t, d.n, self.cfg.num_output);
        let (m, nh) = (t * n, n * h);
        let wh = d.recur_param();
        // Output layer: d(pre-activation) = dy·(1 − o²), then its params,
        // then dh_t = W_hoᵀ·dout_t for every step.
        {
            let top = io.top(0);
            let (o, dy) = (top.data.view(), top.diff.view());
            be.unary_grad(Unary::TanH, m * h, o, o, dy, self.dout.view_mut());
        }
        let dout = self.dout.view();
        if io.param_propagate_down(wh + 1) {
            let w = io.param_mut(wh + 1);
            be.gemm(
                true,
                false,
                h,
                h,
                m,
                1.0,
                dout,
                self.hs.view(),
                1.0,
                w.diff.view_mut(),
            );
        }
        if io.param_propagate_down(wh + 2) {
            let b = io.param_mut(wh + 2);
            be.gemv(
                true,
                m,
                h,
                1.0,
                dout,
                self.ones.view(),
                1.0,
                b.diff.view_mut(),
            );
        }
        {
            let w = io.param(wh + 1).data.view();
            be.gemm(false, false, m, h, h, 1.0, dout, w, 0.0, self.dh.view_mut());
        }
        // Backpropagation through time; `pre` becomes d(pre-activation).
        {
            let [cont, whh] = [Slot::B(1), Slot::P(wh)].map(|s| io.get(s));
            for s in (0..t).rev() {
                let hs = self.hs.at(s * nh);
                be.unary_grad(
                    Unary::TanH,
                    nh,
                    hs,
                    hs,
                    self.dh.at(s * nh),
                    self.pre.at_mut(s * nh),
                );
                if s > 0 {
                    // dh_{s−1} += cont_s · (dpre_s · W_hh)
                    let dpre = self.pre.at(s * nh);
                    be.gemm(
                        false,
                        false,
                        n,
                        h,
                        h,
                        1.0,
                        dpre,
                        whh.data.view(),
                        0.0,
                        self.tmp.view_mut(),
                    );
                    let cont_s = cont.data.at(s * n);
                    let dst = self.dh.at_mut((s - 1) * nh);
                    be.scale_rows(n, h, cont_s, self.tmp.view(), 1.0, dst);
                }
            }
        }
        let dpre = self.pre.view();
        if io.param_propagate_down(wh) {
            let w = io.param_mut(wh);
            be.gemm(
                true,
                false,
                h,
                h,
                m,
                1.0,
                dpre,
                self.hc.view(),
                1.0,
                w.diff.view_mut(),
            );
        }
        if io.param_propagate_down(0) {
            let ([x], [w]) = io.split([Slot::B(0)], [Slot::P(0)])?;
            let k = d.input_dim;
            be.gemm(
                true,
                false,
                h,
                k,
                m,
                1.0,
                dpre,
                x.data.view(),
                1.0,
                w.diff.view_mut(),
            );
        }
        if io.param_propagate_down(1) {
            let b = io.param_mut(1);
            be.gemv(
                true,
                m,
                h,
                1.0,
                dpre,
                self.ones.view(),
                1.0,
                b.diff.view_mut(),
            );
        }
        if propagate_down.first().copied().unwrap_or(false) {
            let ([w], [x]) = io.split([Slot::P(0)], [Slot::B(0)])?;
            let k = d.input_dim;
            be.gemm(
                false,
                false,
                m,
                k,
                h,
                1.0,
                dpre,
                w.data.view(),
                0.0,
                x.diff.view_mut(),
            );
        }
        if d.static_input {
            let pd_static = propagate_down.get(2).copied().unwrap_or(false);
            if io.param_propagate_down(2) || pd_static {
                // The static contribution entered every step.
                be.copy(nh, dpre, self.dstatic.view_mut());
                for s in 1..t {
                    be.axpy(nh, 1.0, self.pre.at(s * nh), self.dstatic.view_mut());
                }
            }
            let k = d.static_dim;
            if io.param_propagate_down(2) {
                let ([xs], [w]) = io.split([Slot::B(2)], [Slot::P(2)])?;
                let ds = self.dstatic.view();
                be.gemm(
                    true,
                    false,
                    h,
                    k,
                    n,
                    1.0,
                    ds,
                    xs.data.view(),
                    1.0,
                    w.diff.view_mut(),
                );
            }
            if pd_static {
                let ([w], [xs]) = io.split([Slot::P(2)], [Slot::B(2)])?;
                let ds = self.dstatic.view();
                be.gemm(
                    false,
                    false,
                    n,
                    k,
                    h,
                    1.0,
                    ds,
                    w.data.view(),
                    0.0,
                    xs.diff.view_mut(),
                );
            }
        }
        // Caffe shares only the data of an exposed h_0: its gradient is zero.
        if self.cfg.expose_hidden {
            let b = d.hidden_bottom(0);
            if propagate_down.get(b).copied().unwrap_or(false) {
                be.set(nh, 0.0, io.bottom_mut(b).diff.view_mut());
            }
        }
        Ok(())
    }
}
