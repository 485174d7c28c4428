//! Micro-benchmark of the CPU kernels at the shapes of the timing nets
//! (`../shared/bench/lenet.prototxt`, `cifar10_quick.prototxt`): every
//! convolution pass, pooling and the InnerProduct GEMMs, one line each.
//!
//! `cargo bench --bench kernels` (add `-- <filter>` to run a subset;
//! `RAYON_NUM_THREADS=1` for one core). The machine is shared and noisy, so
//! each figure is the minimum and the median of many timed repetitions; the
//! minimum is the one to compare between builds.
use std::time::Instant;

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::pool::PoolGeometry;
use rcaffe::backend::{Buffer, ConvGeometry, ConvOps, Math, PoolOps};

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Buffer {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Buffer::from_vec(
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect(),
    )
}

/// Name filters from the command line (`cargo bench` itself passes `--bench`).
static FILTER: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Time `f` (min and median over repetitions, ms); `flop` adds GFLOP/s.
/// Skipped unless the name contains one of the filters (if any).
fn report(name: &str, flop: f64, mut f: impl FnMut()) {
    let filter = FILTER.get().map(Vec::as_slice).unwrap_or_default();
    if !filter.is_empty() && !filter.iter().any(|w| name.contains(w.as_str())) {
        return;
    }
    f();
    let t0 = Instant::now();
    f();
    let once = t0.elapsed().as_secs_f64();
    // About half a second per line, at least 15 repetitions.
    let reps = ((0.5 / once.max(1e-6)) as usize).clamp(15, 2000);
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let (min, med) = (times[0] * 1e3, times[reps / 2] * 1e3);
    if flop > 0.0 {
        println!(
            "{name:34} min {min:8.3} ms  median {med:8.3} ms  {:6.1} GFLOP/s (at min)",
            flop / times[0] / 1e9
        );
    } else {
        println!("{name:34} min {min:8.3} ms  median {med:8.3} ms");
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_geom(c: usize, hw: usize, o: usize, k: usize, pad: usize) -> ConvGeometry {
    let out = ConvGeometry::output_size(hw, k, 1, pad, 1).unwrap();
    ConvGeometry {
        in_channels: c,
        in_shape: vec![hw, hw],
        out_channels: o,
        out_shape: vec![out, out],
        kernel: vec![k, k],
        stride: vec![1, 1],
        pad: vec![pad, pad],
        dilation: vec![1, 1],
        group: 1,
        engine: Default::default(),
    }
}

fn bench_conv(be: &CpuBackend, name: &str, g: &ConvGeometry, num: usize, backward_data: bool) {
    let x = values(num * g.in_dim(), 1);
    let w = values(g.weight_len(), 2);
    let b = values(g.out_channels, 3);
    let dy = values(num * g.out_dim(), 4);
    let mut y = be.alloc(num * g.out_dim());
    let mut dx = be.alloc(num * g.in_dim());
    let mut dw = be.alloc(g.weight_len());
    let mut db = be.alloc(g.out_channels);
    let mut ws = be.alloc(be.conv_workspace_len(g, num));
    let flop = 2.0 * (num * g.out_dim() * g.kernel_dim()) as f64;
    report(&format!("{name} forward"), flop, || {
        be.conv_forward(
            g,
            num,
            x.view(),
            w.view(),
            Some(b.view()),
            y.view_mut(),
            ws.view_mut(),
        )
    });
    report(&format!("{name} backward filter"), flop, || {
        be.conv_backward_filter(g, num, x.view(), dy.view(), dw.view_mut(), ws.view_mut())
    });
    if backward_data {
        report(&format!("{name} backward data"), flop, || {
            be.conv_backward_data(g, num, dy.view(), w.view(), dx.view_mut(), ws.view_mut())
        });
    }
    report(&format!("{name} backward bias"), 0.0, || {
        be.conv_backward_bias(
            num,
            g.out_channels,
            g.out_spatial(),
            dy.view(),
            db.view_mut(),
            ws.view_mut(),
        )
    });
}

#[allow(clippy::too_many_arguments)]
fn bench_pool(
    be: &CpuBackend,
    name: &str,
    planes: usize,
    hw: usize,
    k: usize,
    s: usize,
    max: bool,
) {
    // Caffe's ceil rule without padding.
    let p = (hw - k).div_ceil(s) + 1;
    let g = PoolGeometry {
        height: hw,
        width: hw,
        pooled_height: p,
        pooled_width: p,
        kernel_h: k,
        kernel_w: k,
        stride_h: s,
        stride_w: s,
        pad_h: 0,
        pad_w: 0,
    };
    let x = values(planes * hw * hw, 5);
    let dy = values(planes * p * p, 6);
    let mut y = be.alloc(planes * p * p);
    let mut mask = be.alloc(planes * p * p);
    let mut dx = be.alloc(planes * hw * hw);
    if max {
        report(&format!("{name} max forward"), 0.0, || {
            be.max_pool_forward(&g, planes, x.view(), y.view_mut(), mask.view_mut())
        });
        report(&format!("{name} max backward"), 0.0, || {
            be.max_pool_backward(&g, planes, dy.view(), mask.view(), dx.view_mut())
        });
    } else {
        report(&format!("{name} ave forward"), 0.0, || {
            be.ave_pool_forward(&g, planes, x.view(), y.view_mut())
        });
        report(&format!("{name} ave backward"), 0.0, || {
            be.ave_pool_backward(&g, planes, dy.view(), dx.view_mut())
        });
    }
}

/// InnerProduct's three GEMMs (Caffe's orientation: W is N×K).
fn bench_ip(be: &CpuBackend, name: &str, m: usize, n: usize, k: usize) {
    let x = values(m * k, 7);
    let w = values(n * k, 8);
    let dy = values(m * n, 9);
    let mut y = be.alloc(m * n);
    let mut dw = be.alloc(n * k);
    let mut dx = be.alloc(m * k);
    let flop = 2.0 * (m * n * k) as f64;
    report(&format!("{name} forward x·Wᵀ"), flop, || {
        be.gemm(
            false,
            true,
            m,
            n,
            k,
            1.0,
            x.view(),
            w.view(),
            0.0,
            y.view_mut(),
        )
    });
    report(&format!("{name} dW += dyᵀ·x"), flop, || {
        be.gemm(
            true,
            false,
            n,
            k,
            m,
            1.0,
            dy.view(),
            x.view(),
            1.0,
            dw.view_mut(),
        )
    });
    report(&format!("{name} dx = dy·W"), flop, || {
        be.gemm(
            false,
            false,
            m,
            k,
            n,
            1.0,
            dy.view(),
            w.view(),
            0.0,
            dx.view_mut(),
        )
    });
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    // A filter naming a net runs that net's lines only.
    let nets = ["lenet", "cifar", "caffenet", "mem", "resnet", "mobilenet"];
    let named = filter.iter().any(|f| nets.iter().any(|n| f.contains(n)));
    let on = |net: &str| !named || filter.iter().any(|f| f.contains(net));
    FILTER.get_or_init(|| filter.clone());
    let be = CpuBackend::new();
    println!("threads: {}", rayon::current_num_threads());
    if on("lenet") {
        bench_conv(&be, "lenet conv1", &conv_geom(1, 28, 20, 5, 0), 64, false);
        bench_pool(&be, "lenet pool1", 64 * 20, 24, 2, 2, true);
        bench_conv(&be, "lenet conv2", &conv_geom(20, 12, 50, 5, 0), 64, true);
        bench_pool(&be, "lenet pool2", 64 * 50, 8, 2, 2, true);
        bench_ip(&be, "lenet ip1", 64, 500, 800);
    }
    if on("cifar") {
        bench_conv(&be, "cifar conv1", &conv_geom(3, 32, 32, 5, 2), 100, false);
        bench_pool(&be, "cifar pool1", 100 * 32, 32, 3, 2, true);
        bench_conv(&be, "cifar conv2", &conv_geom(32, 16, 32, 5, 2), 100, true);
        bench_pool(&be, "cifar pool2", 100 * 32, 16, 3, 2, false);
        bench_conv(&be, "cifar conv3", &conv_geom(32, 8, 64, 5, 2), 100, true);
        bench_pool(&be, "cifar pool3", 100 * 64, 8, 3, 2, false);
        bench_ip(&be, "cifar ip1", 100, 64, 1024);
    }
    if on("caffenet") {
        let mut conv1 = conv_geom(3, 227, 96, 11, 0);
        conv1.stride = vec![4, 4];
        conv1.out_shape = vec![55, 55];
        bench_conv(&be, "caffenet conv1", &conv1, 16, false);
        let mut conv2 = conv_geom(96, 27, 256, 5, 2);
        conv2.group = 2;
        bench_conv(&be, "caffenet conv2", &conv2, 16, true);
        bench_conv(
            &be,
            "caffenet conv3",
            &conv_geom(256, 13, 384, 3, 1),
            16,
            true,
        );
        bench_ip(&be, "caffenet fc6", 16, 4096, 9216);
        bench_ip(&be, "caffenet fc8 b128", 128, 1000, 4096);
    }
    if on("resnet") {
        // ResNet-50 (batch 8): deep layers with small output planes.
        let r = |c, hw, o, k, pad| conv_geom(c, hw, o, k, pad);
        bench_conv(&be, "resnet res3 3x3", &r(128, 28, 128, 3, 1), 8, true);
        bench_conv(&be, "resnet res4 3x3", &r(256, 14, 256, 3, 1), 8, true);
        bench_conv(&be, "resnet res4 1x1", &r(1024, 14, 256, 1, 0), 8, true);
        bench_conv(&be, "resnet res5 3x3", &r(512, 7, 512, 3, 1), 8, true);
        bench_conv(&be, "resnet res5 1x1", &r(512, 7, 2048, 1, 0), 8, true);
    }
    if on("mobilenet") {
        // MobileNet v1 (batch 8): depthwise 3×3 convolutions, stride 1 and 2.
        let dw = |c: usize, hw: usize, stride: usize| {
            let mut g = conv_geom(c, hw, c, 3, 1);
            g.group = c;
            g.stride = vec![stride, stride];
            let o = ConvGeometry::output_size(hw, 3, stride, 1, 1).unwrap();
            g.out_shape = vec![o, o];
            g
        };
        bench_conv(&be, "mobilenet conv2_1/dw", &dw(32, 112, 1), 8, true);
        bench_conv(&be, "mobilenet conv2_2/dw s2", &dw(64, 112, 2), 8, true);
        bench_conv(&be, "mobilenet conv5_1/dw", &dw(512, 14, 1), 8, true);
        bench_conv(&be, "mobilenet conv6/dw", &dw(1024, 7, 1), 8, true);
    }
    if on("mem") {
        // The machine's streaming bandwidth: the floor for element-wise layers.
        let n = 1 << 24;
        let x = values(n, 1);
        let mut y = be.alloc(n);
        report("mem copy 64 MiB", 0.0, || {
            be.copy(n, x.view(), y.view_mut())
        });
    }
}
