//! OpenCV's `cv::resize(..., INTER_LINEAR)` for 8-bit images, as Caffe's
//! `ReadImageToCVMat` calls it (ImageData `new_height`/`new_width`,
//! `convert_imageset --resize_*`), reproduced step for step:
//!
//! - source coordinates `f = (d + 0.5) * scale - 0.5` in float, weights
//!   `1 - f` and `f` rounded separately to 11-bit fixed point;
//! - columns clamped at the borders (weight 1 on the edge pixel), rows
//!   clamped with the unclamped weights;
//! - the vertical pass as OpenCV's SSE2 baseline code computes it,
//!   `((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16) + 2 >> 2` for whole
//!   vectors (16, then 8 values), the exact rounding for the tail;
//! - an exact 2× reduction in both directions is INTER_AREA (the mean of
//!   each 2×2 block), and an unchanged size is a copy, as in OpenCV.
//!
//! Channels are planar here; OpenCV's interleaved layout gives the same
//! values because every channel is filtered independently.

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// OpenCV's `saturate_cast<short>(float)`: round half to even.
fn fixed(w: f32) -> i32 {
    (w * COEF_SCALE)
        .round_ties_even()
        .clamp(i16::MIN as f32, i16::MAX as f32) as i32
}

/// Per destination index: first source index and the two weights.
fn coefficients(src: usize, dst: usize) -> Vec<(i64, i32, i32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let frac = f - s;
            (s as i64, fixed(1.0 - frac), fixed(frac))
        })
        .collect()
}

/// Resize `channels` planes of `h × w` bytes to `dh × dw`.
pub fn resize_linear_u8(
    src: &[u8],
    channels: usize,
    h: usize,
    w: usize,
    dh: usize,
    dw: usize,
) -> Vec<u8> {
    assert_eq!(src.len(), channels * h * w, "resize: source size");
    assert!(h > 0 && w > 0 && dh > 0 && dw > 0, "resize: empty image");
    if (h, w) == (dh, dw) {
        return src.to_vec();
    }
    if h == 2 * dh && w == 2 * dw {
        return area_half(src, channels, h, w);
    }
    let xs: Vec<(usize, i32, i32, bool)> = coefficients(w, dw)
        .into_iter()
        .map(|(s, a0, a1)| {
            // Left of the image: weight 1 on column 0; right: on w - 1.
            if s < 0 {
                (0, 1 << COEF_BITS, 0, false)
            } else if s as usize + 1 >= w {
                (w - 1, 0, 0, true)
            } else {
                (s as usize, a0, a1, false)
            }
        })
        .collect();
    let ys = coefficients(h, dh);
    let clip = |y: i64| y.clamp(0, h as i64 - 1) as usize;
    let mut out = vec![0u8; channels * dh * dw];
    // One horizontally filtered row per source row, interleaved over the
    // channels as OpenCV's buffers are (it matters for the vector split).
    let row_len = dw * channels;
    let hrow = |y: usize| -> Vec<i32> {
        let mut r = vec![0i32; row_len];
        for c in 0..channels {
            let s = &src[(c * h + y) * w..][..w];
            for (dx, &(sx, a0, a1, edge)) in xs.iter().enumerate() {
                r[dx * channels + c] = if edge {
                    s[sx] as i32 * (1 << COEF_BITS)
                } else {
                    s[sx] as i32 * a0 + s[(sx + 1).min(w - 1)] as i32 * a1
                };
            }
        }
        r
    };
    let vec16 = row_len / 16 * 16;
    let vec8 = if row_len >= 8 && row_len - vec16 > 8 {
        vec16 + 8
    } else {
        vec16
    };
    let mut line = vec![0u8; row_len];
    for (dy, &(sy, b0, b1)) in ys.iter().enumerate() {
        let s0 = hrow(clip(sy));
        let s1 = hrow(clip(sy + 1));
        for x in 0..row_len {
            let v = if x < vec8 {
                let m0 = ((s0[x] >> 4) * b0) >> 16;
                let m1 = ((s1[x] >> 4) * b1) >> 16;
                (m0 + m1 + 2) >> 2
            } else {
                (s0[x] * b0 + s1[x] * b1 + (1 << (2 * COEF_BITS - 1))) >> (2 * COEF_BITS)
            };
            line[x] = v.clamp(0, 255) as u8;
        }
        for c in 0..channels {
            let dst = &mut out[(c * dh + dy) * dw..][..dw];
            for (dx, d) in dst.iter_mut().enumerate() {
                *d = line[dx * channels + c];
            }
        }
    }
    out
}

