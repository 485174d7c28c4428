//! Weight fillers (Caffe's filler.hpp): values are drawn on the host from the
//! net's random stream and uploaded. The distributions and scale rules are
//! Caffe's; the exact random sequence is not (Caffe uses boost's mt19937).
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Bernoulli, Distribution, Normal, Uniform};

use crate::error::{Error, Result};
use crate::proto::caffe::filler_parameter::VarianceNorm;
use crate::proto::caffe::FillerParameter;
use crate::tensor::Blob;

/// The filler types Caffe knows.
pub const FILLER_TYPES: &[&str] = &[
    "constant",
    "uniform",
    "gaussian",
    "positive_unitball",
    "xavier",
    "msra",
    "bilinear",
];

/// Fill `blob.data` as `param` says.
pub fn fill(param: &FillerParameter, blob: &mut Blob, rng: &mut StdRng) -> Result<()> {
    let values = generate(param, blob.shape(), rng)?;
    blob.set_data(&values)
}

/// The values a filler produces for a blob of `shape` (row-major).
pub fn generate(param: &FillerParameter, shape: &[usize], rng: &mut StdRng) -> Result<Vec<f32>> {
    let n: usize = shape.iter().product();
    let ty = param.r#type();
    if !FILLER_TYPES.contains(&ty) {
        return Err(Error::layer(format!(
            "unknown filler type '{ty}' (known: {})",
            FILLER_TYPES.join(", ")
        )));
    }
    if n == 0 {
        return Err(Error::layer(format!(
            "{ty} filler: cannot fill an empty blob (shape {shape:?})"
        )));
    }
    if ty != "gaussian" && param.sparse() != -1 {
        return Err(Error::layer(format!(
            "{ty} filler: sparsity is only supported by the gaussian filler (sparse = {})",
            param.sparse()
        )));
    }
    // Caffe's num() / channels(): legacy dims, 1 where the axis is missing.
    let num = shape.first().copied().unwrap_or(1);
    let channels = shape.get(1).copied().unwrap_or(1);
    let fan_n = || -> f32 {
        let fan_in = (n / num) as f32;
        let fan_out = (n / channels) as f32;
        match param.variance_norm() {
            VarianceNorm::FanIn => fan_in,
            VarianceNorm::FanOut => fan_out,
            VarianceNorm::Average => (fan_in + fan_out) / 2.0,
        }
    };
    let v = match ty {
        "constant" => vec![param.value(); n],
        "uniform" => uniform(n, param.min(), param.max(), rng)?,
        "gaussian" => {
            let mut v = gaussian(n, param.mean(), param.std(), rng)?;
            let sparse = param.sparse();
            if sparse < -1 {
                return Err(Error::layer(format!(
                    "gaussian filler: sparse must be >= -1, got {sparse}"
                )));
            }
            if sparse >= 0 {
                // `sparse` is the mean number of non-zero inputs per output
                // (shape(0) outputs).
                let p = sparse as f64 / num as f64;
                let mask = Bernoulli::new(p).map_err(|_| {
                    Error::layer(format!(
                        "gaussian filler: sparse {sparse} exceeds the {num} outputs of the blob"
                    ))
                })?;
                for x in v.iter_mut() {
                    if !mask.sample(rng) {
                        *x = 0.0;
                    }
                }
            }
            v
        }
        "positive_unitball" => {
            let mut v = uniform(n, 0.0, 1.0, rng)?;
            let dim = n / num;
            for row in v.chunks_mut(dim) {
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= sum);
            }
            v
        }
        "xavier" => {
            let a = (3.0 / fan_n()).sqrt();
            uniform(n, -a, a, rng)?
        }
        "msra" => gaussian(n, 0.0, (2.0 / fan_n()).sqrt(), rng)?,
        "bilinear" => bilinear(shape)?,
        _ => unreachable!("checked against FILLER_TYPES"),
    };
    Ok(v)
}

/// U[lo, hi] with `hi` inclusive (boost's uniform_real over nextafter(hi)).
fn uniform(n: usize, lo: f32, hi: f32, rng: &mut StdRng) -> Result<Vec<f32>> {
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(Error::layer(format!(
            "uniform filler: min ({lo}) must not exceed max ({hi})"
        )));
    }
    let d = Uniform::new_inclusive(lo, hi);
    Ok((0..n).map(|_| rng.sample(d)).collect())
}

