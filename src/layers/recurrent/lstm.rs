//! LSTM (Caffe's LSTMLayer). Caffe unrolls the recurrence into an internal
//! net (InnerProduct, Scale, Eltwise, LSTMUnit, Slice, Concat); this layer
//! computes the same thing directly:
//!
//! ```text
//! gate_t = W_xc·x_t + b_c [+ W_xc_static·x_static] + W_hc·(cont_t·h_{t−1})
//! c_t, h_t = LSTMUnit(c_{t−1}, gate_t, cont_t)
//! ```
//!
//! Params, in Caffe's order: W_xc (4H×D), b_c (4H), [W_xc_static (4H×D_s)],
//! W_hc (4H×H). As in Caffe, no gradient flows into the exposed initial
//! states or out of the exposed final states (it cannot cross batches), and
//! none to the continuation indicators.
use super::common::{check_param_shapes, grow, Carry, Dims, RecurrentConfig};
use crate::backend::{Backend, Buffer};
use crate::error::Result;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Lstm {
    cfg: RecurrentConfig,
    dims: Dims,
    /// Gate pre-activations of every step (T·N × 4H).
    gates: Buffer,
    /// Their gradients.
    dgates: Buffer,
    /// `cont_t · h_{t−1}` of every step (T·N × H): W_hc's input.
    hc: Buffer,
    /// Cell states c_0 … c_T (N × H each).
    c: Vec<Buffer>,
    /// h_0 (N × H).
    h0: Buffer,
    /// W_xc_static·x_static (N × 4H), and its gradient.
    static_gates: Buffer,
    dstatic: Buffer,
    /// Backward scratch (N × H): running dh, dc in and out, W_hc'·dgate.
    dh: Buffer,
    dc: [Buffer; 2],
    tmp: Buffer,
    /// T·N ones (the bias multiplier).
    ones: Buffer,
    carry: Carry,
}

impl Lstm {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        Ok(Lstm {
            cfg: RecurrentConfig::new(lp, 2)?,
            dims: Dims::default(),
            gates: Buffer::default(),
            dgates: Buffer::default(),
            hc: Buffer::default(),
            c: Vec::new(),
            h0: Buffer::default(),
            static_gates: Buffer::default(),
            dstatic: Buffer::default(),
            dh: Buffer::default(),
            dc: [Buffer::default(), Buffer::default()],
            tmp: Buffer::default(),
            ones: Buffer::default(),
            carry: Carry::default(),
        })
    }

    /// (name, shape, is_bias) of the learnable blobs, in Caffe's order.
    fn params(&self) -> Vec<(&'static str, Vec<usize>, bool)> {
        let (g, d) = (4 * self.cfg.num_output, &self.dims);
        let mut v = vec![
            ("W_xc", vec![g, d.input_dim], false),
            ("b_c", vec![g], true),
        ];
        if d.static_input {
            v.push(("W_xc_static", vec![g, d.static_dim], false));
        }
        v.push(("W_hc", vec![g, self.cfg.num_output], false));
        v
    }
}

