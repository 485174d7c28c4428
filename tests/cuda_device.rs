//! On a GPU: the CUDA backend against the CPU backend. Opens GPU 0 (every
//! kernel family compiled by NVRTC for it and loaded by the driver), checks
//! Caffe's device properties, then every `Math` operation on random data
//! (‖gpu − cpu‖ / ‖cpu‖ ≤ 1e-5; 1e-4 for GEMM/GEMV, whose cuBLAS summation
//! order differs from the CPU's). Every `Unary` variant forward and
//! backward, in place and not.
//!
//! Without a usable GPU these tests print why and pass, unless
//! RCAFFE_REQUIRE_CUDA=1 (scripts/gpu-check.sh sets it), which makes that a
//! failure.
#![cfg(feature = "cuda")]

use rcaffe::testing::backends::{assert_close, cuda_backend, test_data};

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::cuda::{CudaBackend, CudaDevice};
use rcaffe::backend::{Binary, Buffer, Location, Math, Unary};

fn up(be: &CudaBackend, v: &[f32]) -> Buffer {
    let mut b = be.alloc(v.len());
    b.write(v);
    b
}

#[test]
fn device_opens_with_caffe_properties() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let p = be.dev.properties().unwrap();
    assert!(!p.name.is_empty());
    assert!(p.major >= 7, "compute capability {}.{}", p.major, p.minor);
    assert!(p.total_global_mem > 1 << 30);
    assert_eq!(p.warp_size, 32);
    for l in p.caffe_lines() {
        eprintln!("{l}");
    }
    for f in &be.dev.libs {
        eprintln!("{}", f.describe());
    }
    assert!(CudaDevice::open(0).is_ok());
}

#[test]
fn buffers_round_trip_grow_and_clone() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let v = test_data(1000, 1);
    let mut b = up(&be, &v);
    assert_eq!(b.location(), Location::Device(0));
    assert!(b.host().is_none());
    assert_eq!(b.read(1000), v);
    b.ensure_len(5000);
    let r = b.read(5000);
    assert_eq!(&r[..1000], &v[..]);
    assert!(r[1000..].iter().all(|&x| x == 0.0));
    let c = b.clone();
    b.write(&[7.0]);
    assert_eq!(c.read(1)[0], v[0]);
    assert_eq!(b.read(1)[0], 7.0);
    let e = be.alloc(0);
    assert_eq!(e.len(), 0);
    be.sync().unwrap();
}

#[test]
fn math_matches_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // Sizes that are not multiples of the block size, one above the
    // reduction grid cap, and offsets (views into the middle of buffers).
    for &n in &[1usize, 257, 70_001, 1 << 20] {
        let x = test_data(n + 5, 2);
        let y = test_data(n + 5, 3);
        let (gx, gy) = (up(&be, &x), up(&be, &y));
        let (cx, cy) = (Buffer::from_vec(x.clone()), Buffer::from_vec(y.clone()));
        let off = 5;
        macro_rules! both {
            ($name:expr, |$b:ident, $xv:ident, $yv:ident| $body:expr) => {{
                let mut g = gy.clone();
                let mut c = cy.clone();
                {
                    let $b = &be;
                    let $xv = gx.at(off);
                    let $yv = g.at_mut(off);
                    $body;
                }
                {
                    let $b = &cpu;
                    let $xv = cx.at(off);
                    let $yv = c.at_mut(off);
                    $body;
                }
                assert_close(
                    &format!("{} n={n}", $name),
                    &g.read(n + off),
                    &c.read(n + off),
                    1e-5,
                );
            }};
        }
        both!("axpy", |b, x, y| b.axpy(n, 0.7, x, y));
        both!("axpby", |b, x, y| b.axpby(n, 0.7, x, -1.3, y));
        both!("scal", |b, _x, y| b.scal(n, -2.5, y));
        both!("set", |b, _x, y| b.set(n, 3.25, y));
        both!("add_scalar", |b, _x, y| b.add_scalar(n, 0.5, y));
        both!("copy", |b, x, y| b.copy(n, x, y));
        for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Max] {
            both!(format!("{op:?}"), |b, x, y| b.binary_inplace(op, n, x, y));
        }
        // Div away from zero divisors.
        let nz: Vec<f32> = y.iter().map(|v| v.abs() + 0.5).collect();
        let (gd, cd) = (up(&be, &nz), Buffer::from_vec(nz.clone()));
        let mut g = be.alloc(n);
        let mut c = cpu.alloc(n);
        be.binary(Binary::Div, n, gx.at(off), gd.at(off), g.view_mut());
        cpu.binary(Binary::Div, n, cx.at(off), cd.at(off), c.view_mut());
        assert_close("div", &g.read(n), &c.read(n), 1e-6);
        // Reductions accumulate in double on the GPU: compare with the
        // exact sum (a float running sum, as the CPU backend's, is itself
        // off by ~1e-4 relative at a million terms of mixed sign).
        let (xs, ys) = (&x[off..off + n], &y[off..off + n]);
        let exact: f64 = xs
            .iter()
            .zip(ys)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let scale: f64 = xs
            .iter()
            .zip(ys)
            .map(|(a, b)| (f64::from(*a) * f64::from(*b)).abs())
            .sum();
        let got = f64::from(be.dot(n, gx.at(off), gy.at(off)));
        // 1e-6·Σ|xy| covers the final rounding to f32 of a sum of size ≤ Σ|xy|.
        assert!(
            (got - exact).abs() <= 1e-6 * scale,
            "dot n={n}: {got} vs {exact}"
        );
        let exact: f64 = xs.iter().map(|a| f64::from(*a).abs()).sum();
        let got = f64::from(be.asum(n, gx.at(off)));
        assert!(
            (got - exact).abs() <= 1e-6 * exact,
            "asum n={n}: {got} vs {exact}"
        );
        be.sync().unwrap();
    }
}

