//! SPP (Caffe's SPPLayer): spatial pyramid pooling. Level `l` pools the
//! bottom into about 2^l × 2^l bins with a Pooling layer whose kernel,
//! stride and pad Caffe derives from the bottom's size (`level_param`);
//! the levels are flattened and concatenated along axis 1. With a pyramid
//! of height 1 the top is the single pooling output `(N, C, 1, 1)`.
//!
//! Caffe wires Split → Pooling → Flatten → Concat sub-layers. Here the
//! Pooling layers run on a private arena: the bottom is moved into it for
//! the duration of a pass (no copy), Flatten is a no-op on row-major data,
//! Concat a block copy, and Split's backward the sum of the levels'
//! gradients in level order.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::proto::caffe::pooling_parameter::PoolMethod;
use crate::proto::caffe::spp_parameter::PoolMethod as SppMethod;
use crate::proto::caffe::{LayerParameter, PoolingParameter};
use crate::tensor::Blob;

use super::Pooling;

/// Private arena slots: the bottom (moved in during a pass), a bottom-shaped
/// blob whose diff receives the gradients of levels 1.., then one pooled
/// output per level.
const BOTTOM: usize = 0;
const SCRATCH: usize = 1;
const POOLED: usize = 2;

#[derive(Debug)]
pub struct Spp {
    height: usize,
    method: PoolMethod,
    levels: Vec<Pooling>,
    arena: Vec<Blob>,
    /// The (height, width) the levels were built for.
    built_for: Option<(usize, usize)>,
    /// Per level: values per image of the flattened output and its offset
    /// in a top row.
    widths: Vec<usize>,
    offsets: Vec<usize>,
    num: usize,
}

/// Caffe's SPPLayer::GetPoolingParam: the pooling of level `level` over an
/// `h × w` bottom: `bins = 2^level`, `kernel = ceil(size / bins)`, stride =
/// kernel, `pad = (kernel·bins − size + 1) / 2`.
pub(crate) fn level_param(
    level: usize,
    h: usize,
    w: usize,
    method: PoolMethod,
) -> Result<LayerParameter> {
    let bins = u32::try_from(level)
        .ok()
        .and_then(|l| 1usize.checked_shl(l))
        .filter(|&b| b <= i32::MAX as usize)
        .ok_or_else(|| layer_err!("pyramid level {level} is too deep"))?;
    let kernel_pad = |size: usize| {
        let k = size.div_ceil(bins);
        (k, (k * bins - size).div_ceil(2))
    };
    let (kh, ph) = kernel_pad(h);
    let (kw, pw) = kernel_pad(w);
    let as_u32 = |v: usize| {
        u32::try_from(v)
            .map_err(|_| layer_err!("pooling size {v} of pyramid level {level} is too large"))
    };
    Ok(LayerParameter {
        name: Some(format!("spp level {level}")),
        r#type: Some("Pooling".into()),
        pooling_param: Some(PoolingParameter {
            pool: Some(method as i32),
            kernel_h: Some(as_u32(kh)?),
            kernel_w: Some(as_u32(kw)?),
            stride_h: Some(as_u32(kh)?),
            stride_w: Some(as_u32(kw)?),
            pad_h: Some(as_u32(ph)?),
            pad_w: Some(as_u32(pw)?),
            ..Default::default()
        }),
        ..Default::default()
    })
}

impl Spp {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.spp_param.unwrap_or_default();
        let height = p.pyramid_height() as usize;
        if height == 0 {
            return Err(layer_err!("spp_param.pyramid_height must be positive"));
        }
        let method = match p.pool() {
            SppMethod::Max => PoolMethod::Max,
            SppMethod::Ave => PoolMethod::Ave,
            SppMethod::Stochastic => {
                return Err(layer_err!(
                    "STOCHASTIC pooling is not supported (BVLC Caffe implements it on the GPU only)"
                ))
            }
        };
        Ok(Spp {
            height,
            method,
            levels: Vec::new(),
            arena: Vec::new(),
            built_for: None,
            widths: Vec::new(),
            offsets: Vec::new(),
            num: 0,
        })
    }

    /// The bottom's 4-D shape, with Caffe's checks.
    fn bottom_shape(io: &Io) -> Result<[usize; 4]> {
        let s = io.bottom(0).shape();
        let shape: [usize; 4] = s.try_into().map_err(|_| {
            layer_err!("input must have 4 axes, corresponding to (num, channels, height, width); got {s:?}")
        })?;
        if shape[2] == 0 || shape[3] == 0 {
            return Err(layer_err!("input dimensions cannot be zero: {s:?}"));
        }
        Ok(shape)
    }

    /// Run `f` on the private arena with the layer's bottom moved into slot
    /// `BOTTOM`; the bottom goes back to the net whatever `f` returns.
    fn with_bottom<R>(
        arena: &mut [Blob],
        io: &mut Io,
        f: impl FnOnce(&mut [Blob]) -> Result<R>,
    ) -> Result<R> {
        arena[BOTTOM] = std::mem::take(io.bottom_mut(0));
        let r = f(arena);
        *io.bottom_mut(0) = std::mem::take(&mut arena[BOTTOM]);
        r
    }
}

