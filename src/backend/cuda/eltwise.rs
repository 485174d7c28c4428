//! `EltwiseOps` on the GPU (`kernels/eltwise.cu`): Eltwise MAX folded one
//! bottom at a time with the winner mask, under the trait's (Caffe CPU's)
//! tie rule, so masks match the CPU backend exactly.
use super::math::{elementwise, ll, CudaBackend, KArg};
use crate::backend::{EltwiseOps, View, ViewMut};

fn index_arg(index: usize) -> KArg {
    // Bottom indices are small (a layer's bottom count); the mask stores
    // them as floats, exact far beyond any real count.
    KArg::I32(i32::try_from(index).expect("Eltwise bottom index exceeds int range"))
}

impl EltwiseOps for CudaBackend {
    fn eltwise_max_forward(&self, n: usize, index: usize, x: View, y: ViewMut, mask: ViewMut) {
        if n == 0 {
            return;
        }
        // rc_eltwise_max_fwd(n, index, x, y, mask)
        let args = [
            ll(n),
            index_arg(index),
            self.ptr(&x),
            self.ptr_mut(&y),
            self.ptr_mut(&mask),
        ];
        self.launch("rc_eltwise_max_fwd", elementwise(n), &args);
    }

    fn eltwise_max_backward(&self, n: usize, index: usize, dy: View, mask: View, dx: ViewMut) {
        if n == 0 {
            return;
        }
        // rc_eltwise_max_bwd(n, index, dy, mask, dx)
        let args = [
            ll(n),
            index_arg(index),
            self.ptr(&dy),
            self.ptr(&mask),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_eltwise_max_bwd", elementwise(n), &args);
    }
}
