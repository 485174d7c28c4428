//! CPU EltwiseOps.
use rayon::prelude::*;

use super::{CpuBackend, PAR_MIN};
use crate::backend::{EltwiseOps, View, ViewMut};

impl EltwiseOps for CpuBackend {
    fn eltwise_max_forward(
        &self,
        n: usize,
        index: usize,
        x: View,
        mut y: ViewMut,
        mut mask: ViewMut,
    ) {
        let (x, y, mask) = (x.host(n), y.host(n), mask.host(n));
        let idx = index as f32;
        let step = |((y, m), &x): ((&mut f32, &mut f32), &f32)| {
            // Bottom 1 wins unless bottom 0 is strictly greater (NaN included).
            let take = if index == 1 {
                *y <= x || y.is_nan() || x.is_nan()
            } else {
                x > *y
            };
            if take {
                *y = x;
                *m = idx;
            }
        };
        if n >= PAR_MIN {
            y.par_iter_mut()
                .zip(mask.par_iter_mut())
                .zip(x.par_iter())
                .for_each(step);
        } else {
            y.iter_mut()
                .zip(mask.iter_mut())
                .zip(x.iter())
                .for_each(step);
        }
    }

    fn eltwise_max_backward(&self, n: usize, index: usize, dy: View, mask: View, mut dx: ViewMut) {
        let (dy, mask, dx) = (dy.host(n), mask.host(n), dx.host(n));
        let idx = index as f32;
        let step = |((d, &m), &g): ((&mut f32, &f32), &f32)| *d = if m == idx { g } else { 0.0 };
        if n >= PAR_MIN {
            dx.par_iter_mut()
                .zip(mask.par_iter())
                .zip(dy.par_iter())
                .for_each(step);
        } else {
            dx.iter_mut().zip(mask.iter()).zip(dy.iter()).for_each(step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Buffer;

    #[test]
    fn max_ties_follow_caffe() {
        let be = CpuBackend::new();
        let b0 = [1.0f32, 2.0, 3.0, 0.0];
        let b1 = [1.0f32, 1.0, 4.0, 0.0];
        let b2 = [0.0f32, 2.0, 5.0, 0.0];
        let mut y = Buffer::from_vec(b0.to_vec());
        let mut m = Buffer::host_zeros(4);
        for (i, b) in [&b1, &b2].iter().enumerate() {
            let x = Buffer::from_vec(b.to_vec());
            be.eltwise_max_forward(4, i + 1, x.view(), y.view_mut(), m.view_mut());
        }
        // Tie 0/1 goes to bottom 1; a later tie keeps the earlier winner.
        assert_eq!(y.read(4), vec![1.0, 2.0, 5.0, 0.0]);
        assert_eq!(m.read(4), vec![1.0, 0.0, 2.0, 1.0]);
        let dy = Buffer::from_vec(vec![10.0, 20.0, 30.0, 40.0]);
        let mut dx = Buffer::from_vec(vec![9.0; 4]);
        be.eltwise_max_backward(4, 1, dy.view(), m.view(), dx.view_mut());
        assert_eq!(dx.read(4), vec![10.0, 0.0, 0.0, 40.0]);
    }
}