impl Layer for Spp {
    fn type_name(&self) -> &'static str {
        "SPP"
    }

    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }

    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        Self::bottom_shape(io)?;
        self.arena = (0..POOLED + self.height)
            .map(|_| Blob::new(cx.be.as_ref(), &[]))
            .collect();
        Ok(Vec::new())
    }

    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let [n, c, h, w] = Self::bottom_shape(io)?;
        // Caffe rebuilds the pooling layers whenever the bottom changes;
        // their parameters depend on the height and width only.
        if self.built_for != Some((h, w)) {
            self.built_for = None;
            self.levels = (0..self.height)
                .map(|l| {
                    level_param(l, h, w, self.method)
                        .and_then(|lp| Pooling::new(&lp))
                        .map_err(|e| layer_err!("pyramid level {l} on a {h}×{w} input: {e}"))
                })
                .collect::<Result<_>>()?;
            self.built_for = Some((h, w));
        }
        // The levels only read the bottom's shape here: shape the scratch
        // blob like it and reshape them on that.
        self.arena[SCRATCH].reshape(&[n, c, h, w])?;
        for (l, pool) in self.levels.iter_mut().enumerate() {
            let top = [POOLED + l];
            pool.reshape(cx, &mut Io::new(&mut self.arena, &[SCRATCH], &top, &[]))
                .map_err(|e| layer_err!("pyramid level {l} on a {h}×{w} input: {e}"))?;
        }
        self.num = n;
        self.widths = (0..self.height)
            .map(|l| self.arena[POOLED + l].count() / n.max(1))
            .collect();
        self.offsets = self
            .widths
            .iter()
            .scan(0, |off, &wd| {
                *off += wd;
                Some(*off - wd)
            })
            .collect();
        if self.height == 1 {
            let shape = self.arena[POOLED].shape().to_vec();
            io.top_mut(0).reshape(&shape)
        } else {
            io.top_mut(0).reshape(&[n, self.widths.iter().sum()])
        }
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let levels = &mut self.levels;
        Self::with_bottom(&mut self.arena, io, |arena| {
            for (l, pool) in levels.iter_mut().enumerate() {
                pool.forward(cx, &mut Io::new(arena, &[BOTTOM], &[POOLED + l], &[]))?;
            }
            Ok(())
        })?;
        // Flatten + Concat: level l fills columns offsets[l].. of every row.
        let total: usize = self.widths.iter().sum();
        let y = io.top_mut(0);
        for (l, (&wd, &off)) in self.widths.iter().zip(&self.offsets).enumerate() {
            let x = &self.arena[POOLED + l];
            cx.be.copy_blocks(
                self.num,
                wd,
                x.data.view(),
                wd,
                y.data.at_mut(off),
                total,
                false,
            );
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down.first().copied().unwrap_or(false) {
            return Ok(());
        }
        let total: usize = self.widths.iter().sum();
        {
            let y = io.top(0);
            for (l, (&wd, &off)) in self.widths.iter().zip(&self.offsets).enumerate() {
                let x = &mut self.arena[POOLED + l];
                cx.be.copy_blocks(
                    self.num,
                    wd,
                    y.diff.at(off),
                    total,
                    x.diff.view_mut(),
                    wd,
                    false,
                );
            }
        }
        let levels = &mut self.levels;
        Self::with_bottom(&mut self.arena, io, |arena| {
            // Level 0 writes the bottom's diff; each further level writes
            // the scratch diff, added on in level order (Caffe's Split:
            // d0 + d1, then + d2 ...).
            for (l, pool) in levels.iter_mut().enumerate() {
                let target = if l == 0 { BOTTOM } else { SCRATCH };
                pool.backward(
                    cx,
                    &mut Io::new(arena, &[target], &[POOLED + l], &[]),
                    &[true],
                )?;
                if l > 0 {
                    let (b, s) = arena.split_at_mut(SCRATCH);
                    let count = b[BOTTOM].count();
                    cx.be
                        .axpy(count, 1.0, s[0].diff.view(), b[BOTTOM].diff.view_mut());
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn golden_cases_match_caffe() {
        check_golden("spp_ave_h2");
        check_golden("spp_max_h3");
    }

    fn pooling(level: usize, h: usize, w: usize) -> [u32; 6] {
        let p = level_param(level, h, w, PoolMethod::Max)
            .unwrap()
            .pooling_param
            .unwrap();
        [
            p.kernel_h(),
            p.kernel_w(),
            p.stride_h(),
            p.stride_w(),
            p.pad_h(),
            p.pad_w(),
        ]
    }

    #[test]
    fn level_parameters_follow_caffe() {
        // Level 0 covers the whole input.
        assert_eq!(pooling(0, 7, 9), [7, 9, 7, 9, 0, 0]);
        // 2 bins over 7: kernel ceil(3.5) = 4, remainder 1, pad (1+1)/2 = 1;
        // over 9: kernel 5, remainder 1, pad 1.
        assert_eq!(pooling(1, 7, 9), [4, 5, 4, 5, 1, 1]);
        // 4 bins over 7: kernel 2, remainder 1, pad 1; over 9: kernel 3,
        // remainder 3, pad 2.
        assert_eq!(pooling(2, 7, 9), [2, 3, 2, 3, 1, 2]);
        // Exact division: no padding.
        assert_eq!(pooling(2, 8, 12), [2, 3, 2, 3, 0, 0]);
        assert!(level_param(64, 8, 8, PoolMethod::Max).is_err());
    }

    #[test]
    fn output_shapes() {
        let (_, tops) = run_forward(
            "type: 'SPP' spp_param { pyramid_height: 1 pool: AVE }",
            &[&[2, 3, 5, 6]],
        );
        assert_eq!(tops[0].shape(), &[2, 3, 1, 1]);
        // 1 + 4 + 16 bins per channel.
        let (_, tops) = run_forward(
            "type: 'SPP' spp_param { pyramid_height: 3 }",
            &[&[2, 3, 7, 9]],
        );
        assert_eq!(tops[0].shape(), &[2, 63]);
    }

    #[test]
    fn height_one_is_global_pooling() {
        let (_, tops) = run_forward(
            "type: 'SPP' spp_param { pyramid_height: 1 pool: MAX }",
            &[&[2, 3, 4, 5]],
        );
        let x = random_blobs(&[&[2, 3, 4, 5]], 2)[0].data_vec();
        let want: Vec<f32> = x
            .chunks(20)
            .map(|p| p.iter().copied().fold(f32::MIN, f32::max))
            .collect();
        assert_eq!(tops[0].data_vec(), want);
    }

    /// Distinct values spaced beyond the finite-difference step, so no MAX
    /// window has two candidates within ±h.
    fn distinct(shape: &[usize], seed: u64) -> Blob {
        let n: usize = shape.iter().product();
        let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
        Blob::from_host(shape, v)
    }

    #[test]
    fn gradients_max_and_ave_heights_1_to_3() {
        for method in ["MAX", "AVE"] {
            for (height, shape) in [(1, [2usize, 2, 3, 4]), (2, [1, 2, 5, 6]), (3, [2, 1, 7, 9])] {
                check_gradients_on(
                    &format!("type: 'SPP' spp_param {{ pyramid_height: {height} pool: {method} }}"),
                    vec![distinct(&shape, height as u64)],
                    1,
                    &[],
                );
            }
        }
    }

    #[test]
    fn rebuilds_levels_when_the_input_size_changes() {
        let mut layer =
            make_layer("type: 'SPP' spp_param { pyramid_height: 2 pool: MAX }").unwrap();
        let mut arena = vec![distinct(&[1, 1, 4, 4], 1), Blob::default()];
        let mut c = cx();
        layer
            .setup(&mut c, &mut Io::new(&mut arena, &[0], &[1], &[]))
            .unwrap();
        let mut run = |arena: &mut Vec<Blob>| {
            let mut io = Io::new(arena, &[0], &[1], &[]);
            layer.reshape(&mut c, &mut io).unwrap();
            layer.forward(&mut c, &mut io).unwrap();
            arena[1].data_vec()
        };
        let first = run(&mut arena);
        assert_eq!(first.len(), 5);
        // 6×6: level 1 is 2×2 bins of 3×3.
        arena[0] = distinct(&[1, 1, 6, 6], 2);
        let second = run(&mut arena);
        let x = arena[0].data_vec();
        let max = |r0: usize, c0: usize| {
            (r0..r0 + 3)
                .flat_map(|r| (c0..c0 + 3).map(move |c| (r, c)))
                .map(|(r, c)| x[r * 6 + c])
                .fold(f32::MIN, f32::max)
        };
        let whole = x.iter().copied().fold(f32::MIN, f32::max);
        assert_eq!(
            second,
            vec![whole, max(0, 0), max(0, 3), max(3, 0), max(3, 3)]
        );
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for (text, shape, msg) in [
            (
                "type: 'SPP'",
                &[1usize, 1, 5, 5][..],
                "pyramid_height must be positive",
            ),
            (
                "type: 'SPP' spp_param { pyramid_height: 2 pool: STOCHASTIC }",
                &[1, 1, 5, 5],
                "STOCHASTIC",
            ),
            (
                "type: 'SPP' spp_param { pyramid_height: 2 }",
                &[1, 5, 5],
                "4 axes",
            ),
            (
                "type: 'SPP' spp_param { pyramid_height: 2 }",
                &[1, 1, 0, 5],
                "cannot be zero",
            ),
            // 4 bins over 3 rows: kernel 1, pad 1: Caffe's Pooling rejects pad ≥ kernel.
            (
                "type: 'SPP' spp_param { pyramid_height: 3 }",
                &[1, 1, 3, 8],
                "pyramid level 2",
            ),
        ] {
            let err = try_setup(text, &[shape]).unwrap_err().to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }
}
