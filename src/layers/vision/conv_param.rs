//! The spatial fields of `ConvolutionParameter` (kernel, stride, pad,
//! dilation and the channel axis), resolved per bottom as Caffe's
//! BaseConvolutionLayer and Im2colLayer do. Shared by Convolution,
//! Deconvolution and Im2col.
use crate::error::Result;
use crate::layer_err;
use crate::proto::caffe::ConvolutionParameter;
use crate::tensor::shape::canonical_axis;

/// A per-spatial-axis setting as the prototxt gives it: the repeated field
/// (once, or once per axis) or the 2-D `_h`/`_w` pair.
#[derive(Debug, Clone)]
struct PerAxis {
    name: &'static str,
    repeated: Vec<u32>,
    hw: Option<(u32, u32)>,
    /// Value when the repeated field is empty (None: the field is required).
    default: Option<u32>,
}

impl PerAxis {
    fn new(
        name: &'static str,
        repeated: &[u32],
        hw: Option<(u32, u32)>,
        default: Option<u32>,
    ) -> Result<Self> {
        if hw.is_some() && !repeated.is_empty() {
            return Err(layer_err!(
                "either {name} or {name}_h/{name}_w should be specified; not both"
            ));
        }
        Ok(PerAxis {
            name,
            repeated: repeated.to_vec(),
            hw,
            default,
        })
    }

    /// Caffe's rules for `n` spatial axes.
    fn resolve(&self, n: usize) -> Result<Vec<usize>> {
        let name = self.name;
        if let Some((h, w)) = self.hw {
            if n != 2 {
                return Err(layer_err!(
                    "{name}_h & {name}_w can only be used for 2D convolution ({n} spatial axes)"
                ));
            }
            return Ok(vec![h as usize, w as usize]);
        }
        let k = self.repeated.len();
        match (k, self.default) {
            _ if k == n => Ok(self.repeated.iter().map(|&v| v as usize).collect()),
            (1, _) => Ok(vec![self.repeated[0] as usize; n]),
            (0, Some(d)) => Ok(vec![d as usize; n]),
            _ => Err(layer_err!(
                "{name} must be specified once, or once per spatial dimension \
                 ({name} specified {k} times; {n} spatial dims)"
            )),
        }
    }
}

/// The unresolved spatial fields of one layer.
#[derive(Debug, Clone)]
pub(super) struct ConvSpatial {
    axis: i32,
    kernel: PerAxis,
    stride: PerAxis,
    pad: PerAxis,
    dilation: PerAxis,
}

/// The fields resolved for one bottom shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Spatial {
    pub channel_axis: usize,
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub pad: Vec<usize>,
    pub dilation: Vec<usize>,
}

impl Spatial {
    pub fn num_spatial_axes(&self) -> usize {
        self.kernel.len()
    }
    /// The window's extent along axis `i` (Caffe's kernel_extent).
    pub fn extent(&self, i: usize) -> usize {
        self.dilation[i] * (self.kernel[i] - 1) + 1
    }
    /// The error when a bottom's rank differs from the one at setup.
    pub fn check_rank(&self, shape: &[usize]) -> Result<()> {
        let want = self.channel_axis + 1 + self.num_spatial_axes();
        if shape.len() != want {
            return Err(layer_err!(
                "bottom num_axes may not change (was {want}, now {}: {shape:?})",
                shape.len()
            ));
        }
        Ok(())
    }
}

impl ConvSpatial {
    pub fn new(p: &ConvolutionParameter) -> Result<Self> {
        // `kernel_h` alone still selects the 2-D form (the other one is then 0
        // and rejected as a zero filter dimension), as in Caffe.
        let pair = |h: Option<u32>, w: Option<u32>, hv: u32, wv: u32| {
            (h.is_some() || w.is_some()).then_some((hv, wv))
        };
        Ok(ConvSpatial {
            axis: p.axis(),
            kernel: PerAxis::new(
                "kernel_size",
                &p.kernel_size,
                pair(p.kernel_h, p.kernel_w, p.kernel_h(), p.kernel_w()),
                None,
            )?,
            stride: PerAxis::new(
                "stride",
                &p.stride,
                pair(p.stride_h, p.stride_w, p.stride_h(), p.stride_w()),
                Some(1),
            )?,
            pad: PerAxis::new(
                "pad",
                &p.pad,
                pair(p.pad_h, p.pad_w, p.pad_h(), p.pad_w()),
                Some(0),
            )?,
            dilation: PerAxis::new("dilation", &p.dilation, None, Some(1))?,
        })
    }

