//! Caffe's `DataTransformer`: crop, mirror, mean subtraction, scale.
//!
//! Per item, in Caffe's order: `do_mirror = mirror && Rand(2)` (in every
//! phase), then for `crop_size > 0` the offsets `h_off = Rand(H - crop + 1)`,
//! `w_off = Rand(W - crop + 1)` in TRAIN or the centre `(H - crop) / 2`,
//! `(W - crop) / 2` otherwise; each value is `(pixel - mean) * scale` in
//! float, the mean file cropped at the same offsets.
use std::path::Path;

use super::datum::{ColorMode, DecodedDatum};
use super::rng::Mt19937;
use crate::error::{Error, Result};
use crate::proto::binary::read_blob_proto;
use crate::proto::caffe::{Phase, TransformationParameter};
use crate::tensor::Blob;

#[derive(Debug, Clone)]
enum Mean {
    None,
    /// A mean image of `channels × height × width` (from `mean_file`).
    File {
        path: String,
        dims: [usize; 3],
        values: Vec<f32>,
    },
    /// One value, or one per channel.
    Values(Vec<f32>),
}

#[derive(Clone)]
pub struct DataTransformer {
    scale: f32,
    mirror: bool,
    crop_size: usize,
    mean: Mean,
    phase: Phase,
    color: ColorMode,
    rng: Mt19937,
}

impl DataTransformer {
    /// Read the parameters once (and the mean file, relative to the working
    /// directory as in Caffe). `seed` seeds the transformer's own stream
    /// (see `rng::transformer_seed`).
    pub fn new(tp: &TransformationParameter, phase: Phase, seed: u32) -> Result<Self> {
        let mean = match (&tp.mean_file, tp.mean_value.is_empty()) {
            (Some(_), false) => {
                return Err(Error::Data(
                    "transform_param: cannot specify mean_file and mean_value at the same time"
                        .into(),
                ))
            }
            (Some(f), true) => load_mean_file(f)?,
            (None, false) => Mean::Values(tp.mean_value.clone()),
            (None, true) => Mean::None,
        };
        let color = match (tp.force_color(), tp.force_gray()) {
            (true, true) => {
                return Err(Error::Data(
                    "transform_param: cannot set both force_color and force_gray".into(),
                ))
            }
            (true, false) => ColorMode::Color,
            (false, true) => ColorMode::Gray,
            (false, false) => ColorMode::Native,
        };
        Ok(DataTransformer {
            scale: tp.scale(),
            mirror: tp.mirror(),
            crop_size: tp.crop_size() as usize,
            mean,
            phase,
            color,
            rng: Mt19937::new(seed),
        })
    }

    /// Restart the transformer's random stream from `seed`.
    pub fn reseed(&mut self, seed: u32) {
        self.rng = Mt19937::new(seed);
    }

    /// The transformer's random stream (to save a data position).
    pub fn rng(&self) -> &Mt19937 {
        &self.rng
    }

    /// Continue from a saved random stream.
    pub fn set_rng(&mut self, rng: Mt19937) {
        self.rng = rng;
    }

    /// How encoded images must be decoded for this transformer.
    pub fn color_mode(&self) -> ColorMode {
        self.color
    }

    /// Caffe's InferBlobShape: `[channels, height, width]` of one
    /// transformed item (cropped when `crop_size` is set).
    pub fn output_shape(&self, d: &DecodedDatum) -> Result<[usize; 3]> {
        if d.channels == 0 {
            return Err(Error::Data("datum has 0 channels".into()));
        }
        let crop = self.crop_size;
        if d.height < crop || d.width < crop {
            return Err(Error::Data(format!(
                "crop_size {crop} is larger than the {}x{} image",
                d.height, d.width
            )));
        }
        Ok(if crop > 0 {
            [d.channels, crop, crop]
        } else {
            [d.channels, d.height, d.width]
        })
    }

    /// Transform one item into `out` (`output_shape` values), drawing the
    /// random mirror and crop as Caffe does.
    pub fn transform(&mut self, d: &DecodedDatum, out: &mut [f32]) -> Result<()> {
        let draws = self.draw();
        self.transform_with(d, draws, out)
    }