impl Layer for Lstm {
    fn type_name(&self) -> &'static str {
        "LSTM"
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
        grow(be, &mut self.gates, m * 4 * h);
        grow(be, &mut self.dgates, m * 4 * h);
        grow(be, &mut self.hc, m * h);
        self.c.resize_with(t + 1, Buffer::default);
        for c in &mut self.c {
            grow(be, c, nh);
        }
        for b in [&mut self.h0, &mut self.dh, &mut self.tmp] {
            grow(be, b, nh);
        }
        for b in &mut self.dc {
            grow(be, b, nh);
        }
        if self.dims.static_input {
            grow(be, &mut self.static_gates, n * 4 * h);
            grow(be, &mut self.dstatic, n * 4 * h);
        }
        if grow(be, &mut self.ones, m) {
            be.set(m, 1.0, self.ones.view_mut());
        }
        if !self.cfg.expose_hidden {
            self.carry.fit(be, 2, nh);
        }
        io.top_mut(0).reshape(&[t, n, h])?;
        for i in 0..self.cfg.num_exposed() {
            io.top_mut(1 + i).reshape(&[1, n, h])?;
        }
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let be: &dyn Backend = cx.be.as_ref();
        let d = self.dims;
        let (t, n, h) = (d.t, d.n, self.cfg.num_output);
        let (g, m, nh) = (4 * h, t * n, n * h);
        let ng = n * g;
        // Initial state: the exposed bottoms, or the last call's final state.
        if self.cfg.expose_hidden {
            be.copy(
                nh,
                io.bottom(d.hidden_bottom(0)).data.view(),
                self.h0.view_mut(),
            );
            be.copy(
                nh,
                io.bottom(d.hidden_bottom(1)).data.view(),
                self.c[0].view_mut(),
            );
        } else {
            be.copy(nh, self.carry.bufs[0].view(), self.h0.view_mut());
            be.copy(nh, self.carry.bufs[1].view(), self.c[0].view_mut());
        }
        // Input transform of all steps at once: W_xc·x + b_c.
        {
            let [x, w, b] = [Slot::B(0), Slot::P(0), Slot::P(1)].map(|s| io.get(s));
            let gates = self.gates.view_mut();
            be.gemm(
                false,
                true,
                m,
                g,
                d.input_dim,
                1.0,
                x.data.view(),
                w.data.view(),
                0.0,
                gates,
            );
            let gates = self.gates.view_mut();
            be.gemm(
                false,
                false,
                m,
                g,
                1,
                1.0,
                self.ones.view(),
                b.data.view(),
                1.0,
                gates,
            );
        }
        if d.static_input {
            let (xs, ws) = (io.bottom(2), io.param(2));
            be.gemm(
                false,
                true,
                n,
                g,
                d.static_dim,
                1.0,
                xs.data.view(),
                ws.data.view(),
                0.0,
                self.static_gates.view_mut(),
            );
            for s in 0..t {
                be.axpy(ng, 1.0, self.static_gates.view(), self.gates.at_mut(s * ng));
            }
        }
        let ([cont, whc], [top]) =
            io.split([Slot::B(1), Slot::P(d.recur_param())], [Slot::T(0)])?;
        for s in 0..t {
            let h_prev = if s == 0 {
                self.h0.view()
            } else {
                top.data.at((s - 1) * nh)
            };
            let cont_s = cont.data.at(s * n);
            be.scale_rows(n, h, cont_s, h_prev, 0.0, self.hc.at_mut(s * nh));
            be.gemm(
                false,
                true,
                n,
                g,
                h,
                1.0,
                self.hc.at(s * nh),
                whc.data.view(),
                1.0,
                self.gates.at_mut(s * ng),
            );
            let (before, after) = self.c.split_at_mut(s + 1);
            be.lstm_unit_forward(
                n,
                h,
                before[s].view(),
                self.gates.at(s * ng),
                cont_s,
                after[0].view_mut(),
                top.data.at_mut(s * nh),
            );
        }
        if self.cfg.expose_hidden {
            let ([top], [h_t, c_t]) = io.split([Slot::T(0)], [Slot::T(1), Slot::T(2)])?;
            be.copy(nh, top.data.at((t - 1) * nh), h_t.data.view_mut());
            be.copy(nh, self.c[t].view(), c_t.data.view_mut());
        } else {
            let h_last = io.top(0).data.at((t - 1) * nh);
            be.copy(nh, h_last, self.carry.bufs[0].view_mut());
            be.copy(nh, self.c[t].view(), self.carry.bufs[1].view_mut());
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
        let (g, m, nh) = (4 * h, t * n, n * h);
        let ng = n * g;
        let wh = d.recur_param();
        // Backpropagation through time. The final cell state has no
        // gradient (Caffe zeroes it: nothing crosses batches).
        {
            let [top, cont, whc] = [Slot::T(0), Slot::B(1), Slot::P(wh)].map(|s| io.get(s));
            be.set(nh, 0.0, self.dh.view_mut());
            be.set(nh, 0.0, self.dc[0].view_mut());
            for s in (0..t).rev() {
                // dh_s = top diff + what step s+1 sent back through W_hc.
                be.axpy(nh, 1.0, top.diff.at(s * nh), self.dh.view_mut());
                let [dc_in, dc_out] = &mut self.dc;
                be.lstm_unit_backward(
                    n,
                    h,
                    self.c[s].view(),
                    self.gates.at(s * ng),
                    cont.data.at(s * n),
                    self.c[s + 1].view(),
                    dc_in.view(),
                    self.dh.view(),
                    dc_out.view_mut(),
                    self.dgates.at_mut(s * ng),
                );
                self.dc.swap(0, 1);
                if s > 0 {
                    // dh_{s−1} = cont_s · (dgate_s · W_hc)
                    be.gemm(
                        false,
                        false,
                        n,
                        h,
                        g,
                        1.0,
                        self.dgates.at(s * ng),
                        whc.data.view(),
                        0.0,
                        self.tmp.view_mut(),
                    );
                    let cont_s = cont.data.at(s * n);
                    be.scale_rows(n, h, cont_s, self.tmp.view(), 0.0, self.dh.view_mut());
                }
            }
        }
        let dgates = self.dgates.view();
        if io.param_propagate_down(wh) {
            let w = io.param_mut(wh);
            be.gemm(
                true,
                false,
                g,
                h,
                m,
                1.0,
                dgates,
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
                g,
                k,
                m,
                1.0,
                dgates,
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
                g,
                1.0,
                dgates,
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
                g,
                1.0,
                dgates,
                w.data.view(),
                0.0,
                x.diff.view_mut(),
            );
        }
        if d.static_input {
            let pd_static = propagate_down.get(2).copied().unwrap_or(false);
            if io.param_propagate_down(2) || pd_static {
                // The static contribution entered every step.
                be.copy(ng, dgates, self.dstatic.view_mut());
                for s in 1..t {
                    be.axpy(ng, 1.0, self.dgates.at(s * ng), self.dstatic.view_mut());
                }
            }
            let k = d.static_dim;
            if io.param_propagate_down(2) {
                let ([xs], [w]) = io.split([Slot::B(2)], [Slot::P(2)])?;
                let ds = self.dstatic.view();
                be.gemm(
                    true,
                    false,
                    g,
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
                    g,
                    1.0,
                    ds,
                    w.data.view(),
                    0.0,
                    xs.diff.view_mut(),
                );
            }
        }
        // Caffe shares only the data of the exposed initial states with the
        // unrolled net: their gradient is zero.
        for i in 0..self.cfg.num_exposed() {
            let b = d.hidden_bottom(i);
            if propagate_down.get(b).copied().unwrap_or(false) {
                be.set(nh, 0.0, io.bottom_mut(b).diff.view_mut());
            }
        }
        Ok(())
    }
}
