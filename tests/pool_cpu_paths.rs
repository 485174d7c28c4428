//! The CPU pooling kernels against Caffe's pooling loops written out
//! plainly (pooling_layer.cpp, Forward_cpu/Backward_cpu), on geometries
//! that reach both the vectorised interior columns and the clipped edge
//! windows: padding, ceil-mode overhang, strides 1–3, kernels 1–4, and
//! values with ties, −∞ and NaN.
use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::pool::PoolGeometry;
use rcaffe::backend::{Buffer, Math, PoolOps};

/// Caffe's pooled size with its clipping rule (ceil mode).
fn pooled(size: usize, k: usize, s: usize, p: usize) -> usize {
    let mut o = (size + 2 * p - k).div_ceil(s) + 1;
    if p > 0 && (o - 1) * s >= size + p {
        o -= 1;
    }
    o
}

fn geom(
    h: usize,
    w: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> PoolGeometry {
    PoolGeometry {
        height: h,
        width: w,
        pooled_height: pooled(h, k.0, s.0, p.0),
        pooled_width: pooled(w, k.1, s.1, p.1),
        kernel_h: k.0,
        kernel_w: k.1,
        stride_h: s.0,
        stride_w: s.1,
        pad_h: p.0,
        pad_w: p.1,
    }
}

/// (hstart, hend, pool_size) exactly as Caffe computes them (the pool size
/// is negative for a window that starts past the image).
fn caffe_window(o: usize, s: usize, p: usize, k: usize, size: usize) -> (i64, i64, i64) {
    let start = (o * s) as i64 - p as i64;
    let end = (start + k as i64).min((size + p) as i64);
    let extent = end - start;
    (start.max(0), end.min(size as i64), extent)
}

fn reference(g: &PoolGeometry, planes: usize, x: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (ip, op) = (g.height * g.width, g.pooled_height * g.pooled_width);
    let (mut y, mut mask, mut ave) = (
        vec![0.0; planes * op],
        vec![0.0; planes * op],
        vec![0.0; planes * op],
    );
    for n in 0..planes {
        for ph in 0..g.pooled_height {
            let (hs, he, eh) = caffe_window(ph, g.stride_h, g.pad_h, g.kernel_h, g.height);
            for pw in 0..g.pooled_width {
                let (ws, we, ew) = caffe_window(pw, g.stride_w, g.pad_w, g.kernel_w, g.width);
                let (mut best, mut arg, mut sum) = (-f32::MAX, -1i64, 0f32);
                for h in hs..he {
                    for w in ws..we {
                        let (h, w) = (h as usize, w as usize);
                        let v = x[n * ip + h * g.width + w];
                        if v > best {
                            best = v;
                            arg = (h * g.width + w) as i64;
                        }
                        sum += v;
                    }
                }
                let o = n * op + ph * g.pooled_width + pw;
                y[o] = best;
                mask[o] = arg as f32;
                ave[o] = sum / (eh * ew) as f32;
            }
        }
    }
    (y, mask, ave)
}

fn same(what: &str, g: &PoolGeometry, got: &[f32], want: &[f32]) {
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{what} at {i}: {a} vs {b} for {g:?}"
        );
    }
}

#[test]
fn pooling_matches_caffe_loops() {
    let be = CpuBackend::new();
    let mut seed = 12345u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases = vec![
        geom(24, 24, (2, 2), (2, 2), (0, 0)),
        geom(32, 32, (3, 3), (2, 2), (0, 0)),
        geom(16, 16, (3, 3), (2, 2), (1, 1)),
        geom(7, 9, (3, 2), (1, 3), (1, 1)),
        geom(5, 5, (1, 1), (1, 1), (0, 0)),
        geom(6, 11, (4, 4), (3, 3), (2, 2)),
        geom(3, 3, (3, 3), (1, 1), (0, 0)),
        // Stride > kernel without padding: the last window starts past the
        // image (empty: max −FLT_MAX, mask −1, AVE −0 as in Caffe).
        geom(5, 5, (1, 1), (3, 3), (0, 0)),
    ];
    for _ in 0..30 {
        // Caffe requires pad < kernel.
        let (kh, kw) = (1 + next() as usize % 4, 1 + next() as usize % 4);
        let (sh, sw) = (1 + next() as usize % 3, 1 + next() as usize % 3);
        let (ph, pw) = (next() as usize % kh, next() as usize % kw);
        let (h, w) = (kh + next() as usize % 12, kw + next() as usize % 12);
        cases.push(geom(h, w, (kh, kw), (sh, sw), (ph, pw)));
    }
    for g in cases {
        let planes = 3;
        let n = planes * g.height * g.width;
        // Few distinct values (ties), some −∞ and NaN.
        let x: Vec<f32> = (0..n)
            .map(|_| match next() % 23 {
                0 => f32::NEG_INFINITY,
                1 => f32::NAN,
                r => (r % 7) as f32 - 3.0,
            })
            .collect();
        let (y_ref, mask_ref, ave_ref) = reference(&g, planes, &x);
        let op = planes * g.pooled_height * g.pooled_width;
        let xb = Buffer::from_vec(x.clone());
        let (mut y, mut mask, mut ave) = (be.alloc(op), be.alloc(op), be.alloc(op));
        be.max_pool_forward(&g, planes, xb.view(), y.view_mut(), mask.view_mut());
        same("max", &g, &y.read(op), &y_ref);
        same("mask", &g, &mask.read(op), &mask_ref);
        // AVE on finite values only (∞ − ∞ and NaN carry no order information).
        let xf: Vec<f32> = x
            .iter()
            .map(|v| if v.is_finite() { *v } else { 0.5 })
            .collect();
        let (_, _, ave_ref) = if x.iter().all(|v| v.is_finite()) {
            (vec![], vec![], ave_ref)
        } else {
            reference(&g, planes, &xf)
        };
        be.ave_pool_forward(&g, planes, Buffer::from_vec(xf).view(), ave.view_mut());
        same("ave", &g, &ave.read(op), &ave_ref);
        // Backward: MAX routes dy to the mask, AVE spreads dy / pool_size,
        // outputs in order (Caffe's accumulation order).
        let dy: Vec<f32> = (0..op).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
        let (ip, opp) = (g.height * g.width, g.pooled_height * g.pooled_width);
        let (mut dx_max, mut dx_ave) = (vec![0f32; n], vec![0f32; n]);
        for p in 0..planes {
            for ph in 0..g.pooled_height {
                let (hs, he, eh) = caffe_window(ph, g.stride_h, g.pad_h, g.kernel_h, g.height);
                for pw in 0..g.pooled_width {
                    let (ws, we, ew) = caffe_window(pw, g.stride_w, g.pad_w, g.kernel_w, g.width);
                    let o = p * opp + ph * g.pooled_width + pw;
                    if mask_ref[o] >= 0.0 {
                        dx_max[p * ip + mask_ref[o] as usize] += dy[o];
                    }
                    let d = dy[o] / (eh * ew) as f32;
                    for h in hs..he {
                        for w in ws..we {
                            dx_ave[p * ip + h as usize * g.width + w as usize] += d;
                        }
                    }
                }
            }
        }
        let dyb = Buffer::from_vec(dy);
        let mut dx = Buffer::from_vec(vec![f32::NAN; n]);
        be.max_pool_backward(&g, planes, dyb.view(), mask.view(), dx.view_mut());
        same("max backward", &g, &dx.read(n), &dx_max);
        be.ave_pool_backward(&g, planes, dyb.view(), dx.view_mut());
        same("ave backward", &g, &dx.read(n), &dx_ave);
    }
}