fn gaussian(n: usize, mean: f32, std: f32, rng: &mut StdRng) -> Result<Vec<f32>> {
    // Caffe CHECKs sigma > 0.
    if std.is_nan() || std <= 0.0 {
        return Err(Error::layer(format!(
            "gaussian filler: std must be > 0, got {std}"
        )));
    }
    let d = Normal::new(mean, std).map_err(|e| Error::layer(format!("gaussian filler: {e}")))?;
    Ok((0..n).map(|_| d.sample(rng)).collect())
}

/// Upsampling kernel for Deconvolution: every (out, in) slice of a 4-D blob
/// with square K×K kernels gets the same bilinear weights.
fn bilinear(shape: &[usize]) -> Result<Vec<f32>> {
    if shape.len() != 4 {
        return Err(Error::layer(format!(
            "bilinear filler: blob must be 4-D, got shape {shape:?}"
        )));
    }
    let (h, w) = (shape[2], shape[3]);
    if h != w {
        return Err(Error::layer(format!(
            "bilinear filler: kernel must be square, got {h}x{w}"
        )));
    }
    let f = (w as f64 / 2.0).ceil() as i64;
    // Caffe computes c in double and stores it as Dtype.
    let c = ((w as f64 - 1.0) / (2.0 * f as f64)) as f32;
    let f = f as f32;
    let n: usize = shape.iter().product();
    Ok((0..n)
        .map(|i| {
            let x = (i % w) as f32;
            let y = ((i / w) % h) as f32;
            (1.0 - (x / f - c).abs()) * (1.0 - (y / f - c).abs())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn param(ty: &str) -> FillerParameter {
        FillerParameter {
            r#type: Some(ty.to_string()),
            ..Default::default()
        }
    }

    fn gen(p: &FillerParameter, shape: &[usize]) -> Vec<f32> {
        generate(p, shape, &mut StdRng::seed_from_u64(1701)).unwrap()
    }

    fn mean_var(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
        (m, var)
    }

    #[test]
    fn constant() {
        let mut p = param("constant");
        p.value = Some(2.5);
        assert!(gen(&p, &[2, 3, 4]).iter().all(|&x| x == 2.5));
        // The default FillerParameter is constant 0.
        let v = gen(&FillerParameter::default(), &[5]);
        assert_eq!(v, vec![0.0; 5]);
    }

    #[test]
    fn uniform_range_and_mean() {
        let mut p = param("uniform");
        p.min = Some(-2.0);
        p.max = Some(3.0);
        let v = gen(&p, &[100, 100]);
        assert!(v.iter().all(|&x| (-2.0..=3.0).contains(&x)));
        let (m, var) = mean_var(&v);
        assert!((m - 0.5).abs() < 0.05, "{m}");
        assert!((var - 25.0 / 12.0).abs() < 0.05, "{var}");
        // min == max is a constant.
        p.min = Some(1.0);
        p.max = Some(1.0);
        assert!(gen(&p, &[10]).iter().all(|&x| x == 1.0));
    }

    #[test]
    fn gaussian_moments() {
        let mut p = param("gaussian");
        p.mean = Some(1.0);
        p.std = Some(2.0);
        let (m, var) = mean_var(&gen(&p, &[200, 100]));
        assert!((m - 1.0).abs() < 0.05, "{m}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn gaussian_sparse() {
        let mut p = param("gaussian");
        p.sparse = Some(3);
        // 10 outputs: each element is kept with probability 0.3.
        let v = gen(&p, &[10, 2000]);
        let nz = v.iter().filter(|&&x| x != 0.0).count() as f64 / v.len() as f64;
        assert!((nz - 0.3).abs() < 0.02, "{nz}");
        // sparse > outputs is a probability above 1.
        p.sparse = Some(11);
        assert!(generate(&p, &[10, 2], &mut StdRng::seed_from_u64(1)).is_err());
    }

    #[test]
    fn positive_unitball_rows_sum_to_one() {
        let v = gen(&param("positive_unitball"), &[4, 3, 2, 5]);
        assert!(v.iter().all(|&x| (0.0..=1.0).contains(&x)));
        for row in v.chunks(30) {
            let s: f32 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "{s}");
        }
    }

    #[test]
    fn xavier_scales() {
        // (O=20, I=10, 3, 3): fan_in 90, fan_out 180.
        let shape = [20, 10, 3, 3];
        for (norm, n) in [
            (VarianceNorm::FanIn, 90.0f64),
            (VarianceNorm::FanOut, 180.0),
            (VarianceNorm::Average, 135.0),
        ] {
            let mut p = param("xavier");
            p.set_variance_norm(norm);
            let v = gen(&p, &shape);
            let a = (3.0 / n).sqrt() as f32;
            assert!(v.iter().all(|&x| x.abs() <= a));
            let (m, var) = mean_var(&v);
            assert!(m.abs() < 0.1 * a as f64, "{m}");
            // U[-a, a] has variance a²/3 = 1/n.
            assert!((var * n - 1.0).abs() < 0.1, "{norm:?}: {}", var * n);
        }
    }

    #[test]
    fn msra_scales() {
        let shape = [64, 32, 3, 3];
        for (norm, n) in [
            (VarianceNorm::FanIn, 288.0f64),
            (VarianceNorm::FanOut, 576.0),
            (VarianceNorm::Average, 432.0),
        ] {
            let mut p = param("msra");
            p.set_variance_norm(norm);
            let (m, var) = mean_var(&gen(&p, &shape));
            assert!(m.abs() < 0.01, "{m}");
            assert!(
                (var * n / 2.0 - 1.0).abs() < 0.05,
                "{norm:?}: {}",
                var * n / 2.0
            );
        }
        // 2-D IP weight (N=50, K=400): fan_in 400.
        let (_, var) = mean_var(&gen(&param("msra"), &[50, 400]));
        assert!((var * 200.0 - 1.0).abs() < 0.05, "{}", var * 200.0);
    }

    #[test]
    fn bilinear_kernel() {
        // K = 4: f = 2, c = 0.375, 1-D weights 0.25 0.75 0.75 0.25.
        let v = gen(&param("bilinear"), &[2, 1, 4, 4]);
        let w1 = [0.25f32, 0.75, 0.75, 0.25];
        for (i, &x) in v.iter().enumerate() {
            let want = w1[i % 4] * w1[(i / 4) % 4];
            assert!((x - want).abs() < 1e-6, "{i}: {x} vs {want}");
        }
        // K = 3: f = 2, c = 0.5: weights 0.5 1 0.5.
        let v = gen(&param("bilinear"), &[1, 1, 3, 3]);
        assert_eq!(v, vec![0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
        assert!(generate(
            &param("bilinear"),
            &[1, 1, 3, 4],
            &mut StdRng::seed_from_u64(1)
        )
        .is_err());
        assert!(generate(&param("bilinear"), &[3, 3], &mut StdRng::seed_from_u64(1)).is_err());
    }

    #[test]
    fn errors() {
        let mut r = StdRng::seed_from_u64(1);
        let e = generate(&param("nope"), &[2], &mut r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown filler type 'nope'"), "{e}");
        let mut p = param("uniform");
        p.sparse = Some(2);
        assert!(generate(&p, &[2], &mut r).is_err());
        let mut p = param("gaussian");
        p.std = Some(0.0);
        assert!(generate(&p, &[2], &mut r).is_err());
        let mut p = param("uniform");
        p.min = Some(2.0);
        assert!(generate(&p, &[2], &mut r).is_err());
        assert!(generate(&param("constant"), &[0, 3], &mut r).is_err());
    }

    #[test]
    fn fill_writes_the_blob_and_is_seeded() {
        let mut b = Blob::from_host(&[3, 4], vec![0.0; 12]);
        let p = param("gaussian");
        fill(&p, &mut b, &mut StdRng::seed_from_u64(7)).unwrap();
        let first = b.data_vec();
        fill(&p, &mut b, &mut StdRng::seed_from_u64(7)).unwrap();
        assert_eq!(first, b.data_vec());
        assert!(first.iter().any(|&x| x != 0.0));
    }
}
