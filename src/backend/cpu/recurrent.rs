//! CPU RecurrentOps: Caffe's LSTMUnit loops, rayon across streams when a
//! step is large.
use rayon::prelude::*;

use super::{CpuBackend, PAR_MIN};
use crate::backend::{RecurrentOps, View, ViewMut};

/// Caffe's `sigmoid` and its `tanh` (written through the sigmoid), kept
/// exactly so the LSTM matches Caffe's rounding.
#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[inline]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// The activated gates of one unit: `(i, f, o, g)`.
#[inline]
fn activate(x: &[f32], h: usize, d: usize, cont: f32) -> (f32, f32, f32, f32) {
    let i = sigmoid(x[d]);
    let f = if cont == 0.0 {
        0.0
    } else {
        cont * sigmoid(x[h + d])
    };
    let o = sigmoid(x[2 * h + d]);
    let g = tanh(x[3 * h + d]);
    (i, f, o, g)
}

/// Streams per rayon task, so each task has at least PAR_MIN/… work.
fn chunk_rows(per_row: usize) -> usize {
    (PAR_MIN / per_row.max(1)).max(1)
}

impl RecurrentOps for CpuBackend {
    fn lstm_unit_forward(
        &self,
        n: usize,
        h: usize,
        c_prev: View,
        gates: View,
        cont: View,
        mut c: ViewMut,
        mut h_out: ViewMut,
    ) {
        if n == 0 || h == 0 {
            return;
        }
        let (c_prev, x, cont) = (c_prev.host(n * h), gates.host(n * 4 * h), cont.host(n));
        let (c, hv) = (c.host(n * h), h_out.host(n * h));
        let row = |r: usize, c: &mut [f32], hv: &mut [f32]| {
            let x = &x[r * 4 * h..(r + 1) * 4 * h];
            let cp = &c_prev[r * h..(r + 1) * h];
            for d in 0..h {
                let (i, f, o, g) = activate(x, h, d, cont[r]);
                let cv = f * cp[d] + i * g;
                c[d] = cv;
                hv[d] = o * tanh(cv);
            }
        };
        if n * h >= PAR_MIN && n > 1 {
            let k = chunk_rows(h);
            c.par_chunks_mut(k * h)
                .zip(hv.par_chunks_mut(k * h))
                .enumerate()
                .for_each(|(ci, (c, hv))| {
                    for (j, (c, hv)) in c.chunks_mut(h).zip(hv.chunks_mut(h)).enumerate() {
                        row(ci * k + j, c, hv);
                    }
                });
        } else {
            for (r, (c, hv)) in c.chunks_mut(h).zip(hv.chunks_mut(h)).enumerate() {
                row(r, c, hv);
            }
        }
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
        mut dc_prev: ViewMut,
        mut dgates: ViewMut,
    ) {
        if n == 0 || h == 0 {
            return;
        }
        let (c_prev, x, cont) = (c_prev.host(n * h), gates.host(n * 4 * h), cont.host(n));
        let (c, dc, dh) = (c.host(n * h), dc.host(n * h), dh.host(n * h));
        let (dcp, dx) = (dc_prev.host(n * h), dgates.host(n * 4 * h));
        let row = |r: usize, dcp: &mut [f32], dx: &mut [f32]| {
            let x = &x[r * 4 * h..(r + 1) * 4 * h];
            let o_ = r * h;
            for d in 0..h {
                let (i, f, o, g) = activate(x, h, d, cont[r]);
                let cp = c_prev[o_ + d];
                let tanh_c = tanh(c[o_ + d]);
                let dht = dh[o_ + d];
                let c_term = dc[o_ + d] + dht * o * (1.0 - tanh_c * tanh_c);
                dcp[d] = c_term * f;
                dx[d] = c_term * g * i * (1.0 - i);
                dx[h + d] = c_term * cp * f * (1.0 - f);
                dx[2 * h + d] = dht * tanh_c * o * (1.0 - o);
                dx[3 * h + d] = c_term * i * (1.0 - g * g);
            }
        };
        if n * h >= PAR_MIN && n > 1 {
            let k = chunk_rows(h);
            dcp.par_chunks_mut(k * h)
                .zip(dx.par_chunks_mut(k * 4 * h))
                .enumerate()
                .for_each(|(ci, (dcp, dx))| {
                    for (j, (dcp, dx)) in dcp.chunks_mut(h).zip(dx.chunks_mut(4 * h)).enumerate() {
                        row(ci * k + j, dcp, dx);
                    }
                });
        } else {
            for (r, (dcp, dx)) in dcp.chunks_mut(h).zip(dx.chunks_mut(4 * h)).enumerate() {
                row(r, dcp, dx);
            }
        }
    }