/// INTER_AREA for an exact 2× reduction: the rounded mean of each block.
fn area_half(src: &[u8], channels: usize, h: usize, w: usize) -> Vec<u8> {
    let (dh, dw) = (h / 2, w / 2);
    let mut out = vec![0u8; channels * dh * dw];
    for c in 0..channels {
        let p = &src[c * h * w..][..h * w];
        for y in 0..dh {
            for x in 0..dw {
                let i = 2 * y * w + 2 * x;
                let s = p[i] as u32 + p[i + 1] as u32 + p[i + w] as u32 + p[i + w + 1] as u32;
                out[(c * dh + y) * dw + x] = ((s + 2) >> 2) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_half_size_averages() {
        let src: Vec<u8> = (0..2 * 4 * 6).map(|i| (i * 5) as u8).collect();
        assert_eq!(resize_linear_u8(&src, 2, 4, 6, 4, 6), src);
        let half = resize_linear_u8(&src, 2, 4, 6, 2, 3);
        // Block (0,0) of channel 0: 0, 5, 30, 35 → 17.5 → 18.
        assert_eq!(half[0], 18);
        assert_eq!(half.len(), 12);
    }

    #[test]
    fn constant_images_stay_constant() {
        for &(h, w, dh, dw) in &[(3, 5, 7, 11), (26, 30, 32, 32), (9, 9, 4, 5), (5, 4, 1, 1)] {
            let src = vec![200u8; 3 * h * w];
            let out = resize_linear_u8(&src, 3, h, w, dh, dw);
            assert!(out.iter().all(|&v| v == 200), "{h}x{w} → {dh}x{dw}");
        }
    }

    #[test]
    fn upscaling_interpolates_between_neighbours() {
        // 1×2 → 1×4: source x = -0.25, 0.25, 0.75, 1.25.
        let out = resize_linear_u8(&[0, 100], 1, 1, 2, 1, 4);
        // Column 0 clamps to the left pixel; 0.25 and 0.75 mix; the last
        // clamps to the right pixel. The tail (4 < 8 values) is exact.
        assert_eq!(out, vec![0, 25, 75, 100]);
        assert_eq!(coefficients(3, 1)[0], (1, 2048, 0));
        assert_eq!(coefficients(3, 2), vec![(0, 1536, 512), (1, 512, 1536)]);
        assert_eq!(coefficients(2, 3)[0].0, -1);
    }

    #[test]
    fn vector_part_uses_opencvs_truncating_formula() {
        // 16 output values per row go through the vector formula, which
        // truncates where the exact rounding would not.
        let src: Vec<u8> = (0..2 * 16).map(|i| (i * 7 % 256) as u8).collect();
        let out = resize_linear_u8(&src, 1, 2, 16, 3, 16);
        let row0: Vec<i32> = src[..16].iter().map(|&v| v as i32 * 2048).collect();
        let row1: Vec<i32> = src[16..].iter().map(|&v| v as i32 * 2048).collect();
        // Middle row: y = 0.5 → b0 = b1 = 1024.
        for x in 0..16 {
            let want = ((((row0[x] >> 4) * 1024) >> 16) + (((row1[x] >> 4) * 1024) >> 16) + 2) >> 2;
            assert_eq!(out[16 + x] as i32, want);
        }
    }
}