    /// The random numbers one item consumes, in Caffe's order: the mirror
    /// draw (`mirror` only), then the crop offsets (TRAIN with a crop). The
    /// count never depends on the image, so a reader can draw them in
    /// record order while workers decode and transform out of order.
    pub fn draw(&mut self) -> Draws {
        let mirror = self.mirror.then(|| self.rng.next_u32());
        let crop = (self.crop_size > 0 && self.phase == Phase::Train)
            .then(|| (self.rng.next_u32(), self.rng.next_u32()));
        Draws { mirror, crop }
    }

    /// Transform one item with draws made by [`draw`](Self::draw).
    pub fn transform_with(&self, d: &DecodedDatum, draws: Draws, out: &mut [f32]) -> Result<()> {
        let [c, oh, ow] = self.output_shape(d)?;
        if out.len() != c * oh * ow {
            return Err(Error::Data(format!(
                "transform output holds {} values, {c}x{oh}x{ow} needed",
                out.len()
            )));
        }
        let (h, w) = (d.height, d.width);
        match &self.mean {
            Mean::File { path, dims, .. } if *dims != [c, h, w] => {
                return Err(Error::Data(format!(
                    "mean file {path} is {}x{}x{} but the data is {c}x{h}x{w}",
                    dims[0], dims[1], dims[2]
                )))
            }
            Mean::Values(v) if v.len() != 1 && v.len() != c => {
                return Err(Error::Data(format!(
                    "specify either 1 mean_value or as many as channels: {c} (got {})",
                    v.len()
                )))
            }
            _ => {}
        }
        // Caffe's Rand(n) is one draw modulo n.
        let do_mirror = draws.mirror.is_some_and(|r| r % 2 == 1);
        let (mut h_off, mut w_off) = (0, 0);
        if self.crop_size > 0 {
            if let Some((rh, rw)) = draws.crop {
                h_off = (rh % (h - oh + 1) as u32) as usize;
                w_off = (rw % (w - ow + 1) as u32) as usize;
            } else {
                h_off = (h - oh) / 2;
                w_off = (w - ow) / 2;
            }
        }
        let scale = self.scale;
        for ch in 0..c {
            let mv = match &self.mean {
                Mean::Values(v) => v[if v.len() == 1 { 0 } else { ch }],
                _ => 0.0,
            };
            for y in 0..oh {
                let src = (ch * h + h_off + y) * w + w_off;
                let dst = &mut out[(ch * oh + y) * ow..][..ow];
                for x in 0..ow {
                    let px = d.pixels.get(src + x);
                    let v = match &self.mean {
                        Mean::File { values, .. } => (px - values[src + x]) * scale,
                        Mean::Values(_) => (px - mv) * scale,
                        Mean::None => px * scale,
                    };
                    dst[if do_mirror { ow - 1 - x } else { x }] = v;
                }
            }
        }
        Ok(())
    }

    /// Whether items consume random numbers (Caffe's `InitRand` condition:
    /// `mirror`, or a crop in TRAIN).
    pub fn needs_rand(&self) -> bool {
        self.mirror || (self.phase == Phase::Train && self.crop_size > 0)
    }
}

/// The random draws of one item (see [`DataTransformer::draw`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Draws {
    pub mirror: Option<u32>,
    pub crop: Option<(u32, u32)>,
}

