//! Caffe's `Datum` records: raw `uint8` bytes, `float_data`, or an encoded
//! image file (`encoded: true`) decoded as OpenCV's `imdecode` would, into
//! planar (CHW) BGR values.
use prost::Message;

use super::jpeg::{decode_jpeg, JpegOut};
use super::source::key_string;
use crate::error::{Error, Result};
use crate::proto::caffe::Datum;

/// Pixel values in CHW order.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

impl Pixels {
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Value `i` as the float Caffe computes with.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Pixels::U8(v) => v[i] as f32,
            Pixels::F32(v) => v[i],
        }
    }
}

/// How an encoded image is decoded (TransformationParameter `force_color`
/// / `force_gray`): as stored, as 3-channel BGR, or as 1-channel grey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    Native,
    Color,
    Gray,
}

/// An image with its label, ready for the transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedDatum {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Pixels,
    pub label: i32,
}

fn record_err(key: &[u8], msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("record '{}': {msg}", key_string(key)))
}

/// Decode the serialized `Datum` stored under `key` (named in errors).
pub fn decode_datum(value: &[u8], key: &[u8], color: ColorMode) -> Result<DecodedDatum> {
    let d = Datum::decode(value).map_err(|e| record_err(key, format!("not a valid Datum: {e}")))?;
    let label = d.label();
    if d.encoded() {
        let bytes = d.data.as_deref().unwrap_or_default();
        let img = decode_image(bytes, color).map_err(|e| record_err(key, e))?;
        return Ok(DecodedDatum { label, ..img });
    }
    let dims = [d.channels(), d.height(), d.width()];
    if dims[0] <= 0 || dims[1] < 0 || dims[2] < 0 {
        return Err(record_err(
            key,
            format!(
                "invalid Datum dimensions channels {} height {} width {}",
                dims[0], dims[1], dims[2]
            ),
        ));
    }
    let [c, h, w] = dims.map(|x| x as usize);
    let n = c * h * w;
    // Caffe reads `data` when it is non-empty, else `float_data`.
    let pixels = match d.data {
        Some(bytes) if !bytes.is_empty() => Pixels::U8(bytes),
        _ => Pixels::F32(d.float_data),
    };
    if pixels.len() != n {
        return Err(record_err(
            key,
            format!(
                "Datum of {c}x{h}x{w} holds {} {} values, expected {n}",
                pixels.len(),
                if matches!(pixels, Pixels::U8(_)) {
                    "byte"
                } else {
                    "float"
                }
            ),
        ));
    }
    Ok(DecodedDatum {
        channels: c,
        height: h,
        width: w,
        pixels,
        label,
    })
}

/// libpng's RGB → grey as OpenCV's PNG reader asks for it
/// (`png_set_rgb_to_gray(.., 0.299, 0.587)`: 15-bit weights, truncated).
fn png_gray(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 9797 + g as u32 * 19234 + b as u32 * 3737) >> 15) as u8
}

/// Planes (R, G, B[, A] or grey) → planar BGR[A] / grey bytes.
fn to_bgr_planar(planes: Vec<Vec<u8>>) -> Vec<u8> {
    let mut planes = planes;
    if planes.len() >= 3 {
        planes.swap(0, 2);
    }
    planes.concat()
}