    /// Resolve for a bottom of `shape`: the axes after the channel axis are
    /// spatial and there must be at least `min_spatial` of them.
    pub fn resolve(&self, shape: &[usize], min_spatial: usize) -> Result<Spatial> {
        let channel_axis = canonical_axis(self.axis, shape.len())?;
        let n = shape.len() - channel_axis - 1;
        if n < min_spatial {
            return Err(layer_err!(
                "needs at least {min_spatial} spatial axis after the channel axis {channel_axis}; \
                 the bottom is {shape:?}"
            ));
        }
        let s = Spatial {
            channel_axis,
            kernel: self.kernel.resolve(n)?,
            stride: self.stride.resolve(n)?,
            pad: self.pad.resolve(n)?,
            dilation: self.dilation.resolve(n)?,
        };
        if s.kernel.contains(&0) {
            return Err(layer_err!("filter dimensions must be nonzero"));
        }
        if s.stride.contains(&0) {
            return Err(layer_err!("stride dimensions must be nonzero"));
        }
        if s.dilation.contains(&0) {
            return Err(layer_err!("dilation dimensions must be nonzero"));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(text: &str) -> ConvolutionParameter {
        crate::proto::text::parse_text(text, "test", "caffe.ConvolutionParameter").unwrap()
    }

    #[test]
    fn resolves_caffe_forms() {
        let s = ConvSpatial::new(&param("kernel_size: 3 stride: 2 pad: 1"))
            .unwrap()
            .resolve(&[2, 3, 5, 6], 1)
            .unwrap();
        assert_eq!(
            s,
            Spatial {
                channel_axis: 1,
                kernel: vec![3, 3],
                stride: vec![2, 2],
                pad: vec![1, 1],
                dilation: vec![1, 1],
            }
        );
        assert_eq!(s.extent(0), 3);
        let s = ConvSpatial::new(&param(
            "kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 0 pad_w: 1 dilation: 2",
        ))
        .unwrap()
        .resolve(&[1, 1, 5, 6], 1)
        .unwrap();
        assert_eq!(
            (s.kernel, s.stride, s.pad),
            (vec![2, 3], vec![1, 2], vec![0, 1])
        );
        assert_eq!(s.dilation, vec![2, 2]);
        // Per-axis repeated fields and a channel axis of 2.
        let s = ConvSpatial::new(&param(
            "axis: 2 kernel_size: 1 kernel_size: 2 kernel_size: 3 dilation: 1 dilation: 2 dilation: 1",
        ))
        .unwrap()
        .resolve(&[2, 2, 3, 4, 5, 6], 1)
        .unwrap();
        assert_eq!(s.channel_axis, 2);
        assert_eq!(s.kernel, vec![1, 2, 3]);
        assert_eq!(s.dilation, vec![1, 2, 1]);
        assert!(s.check_rank(&[2, 2, 3, 4, 5, 6]).is_ok());
        assert!(s.check_rank(&[2, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn rejects_what_caffe_rejects() {
        for (text, shape, msg) in [
            (
                "kernel_size: 3 kernel_h: 3",
                &[1usize, 1, 5, 5][..],
                "not both",
            ),
            ("", &[1, 1, 5, 5], "kernel_size must be specified"),
            (
                "kernel_size: 3 kernel_size: 3",
                &[1, 1, 5, 5, 5],
                "specified 2 times",
            ),
            ("kernel_h: 3 kernel_w: 3", &[1, 1, 5, 5, 5], "2D"),
            ("kernel_h: 3", &[1, 1, 5, 5], "nonzero"),
            (
                "kernel_size: 3 stride: 0",
                &[1, 1, 5, 5],
                "stride dimensions",
            ),
            (
                "kernel_size: 3 axis: 4",
                &[1, 1, 5, 5],
                "axis 4 out of range",
            ),
            (
                "kernel_size: 3 axis: 3",
                &[1, 1, 5, 5],
                "at least 1 spatial",
            ),
        ] {
            let err = ConvSpatial::new(&param(text))
                .and_then(|c| c.resolve(shape, 1))
                .unwrap_err()
                .to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }
}