/// A mean `.binaryproto`; its channels/height/width are Caffe's legacy dims
/// (1 for missing axes).
fn load_mean_file(path: &str) -> Result<Mean> {
    let proto = read_blob_proto(Path::new(path))?;
    let shape = Blob::proto_shape(&proto).map_err(|e| Error::format(path, e.to_string()))?;
    if shape.len() > 4 {
        return Err(Error::format(
            path,
            format!("mean blob has {} axes; at most 4 are allowed", shape.len()),
        ));
    }
    let legacy = |i: usize| shape.get(i).copied().unwrap_or(1);
    let count: usize = shape.iter().product();
    let values: Vec<f32> = if proto.double_data.is_empty() {
        proto.data
    } else {
        proto.double_data.iter().map(|&v| v as f32).collect()
    };
    if values.len() != count {
        return Err(Error::format(
            path,
            format!(
                "mean blob holds {} values for shape {shape:?}",
                values.len()
            ),
        ));
    }
    Ok(Mean::File {
        path: path.to_string(),
        dims: [legacy(1), legacy(2), legacy(3)],
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::datum::Pixels;

    fn datum(c: usize, h: usize, w: usize) -> DecodedDatum {
        DecodedDatum {
            channels: c,
            height: h,
            width: w,
            pixels: Pixels::U8((0..c * h * w).map(|i| i as u8).collect()),
            label: 0,
        }
    }

    fn tp() -> TransformationParameter {
        TransformationParameter::default()
    }

    #[test]
    fn center_crop_in_test_and_mean_values_per_channel() {
        let mut p = tp();
        p.crop_size = Some(2);
        p.mean_value = vec![1.0, 2.0];
        p.scale = Some(0.5);
        let mut t = DataTransformer::new(&p, Phase::Test, 1).unwrap();
        let d = datum(2, 4, 4);
        assert_eq!(t.output_shape(&d).unwrap(), [2, 2, 2]);
        let mut out = vec![0.0; 8];
        t.transform(&d, &mut out).unwrap();
        // offsets (1,1): channel 0 pixels 5,6,9,10; channel 1 adds 16.
        let want: Vec<f32> = [5, 6, 9, 10]
            .iter()
            .map(|&v| (v as f32 - 1.0) * 0.5)
            .chain([21, 22, 25, 26].iter().map(|&v| (v as f32 - 2.0) * 0.5))
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn train_draws_mirror_then_crop_offsets() {
        let mut p = tp();
        p.crop_size = Some(3);
        p.mirror = Some(true);
        let seed = 42;
        let mut t = DataTransformer::new(&p, Phase::Train, seed).unwrap();
        let mut rng = Mt19937::new(seed);
        let d = datum(1, 5, 6);
        for _ in 0..20 {
            let m = rng.rand(2) == 1;
            let ho = rng.rand(3) as usize;
            let wo = rng.rand(4) as usize;
            let mut out = vec![0.0; 9];
            t.transform(&d, &mut out).unwrap();
            for y in 0..3 {
                for x in 0..3 {
                    let xs = if m { 2 - x } else { x };
                    assert_eq!(out[y * 3 + x], ((ho + y) * 6 + wo + xs) as f32);
                }
            }
        }
    }

    #[test]
    fn no_random_draws_without_mirror_in_test() {
        let mut p = tp();
        p.crop_size = Some(2);
        let mut t = DataTransformer::new(&p, Phase::Test, 3).unwrap();
        let before = t.rng.clone().next_u32();
        let mut out = vec![0.0; 4];
        t.transform(&datum(1, 4, 4), &mut out).unwrap();
        assert_eq!(t.rng.next_u32(), before);
    }

    #[test]
    fn invalid_settings_are_errors() {
        let mut p = tp();
        p.mean_file = Some("m.binaryproto".into());
        p.mean_value = vec![1.0];
        assert!(DataTransformer::new(&p, Phase::Test, 0).is_err());
        let mut p = tp();
        p.force_color = Some(true);
        p.force_gray = Some(true);
        assert!(DataTransformer::new(&p, Phase::Test, 0).is_err());
        let mut p = tp();
        p.mean_value = vec![1.0, 2.0];
        let mut t = DataTransformer::new(&p, Phase::Test, 0).unwrap();
        let mut out = vec![0.0; 27];
        assert!(t.transform(&datum(3, 3, 3), &mut out).is_err());
        let mut p = tp();
        p.crop_size = Some(5);
        let t = DataTransformer::new(&p, Phase::Test, 0).unwrap();
        assert!(t.output_shape(&datum(1, 4, 8)).is_err());
        let mut p = tp();
        p.mean_file = Some("/nonexistent/mean.binaryproto".into());
        let e = DataTransformer::new(&p, Phase::Test, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/mean.binaryproto"), "{e}");
    }
}