#[test]
fn gemm_and_gemv_match_for_all_transposes() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for &(m, n, k) in &[(1, 1, 1), (5, 7, 3), (64, 33, 129), (300, 200, 100)] {
        let a = test_data(m * k + 3, 4);
        let b = test_data(k * n + 3, 5);
        let c0 = test_data(m * n, 6);
        let (ga, gb) = (up(&be, &a), up(&be, &b));
        let (ca, cb) = (Buffer::from_vec(a.clone()), Buffer::from_vec(b.clone()));
        for ta in [false, true] {
            for tb in [false, true] {
                for beta in [0.0, 0.5] {
                    let mut gc = up(&be, &c0);
                    let mut cc = Buffer::from_vec(c0.clone());
                    be.gemm(
                        ta,
                        tb,
                        m,
                        n,
                        k,
                        1.5,
                        ga.at(3),
                        gb.at(3),
                        beta,
                        gc.view_mut(),
                    );
                    cpu.gemm(
                        ta,
                        tb,
                        m,
                        n,
                        k,
                        1.5,
                        ca.at(3),
                        cb.at(3),
                        beta,
                        cc.view_mut(),
                    );
                    assert_close(
                        &format!("gemm {m}x{n}x{k} ta={ta} tb={tb} beta={beta}"),
                        &gc.read(m * n),
                        &cc.read(m * n),
                        1e-4,
                    );
                }
            }
            // gemv on A (m×k): y = op(A)·x.
            let xl = if ta { m } else { k };
            let yl = if ta { k } else { m };
            let xv = test_data(xl, 7);
            let y0 = test_data(yl, 8);
            let (gx, cx) = (up(&be, &xv), Buffer::from_vec(xv.clone()));
            let mut gy = up(&be, &y0);
            let mut cy = Buffer::from_vec(y0.clone());
            be.gemv(ta, m, k, 0.8, ga.at(3), gx.view(), 0.3, gy.view_mut());
            cpu.gemv(ta, m, k, 0.8, ca.at(3), cx.view(), 0.3, cy.view_mut());
            assert_close(
                &format!("gemv {m}x{k} ta={ta}"),
                &gy.read(yl),
                &cy.read(yl),
                1e-4,
            );
        }
    }
    be.sync().unwrap();
}