    fn scale_rows(&self, rows: usize, cols: usize, s: View, x: View, beta: f32, mut y: ViewMut) {
        if rows == 0 || cols == 0 {
            return;
        }
        let (s, x, y) = (s.host(rows), x.host(rows * cols), y.host(rows * cols));
        let row = |(r, (y, x)): (usize, (&mut [f32], &[f32]))| {
            let sv = s[r];
            if beta == 0.0 {
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = sv * x);
            } else {
                y.iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = sv * x + beta * *y);
            }
        };
        if rows * cols >= PAR_MIN && rows > 1 {
            y.par_chunks_mut(cols)
                .zip(x.par_chunks(cols))
                .enumerate()
                .for_each(row);
        } else {
            y.chunks_mut(cols)
                .zip(x.chunks(cols))
                .enumerate()
                .for_each(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Buffer;

    #[test]
    fn unit_matches_the_formulas() {
        let be = CpuBackend::new();
        let (n, h) = (2, 2);
        let gates: Vec<f32> = (0..n * 4 * h).map(|i| i as f32 * 0.3 - 1.0).collect();
        let c_prev = Buffer::from_vec(vec![0.5, -0.25, 1.0, 2.0]);
        let gb = Buffer::from_vec(gates.clone());
        let cont = Buffer::from_vec(vec![1.0, 0.0]);
        let (mut c, mut hv) = (Buffer::host_zeros(n * h), Buffer::host_zeros(n * h));
        be.lstm_unit_forward(
            n,
            h,
            c_prev.view(),
            gb.view(),
            cont.view(),
            c.view_mut(),
            hv.view_mut(),
        );
        let sg = |x: f32| 1.0 / (1.0 + (-x as f64).exp());
        let cp = [0.5f64, -0.25, 1.0, 2.0];
        for r in 0..n {
            for d in 0..h {
                let x = |k: usize| gates[r * 4 * h + k * h + d];
                let (i, o, g) = (sg(x(0)), sg(x(2)), (x(3) as f64).tanh());
                let f = if r == 0 { sg(x(1)) } else { 0.0 };
                let cv = f * cp[r * h + d] + i * g;
                let got_c = c.host().unwrap()[r * h + d] as f64;
                let got_h = hv.host().unwrap()[r * h + d] as f64;
                assert!((got_c - cv).abs() < 1e-6, "c[{r},{d}]");
                assert!((got_h - o * cv.tanh()).abs() < 1e-6, "h[{r},{d}]");
            }
        }
    }

    /// The rayon paths (large steps) give the same values as one stream at
    /// a time.
    #[test]
    fn parallel_paths_match_row_by_row() {
        let be = CpuBackend::new();
        let (n, h) = (96, 512);
        let val = |i: usize| ((i * 7919) % 1000) as f32 / 250.0 - 2.0;
        let buf =
            |len: usize, salt: usize| Buffer::from_vec((0..len).map(|i| val(i + salt)).collect());
        let (cp, g) = (buf(n * h, 1), buf(n * 4 * h, 2));
        let cont = Buffer::from_vec((0..n).map(|i| (i % 3 != 0) as u8 as f32).collect());
        let (dc, dh) = (buf(n * h, 3), buf(n * h, 4));
        let (mut c, mut hv) = (Buffer::host_zeros(n * h), Buffer::host_zeros(n * h));
        be.lstm_unit_forward(
            n,
            h,
            cp.view(),
            g.view(),
            cont.view(),
            c.view_mut(),
            hv.view_mut(),
        );
        let (mut dcp, mut dg) = (Buffer::host_zeros(n * h), Buffer::host_zeros(n * 4 * h));
        be.lstm_unit_backward(
            n,
            h,
            cp.view(),
            g.view(),
            cont.view(),
            c.view(),
            dc.view(),
            dh.view(),
            dcp.view_mut(),
            dg.view_mut(),
        );
        let mut y = Buffer::host_zeros(n * h);
        be.scale_rows(n, h, cont.view(), dc.view(), 0.0, y.view_mut());
        for r in 0..n {
            let (mut c1, mut h1) = (Buffer::host_zeros(h), Buffer::host_zeros(h));
            let (o, og) = (r * h, r * 4 * h);
            be.lstm_unit_forward(
                1,
                h,
                cp.at(o),
                g.at(og),
                cont.at(r),
                c1.view_mut(),
                h1.view_mut(),
            );
            assert_eq!(
                c1.host().unwrap(),
                &c.host().unwrap()[o..o + h],
                "c row {r}"
            );
            assert_eq!(
                h1.host().unwrap(),
                &hv.host().unwrap()[o..o + h],
                "h row {r}"
            );
            let (mut dcp1, mut dg1) = (Buffer::host_zeros(h), Buffer::host_zeros(4 * h));
            be.lstm_unit_backward(
                1,
                h,
                cp.at(o),
                g.at(og),
                cont.at(r),
                c.at(o),
                dc.at(o),
                dh.at(o),
                dcp1.view_mut(),
                dg1.view_mut(),
            );
            assert_eq!(
                dcp1.host().unwrap(),
                &dcp.host().unwrap()[o..o + h],
                "dc_prev row {r}"
            );
            assert_eq!(
                dg1.host().unwrap(),
                &dg.host().unwrap()[og..og + 4 * h],
                "dgates row {r}"
            );
            let s = cont.host().unwrap()[r];
            let want: Vec<f32> = dc.host().unwrap()[o..o + h].iter().map(|v| s * v).collect();
            assert_eq!(
                &y.host().unwrap()[o..o + h],
                want.as_slice(),
                "scale row {r}"
            );
        }
    }

    #[test]
    fn scale_rows_with_and_without_beta() {
        let be = CpuBackend::new();
        let s = Buffer::from_vec(vec![2.0, 0.0]);
        let x = Buffer::from_vec(vec![1.0, 2.0, 3.0, 4.0]);
        let mut y = Buffer::from_vec(vec![f32::NAN; 4]);
        be.scale_rows(2, 2, s.view(), x.view(), 0.0, y.view_mut());
        assert_eq!(y.host().unwrap(), &[2.0, 4.0, 0.0, 0.0]);
        be.scale_rows(2, 2, s.view(), x.view(), 1.0, y.view_mut());
        assert_eq!(y.host().unwrap(), &[4.0, 8.0, 0.0, 0.0]);
    }
}
