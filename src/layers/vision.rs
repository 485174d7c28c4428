//! The vision layer family: Convolution, Deconvolution, Im2col, Pooling,
//! SPP, LRN, InnerProduct.
use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

mod conv;
mod conv_param;
mod deconv;
mod im2col;
mod inner_product;
mod lrn;
mod pool;
mod spp;
#[cfg(test)]
mod test_util;

pub use conv::Convolution;
pub use deconv::Deconvolution;
pub use im2col::Im2col;
pub use inner_product::InnerProduct;
pub use lrn::Lrn;
pub use pool::Pooling;
pub use spp::Spp;

/// Layer types of this family.
pub const TYPES: &[&str] = &[
    "Convolution",
    "Deconvolution",
    "Im2col",
    "InnerProduct",
    "LRN",
    "Pooling",
    "SPP",
];

fn boxed<L: Layer + 'static>(r: Result<L>) -> Result<Box<dyn Layer>> {
    r.map(|l| Box::new(l) as Box<dyn Layer>)
}

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    Some(match ty {
        "Convolution" => boxed(Convolution::new(lp)),
        "Deconvolution" => boxed(Deconvolution::new(lp)),
        "Im2col" => boxed(Im2col::new(lp)),
        "InnerProduct" => boxed(InnerProduct::new(lp)),
        "LRN" => boxed(Lrn::new(lp)),
        "Pooling" => boxed(Pooling::new(lp)),
        "SPP" => boxed(Spp::new(lp)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::test_util::{cx, make_layer, random_blobs};
    use super::{create, TYPES};
    use crate::layers::{Io, Layer};
    use crate::tensor::Blob;
    use std::time::Instant;

    /// CPU time of the whole process (all rayon workers), in ms: less
    /// sensitive than wall time to other processes on a shared machine.
    fn cpu_ms() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
    }

    #[test]
    fn registry_knows_the_family() {
        for ty in TYPES {
            assert!(crate::layers::layer_types().contains(ty));
        }
        assert!(create("ReLU", &Default::default()).is_none());
    }

    /// Forward + backward time of a chain of vision layers (batch, then the
    /// layer bodies in order); each layer's top feeds the next one.
    fn time_chain(input: &[usize], bodies: &[&str], iters: usize) -> f64 {
        let mut cx = cx();
        let mut arena: Vec<Blob> = random_blobs(&[input], 7);
        // (layer, bottom id, top id, param ids)
        type Entry = (Box<dyn Layer>, usize, usize, Vec<usize>);
        let mut layers: Vec<Entry> = Vec::new();
        let mut b = 0;
        for body in bodies {
            let mut l = make_layer(body).unwrap();
            let (bs, none) = ([b], []);
            let params = {
                let mut io = Io::new(&mut arena, &bs, &none, &none);
                l.setup(&mut cx, &mut io).unwrap()
            };
            let top = arena.len();
            arena.push(Blob::default());
            let pids: Vec<usize> = (arena.len()..arena.len() + params.len()).collect();
            arena.extend(params);
            let ts = [top];
            {
                let mut io = Io::new(&mut arena, &bs, &ts, &pids);
                l.reshape(&mut cx, &mut io).unwrap();
            }
            let n = arena[top].count();
            arena[top].set_diff(&vec![0.01; n]).unwrap();
            layers.push((l, b, top, pids));
            b = top;
        }
        let nl = layers.len();
        let (mut best, mut fwd, mut bwd) = (f64::MAX, vec![f64::MAX; nl], vec![f64::MAX; nl]);
        let (mut best_cpu, mut fwd_cpu, mut bwd_cpu) =
            (f64::MAX, vec![f64::MAX; nl], vec![f64::MAX; nl]);
        for _ in 0..iters {
            let (t0, c0) = (Instant::now(), cpu_ms());
            for (i, (l, b, t, p)) in layers.iter_mut().enumerate() {
                let (t1, c1) = (Instant::now(), cpu_ms());
                let mut io = Io::new(
                    &mut arena,
                    std::slice::from_ref(b),
                    std::slice::from_ref(t),
                    p,
                );
                l.reshape(&mut cx, &mut io).unwrap();
                l.forward(&mut cx, &mut io).unwrap();
                fwd[i] = fwd[i].min(t1.elapsed().as_secs_f64() * 1e3);
                fwd_cpu[i] = fwd_cpu[i].min(cpu_ms() - c1);
            }
            for (i, (l, b, t, p)) in layers.iter_mut().enumerate().rev() {
                let (t1, c1) = (Instant::now(), cpu_ms());
                let mut io = Io::new(
                    &mut arena,
                    std::slice::from_ref(b),
                    std::slice::from_ref(t),
                    p,
                );
                l.backward(&mut cx, &mut io, &[i > 0]).unwrap();
                bwd[i] = bwd[i].min(t1.elapsed().as_secs_f64() * 1e3);
                bwd_cpu[i] = bwd_cpu[i].min(cpu_ms() - c1);
            }
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
            best_cpu = best_cpu.min(cpu_ms() - c0);
        }
        for i in 0..nl {
            eprintln!(
                "  {:<12} forward {:7.2} ms ({:7.2} cpu)  backward {:7.2} ms ({:7.2} cpu)",
                layers[i].0.type_name(),
                fwd[i],
                fwd_cpu[i],
                bwd[i],
                bwd_cpu[i]
            );
        }
        eprintln!("  total {best:.2} ms wall, {best_cpu:.2} ms cpu (all threads)");
        best
    }

    /// LeNet and cifar10_quick layer stacks (ReLU and loss omitted): run with
    /// `cargo test --lib vision::tests::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        let conv = |o: usize, k: usize, p: usize| {
            format!(
                "type: 'Convolution' convolution_param {{ num_output: {o} kernel_size: {k} pad: {p} \
                 weight_filler {{ type: 'xavier' }} }}"
            )
        };
        let pool = |m: &str, k: usize| {
            format!("type: 'Pooling' pooling_param {{ pool: {m} kernel_size: {k} stride: 2 }}")
        };
        let ip = |o: usize| {
            format!(
                "type: 'InnerProduct' inner_product_param {{ num_output: {o} weight_filler {{ type: 'xavier' }} }}"
            )
        };
        let lenet = [
            conv(20, 5, 0),
            pool("MAX", 2),
            conv(50, 5, 0),
            pool("MAX", 2),
            ip(500),
            ip(10),
        ];
        let lenet: Vec<&str> = lenet.iter().map(|s| s.as_str()).collect();
        let ms = time_chain(&[64, 1, 28, 28], &lenet, 20);
        eprintln!("LeNet forward+backward: {ms:.2} ms");
        let cifar = [
            conv(32, 5, 2),
            pool("MAX", 3),
            conv(32, 5, 2),
            pool("AVE", 3),
            conv(64, 5, 2),
            pool("AVE", 3),
            ip(64),
            ip(10),
        ];
        let cifar: Vec<&str> = cifar.iter().map(|s| s.as_str()).collect();
        let ms = time_chain(&[100, 3, 32, 32], &cifar, 10);
        eprintln!("cifar10_quick forward+backward: {ms:.2} ms");
    }
}