#[test]
fn every_unary_matches_forward_and_backward() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let n = 10_007;
    let ops = [
        Unary::ReLU { slope: 0.0 },
        Unary::ReLU { slope: 0.1 },
        Unary::Sigmoid,
        Unary::TanH,
        Unary::ELU { alpha: 1.0 },
        Unary::AbsVal,
        Unary::BNLL,
        Unary::Power {
            power: 2.0,
            scale: 0.5,
            shift: 3.0,
        },
        Unary::Power {
            power: 0.5,
            scale: 1.0,
            shift: 3.0,
        },
        Unary::Exp {
            inner: 0.7,
            outer: 2.0,
        },
        Unary::Log {
            scale: 1.0,
            shift: 3.0,
            base_scale: 1.0 / 2f32.ln(),
            back_scale: 1.0 / 2f32.ln(),
        },
        Unary::Threshold { threshold: 0.2 },
        Unary::Clip {
            min: -0.5,
            max: 1.0,
        },
        Unary::Swish { beta: 1.5 },
        Unary::Sqrt,
    ];
    let raw = test_data(n, 9);
    for op in ops {
        // Sqrt and Log need positive inputs (shifted domains are fine).
        let x: Vec<f32> = match op {
            Unary::Sqrt => raw.iter().map(|v| v.abs() + 0.1).collect(),
            _ => raw.clone(),
        };
        let dy = test_data(n, 10);
        let (gx, cx) = (up(&be, &x), Buffer::from_vec(x.clone()));
        let (gdy, cdy) = (up(&be, &dy), Buffer::from_vec(dy.clone()));
        let mut gyb = be.alloc(n);
        let mut cyb = cpu.alloc(n);
        be.unary(op, n, gx.view(), gyb.view_mut());
        cpu.unary(op, n, cx.view(), cyb.view_mut());
        assert_close(&format!("{op:?} forward"), &gyb.read(n), &cyb.read(n), 1e-5);
        let mut gdx = be.alloc(n);
        let mut cdx = cpu.alloc(n);
        be.unary_grad(op, n, gx.view(), gyb.view(), gdy.view(), gdx.view_mut());
        cpu.unary_grad(op, n, cx.view(), cyb.view(), cdy.view(), cdx.view_mut());
        assert_close(
            &format!("{op:?} backward"),
            &gdx.read(n),
            &cdx.read(n),
            1e-5,
        );
        // In place: forward over x, backward from y with d = dy.
        let mut gin = up(&be, &x);
        let mut cin = Buffer::from_vec(x.clone());
        be.unary_inplace(op, n, gin.view_mut());
        cpu.unary_inplace(op, n, cin.view_mut());
        assert_close(
            &format!("{op:?} in place"),
            &gin.read(n),
            &cin.read(n),
            1e-5,
        );
        let mut gd = up(&be, &dy);
        let mut cd = Buffer::from_vec(dy.clone());
        be.unary_grad_inplace(op, n, gin.view(), gd.view_mut());
        cpu.unary_grad_inplace(op, n, cin.view(), cd.view_mut());
        assert_close(
            &format!("{op:?} backward in place"),
            &gd.read(n),
            &cd.read(n),
            1e-5,
        );
    }
    be.sync().unwrap();
}

#[test]
fn dropout_mask_is_bit_identical_to_the_cpu() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let off = 3;
    // Odd sizes, one above the CPU's parallel threshold and one above the
    // GPU grid cap (the grid-stride loop); seeds and thresholds with the top
    // bit set (they travel as signed kernel arguments).
    for &n in &[1usize, 257, 70_001, (1 << 24) + 7] {
        for (seed, p) in [(7u64, 0.5f64), (u64::MAX - 5, 0.9), (1 << 40, 0.1)] {
            let threshold = (u32::MAX as f64 * p) as u32;
            let scale = (1.0 / (1.0 - p)) as f32;
            let mut g = up(&be, &vec![-1.0; n + off]);
            let mut c = Buffer::from_vec(vec![-1.0; n + off]);
            be.dropout_mask(n, seed, threshold, scale, g.at_mut(off));
            cpu.dropout_mask(n, seed, threshold, scale, c.at_mut(off));
            let (g, c) = (g.read(n + off), c.read(n + off));
            assert!(
                g[..off].iter().all(|&v| v == -1.0),
                "n={n}: wrote before the view"
            );
            let first_diff = g
                .iter()
                .zip(&c)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(first_diff, None, "n={n} seed={seed} p={p}");
        }
    }
    be.sync().unwrap();
}