/// Decode an image file into planar BGR (or grey) bytes as OpenCV's
/// `imdecode` does. Native mode keeps 1 channel for grey images, 3 (BGR)
/// for colour and 4 (BGRA) with alpha, like `IMREAD_UNCHANGED`. Baseline
/// JPEGs go through `jpeg::decode_jpeg` (libjpeg's exact output); other
/// formats and JPEG variants through the `image` crate. The label is 0.
pub fn decode_image(bytes: &[u8], color: ColorMode) -> std::result::Result<DecodedDatum, String> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let out = match color {
            ColorMode::Native => JpegOut::Native,
            ColorMode::Color => JpegOut::Rgb,
            ColorMode::Gray => JpegOut::Gray,
        };
        if let Some(img) =
            decode_jpeg(bytes, out).map_err(|e| format!("cannot decode image: {e}"))?
        {
            return Ok(DecodedDatum {
                channels: img.planes.len(),
                height: img.height,
                width: img.width,
                pixels: Pixels::U8(to_bgr_planar(img.planes)),
                label: 0,
            });
        }
    }
    use image::DynamicImage as D;
    let img = image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let native = match &img {
        D::ImageLuma8(_) => 1,
        D::ImageRgb8(_) => 3,
        D::ImageLumaA8(_) | D::ImageRgba8(_) => 4,
        other => {
            return Err(format!(
                "{:?} images are not supported (8-bit grey or colour only)",
                other.color()
            ))
        }
    };
    let channels = match color {
        ColorMode::Native => native,
        ColorMode::Color => 3,
        ColorMode::Gray => 1,
    };
    let rgba = img.to_rgba8();
    let n = h * w;
    let mut planes = vec![vec![0u8; n]; channels];
    for (i, p) in rgba.pixels().enumerate() {
        let [r, g, b, a] = p.0;
        if channels == 1 {
            planes[0][i] = if native == 1 { r } else { png_gray(r, g, b) };
        } else {
            planes[0][i] = r;
            planes[1][i] = g;
            planes[2][i] = b;
            if channels == 4 {
                planes[3][i] = a;
            }
        }
    }
    Ok(DecodedDatum {
        channels,
        height: h,
        width: w,
        pixels: Pixels::U8(to_bgr_planar(planes)),
        label: 0,
    })
}

/// Serialize a raw `uint8` Datum as Caffe's tools write it (channels,
/// height, width, data, label: all fields set).
pub fn encode_raw_datum(
    channels: usize,
    height: usize,
    width: usize,
    data: &[u8],
    label: i32,
) -> Vec<u8> {
    Datum {
        channels: Some(channels as i32),
        height: Some(height as i32),
        width: Some(width as i32),
        data: Some(data.to_vec()),
        label: Some(label),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_float_datums() {
        let v = encode_raw_datum(1, 2, 3, &[1, 2, 3, 4, 5, 6], 7);
        let d = decode_datum(&v, b"k", ColorMode::Native).unwrap();
        assert_eq!((d.channels, d.height, d.width, d.label), (1, 2, 3, 7));
        assert_eq!(d.pixels, Pixels::U8(vec![1, 2, 3, 4, 5, 6]));

        let f = Datum {
            channels: Some(2),
            height: Some(1),
            width: Some(1),
            float_data: vec![0.5, -1.0],
            ..Default::default()
        }
        .encode_to_vec();
        let d = decode_datum(&f, b"k", ColorMode::Native).unwrap();
        assert_eq!(d.pixels, Pixels::F32(vec![0.5, -1.0]));
        assert_eq!(d.label, 0);
    }

    #[test]
    fn bad_records_name_their_key() {
        let e = decode_datum(&[0xff, 0xff, 0xff], b"00000042", ColorMode::Native)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("00000042") && e.contains("not a valid Datum"),
            "{e}"
        );
        let short = encode_raw_datum(1, 2, 3, &[1, 2], 0);
        let e = decode_datum(&short, b"k7", ColorMode::Native)
            .unwrap_err()
            .to_string();
        assert!(e.contains("k7") && e.contains("expected 6"), "{e}");
        let enc = Datum {
            data: Some(b"not an image".to_vec()),
            encoded: Some(true),
            ..Default::default()
        }
        .encode_to_vec();
        let e = decode_datum(&enc, b"k9", ColorMode::Native)
            .unwrap_err()
            .to_string();
        assert!(e.contains("k9") && e.contains("cannot decode image"), "{e}");
    }

    #[test]
    fn png_decodes_to_planar_bgr() {
        let mut img = image::RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([10, 20, 30]));
        img.put_pixel(1, 0, image::Rgb([40, 50, 60]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let enc = Datum {
            data: Some(png.clone()),
            label: Some(3),
            encoded: Some(true),
            ..Default::default()
        }
        .encode_to_vec();
        let d = decode_datum(&enc, b"k", ColorMode::Native).unwrap();
        assert_eq!((d.channels, d.height, d.width, d.label), (3, 1, 2, 3));
        assert_eq!(d.pixels, Pixels::U8(vec![30, 60, 20, 50, 10, 40]));
        let g = decode_image(&png, ColorMode::Gray).unwrap();
        assert_eq!(
            g.pixels,
            Pixels::U8(vec![png_gray(10, 20, 30), png_gray(40, 50, 60)])
        );
        assert_eq!(png_gray(255, 255, 255), 255);
    }
}
