//! Image files as Caffe's `ReadImageToCVMat` reads them: OpenCV's
//! `imread` (colour → 3-channel BGR, or grey), then an optional
//! `cv::resize` to `height × width` with INTER_LINEAR. Pixels are planar
//! (CHW) bytes, as the transformer and `Datum`s want them.
use std::path::Path;

use super::datum::{decode_image, ColorMode, DecodedDatum, Pixels};
use super::resize::resize_linear_u8;

/// An 8-bit planar image (BGR or grey).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl Image {
    /// Decode an image file's bytes as colour (`is_color`) or grey.
    pub fn decode(bytes: &[u8], is_color: bool) -> std::result::Result<Image, String> {
        let mode = if is_color {
            ColorMode::Color
        } else {
            ColorMode::Gray
        };
        let d = decode_image(bytes, mode)?;
        match d.pixels {
            Pixels::U8(data) => Ok(Image {
                channels: d.channels,
                height: d.height,
                width: d.width,
                data,
            }),
            Pixels::F32(_) => Err("decoder returned float pixels".into()),
        }
    }

    /// OpenCV's INTER_LINEAR resize (see `resize`).
    pub fn resized(&self, height: usize, width: usize) -> Image {
        Image {
            channels: self.channels,
            height,
            width,
            data: resize_linear_u8(
                &self.data,
                self.channels,
                self.height,
                self.width,
                height,
                width,
            ),
        }
    }

    /// As a decoded datum with `label`, for the transformer.
    pub fn into_datum(self, label: i32) -> DecodedDatum {
        DecodedDatum {
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels: Pixels::U8(self.data),
            label,
        }
    }
}

/// Caffe's `ReadImageToCVMat(filename, height, width, is_color)`: read and
/// decode the file, resizing when both `height` and `width` are positive.
/// Errors name the file.
pub fn read_image(
    path: &Path,
    height: usize,
    width: usize,
    is_color: bool,
) -> Result<Image, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let img = Image::decode(&bytes, is_color).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(if height > 0 && width > 0 {
        img.resized(height, width)
    } else {
        img
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_colour_and_grey_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let mut img = image::RgbImage::new(4, 2);
        img.put_pixel(1, 0, image::Rgb([10, 20, 30]));
        img.save(&p).unwrap();
        let c = read_image(&p, 0, 0, true).unwrap();
        assert_eq!((c.channels, c.height, c.width), (3, 2, 4));
        // Planar BGR: blue plane first.
        assert_eq!((c.data[1], c.data[8 + 1], c.data[16 + 1]), (30, 20, 10));
        let g = read_image(&p, 4, 8, false).unwrap();
        assert_eq!((g.channels, g.height, g.width), (1, 4, 8));
        let e = read_image(&dir.path().join("missing.jpg"), 0, 0, true).unwrap_err();
        assert!(e.contains("missing.jpg"), "{e}");
        std::fs::write(dir.path().join("bad.png"), b"not a png").unwrap();
        let e = read_image(&dir.path().join("bad.png"), 0, 0, true).unwrap_err();
        assert!(e.contains("bad.png") && e.contains("cannot decode"), "{e}");
    }
}
