//! `PoolOps` on the GPU: Caffe's pooling_layer.cu kernels (`kernels/pool.cu`),
//! one thread per output value (forward) or per input value (backward,
//! gathering from the windows that cover it, so no atomics and a fixed
//! summation order: the windows in row-major order, as the CPU backend adds
//! them). Values, masks and sums are the CPU backend's bit for bit (same
//! comparisons, same additions in the same order, IEEE division).
use super::math::{elementwise, CudaBackend, KArg};
use super::memory::CdPtr;
use crate::backend::pool::PoolGeometry;
use crate::backend::{PoolOps, View, ViewMut};

/// The geometry kernels index with 32-bit ints (cheap division): at most
/// this many threads per launch.
const MAX_THREADS: usize = i32::MAX as usize;

/// `[start, start + count)` ranges of `items` such that each range's
/// `count · per_item` threads fit one 32-bit-indexed launch. One item must
/// fit on its own (a plane or image of 2^31 values would be 8 GiB).
pub(crate) fn chunks(items: usize, per_item: usize) -> impl Iterator<Item = (usize, usize)> {
    assert!(
        per_item <= MAX_THREADS,
        "one plane of {per_item} values exceeds the GPU kernels' 32-bit index"
    );
    let step = (MAX_THREADS / per_item.max(1)).max(1);
    (0..items)
        .step_by(step)
        .map(move |s| (s, step.min(items - s)))
}

/// `p` advanced by `off` f32 values.
pub(crate) fn at(p: CdPtr, off: usize) -> KArg {
    KArg::Ptr(p + (off * std::mem::size_of::<f32>()) as CdPtr)
}

pub(crate) fn i32k(v: usize) -> KArg {
    KArg::I32(i32::try_from(v).expect("a geometry value exceeds the GPU kernels' int range"))
}

/// The geometry arguments every pool kernel takes after its data pointers:
/// height, width, pooled_h, pooled_w, kernel_h, kernel_w, stride_h,
/// stride_w, pad_h, pad_w.
fn geometry(g: &PoolGeometry) -> [KArg; 10] {
    [
        i32k(g.height),
        i32k(g.width),
        i32k(g.pooled_height),
        i32k(g.pooled_width),
        i32k(g.kernel_h),
        i32k(g.kernel_w),
        i32k(g.stride_h),
        i32k(g.stride_w),
        i32k(g.pad_h),
        i32k(g.pad_w),
    ]
}

impl PoolOps for CudaBackend {
    fn max_pool_forward(
        &self,
        g: &PoolGeometry,
        planes: usize,
        x: View,
        y: ViewMut,
        mask: ViewMut,
    ) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let (xp, yp, mp) = (self.raw(&x), self.raw_mut(&y), self.raw_mut(&mask));
        for (p0, np) in chunks(planes, op) {
            let n = np * op;
            if n == 0 {
                continue;
            }
            // rc_max_pool_fwd(n, x, <geometry>, y, mask)
            let mut args = vec![i32k(n), at(xp, p0 * ip)];
            args.extend(geometry(g));
            args.extend([at(yp, p0 * op), at(mp, p0 * op)]);
            self.launch("rc_max_pool_fwd", elementwise(n), &args);
        }
    }

    fn max_pool_backward(
        &self,
        g: &PoolGeometry,
        planes: usize,
        dy: View,
        mask: View,
        dx: ViewMut,
    ) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let (dyp, mp, dxp) = (self.raw(&dy), self.raw(&mask), self.raw_mut(&dx));
        for (p0, np) in chunks(planes, ip) {
            let n = np * ip;
            if n == 0 {
                continue;
            }
            // rc_max_pool_bwd(n, dy, mask, <geometry>, dx): every dx value
            // is written (zero where no window chose it).
            let mut args = vec![i32k(n), at(dyp, p0 * op), at(mp, p0 * op)];
            args.extend(geometry(g));
            args.push(at(dxp, p0 * ip));
            self.launch("rc_max_pool_bwd", elementwise(n), &args);
        }
    }

    fn ave_pool_forward(&self, g: &PoolGeometry, planes: usize, x: View, y: ViewMut) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let (xp, yp) = (self.raw(&x), self.raw_mut(&y));
        for (p0, np) in chunks(planes, op) {
            let n = np * op;
            if n == 0 {
                continue;
            }
            // rc_ave_pool_fwd(n, x, <geometry>, y)
            let mut args = vec![i32k(n), at(xp, p0 * ip)];
            args.extend(geometry(g));
            args.push(at(yp, p0 * op));
            self.launch("rc_ave_pool_fwd", elementwise(n), &args);
        }
    }

    fn ave_pool_backward(&self, g: &PoolGeometry, planes: usize, dy: View, dx: ViewMut) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let (dyp, dxp) = (self.raw(&dy), self.raw_mut(&dx));
        for (p0, np) in chunks(planes, ip) {
            let n = np * ip;
            if n == 0 {
                continue;
            }
            // rc_ave_pool_bwd(n, dy, <geometry>, dx): overwrites dx.
            let mut args = vec![i32k(n), at(dyp, p0 * op)];
            args.extend(geometry(g));
            args.push(at(dxp, p0 * ip));
            self.launch("rc_ave_pool_bwd", elementwise(n), &args);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cover_every_item_within_the_int_range() {
        let c: Vec<_> = chunks(10, 3).collect();
        assert_eq!(c, vec![(0, 10)]);
        let per = (1usize << 30) + 1;
        let c: Vec<_> = chunks(5, per).collect();
        assert_eq!(c, vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]);
        let per = 1usize << 20;
        let c: Vec<_> = chunks(5000, per).collect();
        assert_eq!(c.iter().map(|&(_, n)| n).sum::<usize>(), 5000);
        assert!(c.iter().all(|&(_, n)| n * per <= i32::MAX as usize));
        assert!(c.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        assert_eq!(chunks(0, 7).count(), 0);
    }
}
