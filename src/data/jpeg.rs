//! A baseline JPEG decoder that reproduces libjpeg(-turbo)'s default output
//! bit for bit, as OpenCV's `imdecode` (and so Caffe) sees it: the
//! accurate integer IDCT (`jidctint.c`), "fancy" triangle upsampling of
//! subsampled chroma with libjpeg's edge handling (`jdsample.c`) and its
//! YCbCr → RGB tables (`jdcolor.c`). General decoders differ from libjpeg
//! by up to tens of grey levels along the right and bottom edges of
//! subsampled images.
//!
//! Only sequential Huffman 8-bit files with 1 or 3 components are handled
//! here; anything else (progressive, arithmetic, 12-bit, CMYK) returns
//! `Ok(None)` so the caller can use a general decoder.

/// Decoded samples: one plane per output channel (R, G, B or grey),
/// `width × height` each.
pub struct JpegImage {
    pub width: usize,
    pub height: usize,
    pub planes: Vec<Vec<u8>>,
}

/// How the caller wants the channels (OpenCV's read flags).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum JpegOut {
    /// 1 channel for 1-component files, RGB for 3-component files.
    Native,
    Rgb,
    Gray,
}

type R<T> = std::result::Result<T, String>;

/// Refuse absurd sizes from corrupt headers before allocating.
const MAX_PIXELS: usize = 1 << 28;

#[derive(Clone, Default)]
struct Huffman {
    /// (code length, symbol) for every 9-bit prefix; length 0 = longer code.
    fast: Vec<(u8, u8)>,
    maxcode: [i32; 18],
    valoff: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> R<Self> {
        let mut h = Huffman {
            fast: vec![(0, 0); 512],
            maxcode: [-1; 18],
            valoff: [0; 17],
            values,
        };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16 {
            let n = counts[len - 1] as usize;
            h.valoff[len] = k as i32 - code;
            for _ in 0..n {
                if len <= 9 {
                    let shift = 9 - len;
                    for j in 0..1usize << shift {
                        h.fast[((code as usize) << shift) | j] = (len as u8, h.values[k]);
                    }
                }
                code += 1;
                k += 1;
            }
            h.maxcode[len] = if n > 0 { code - 1 } else { -1 };
            if code > 1 << len {
                return Err("bad Huffman table".into());
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX;
        if k > h.values.len() {
            return Err("bad Huffman table".into());
        }
        Ok(h)
    }
}

/// Reads entropy-coded bits, undoing 0xFF00 stuffing; at a marker it
/// supplies zero bits (libjpeg's behaviour on truncated data).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    marker_hit: bool,
}

impl<'a> Bits<'a> {
    fn fill(&mut self) {
        while self.n <= 56 {
            let mut byte = 0u8;
            if !self.marker_hit && self.pos < self.data.len() {
                byte = self.data[self.pos];
                if byte == 0xFF {
                    let next = self.data.get(self.pos + 1).copied().unwrap_or(0xD9);
                    if next == 0 {
                        self.pos += 2;
                    } else {
                        self.marker_hit = true;
                        byte = 0;
                    }
                } else {
                    self.pos += 1;
                }
            }
            self.acc |= (byte as u64) << (56 - self.n);
            self.n += 8;
        }
    }
    fn peek(&mut self, k: u32) -> u32 {
        if self.n < k {
            self.fill();
        }
        (self.acc >> (64 - k)) as u32
    }
    fn skip(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
    }
    fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        let v = self.peek(k);
        self.skip(k);
        v
    }
    fn decode(&mut self, h: &Huffman) -> R<u8> {
        let p = self.peek(16);
        let (len, sym) = h.fast[(p >> 7) as usize];
        if len > 0 {
            self.skip(len as u32);
            return Ok(sym);
        }
        for len in 10..=16u32 {
            let code = (p >> (16 - len)) as i32;
            if code <= h.maxcode[len as usize] {
                self.skip(len);
                let i = (h.valoff[len as usize] + code) as usize;
                return h
                    .values
                    .get(i)
                    .copied()
                    .ok_or_else(|| "corrupt JPEG data (bad Huffman code)".into());
            }
        }
        Err("corrupt JPEG data (bad Huffman code)".into())
    }
    /// Drop buffered bits and step over the RSTn marker at the read position.
    fn restart(&mut self) -> R<()> {
        self.acc = 0;
        self.n = 0;
        self.marker_hit = false;
        let d = self.data;
        while self.pos < d.len() && d[self.pos] != 0xFF {
            self.pos += 1;
        }
        while self.pos + 1 < d.len() && d[self.pos + 1] == 0xFF {
            self.pos += 1;
        }
        match d.get(self.pos + 1) {
            Some(0xD0..=0xD7) => {
                self.pos += 2;
                Ok(())
            }
            _ => Err("corrupt JPEG data (missing restart marker)".into()),
        }
    }
}

fn extend(v: u32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < 1 << (s - 1) {
        v as i32 - (1 << s) + 1
    } else {
        v as i32
    }
}

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Blocks across and down in the padded MCU grid.
    bw: usize,
    bh: usize,
    /// Quantized coefficients, natural order, 64 per block.
    coef: Vec<i16>,
}

fn be16(d: &[u8], i: usize) -> R<usize> {
    match d.get(i..i + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]]) as usize),
        None => Err("truncated JPEG".into()),
    }
}

/// Decode `data`; `Ok(None)` for files this decoder does not handle.
pub fn decode_jpeg(data: &[u8], out: JpegOut) -> R<Option<JpegImage>> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG file".into());
    }
    let mut qt = [[0i32; 64]; 4];
    let mut dc_tabs: [Option<Huffman>; 4] = Default::default();
    let mut ac_tabs: [Option<Huffman>; 4] = Default::default();
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height) = (0usize, 0usize);
    let (mut hmax, mut vmax) = (1usize, 1usize);
    let mut restart_interval = 0usize;
    let (mut jfif, mut adobe) = (false, None::<u8>);
    let mut pos = 2;
    loop {
        // Find the next marker, skipping fill bytes.
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&m) = data.get(pos) else {
            break; // truncated after the last scan: use what we have
        };
        pos += 1;
        match m {
            0xD9 => break,
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let len = be16(data, pos)?;
        let seg = data
            .get(pos + 2..pos + len)
            .ok_or_else(|| "truncated JPEG segment".to_string())?;
        pos += len;
        match m {
            0xC0 | 0xC1 => {
                if seg.len() < 6 || seg[0] != 8 {
                    return Ok(None); // 12-bit
                }
                height = be16(seg, 1)?;
                width = be16(seg, 3)?;
                let n = seg[5] as usize;
                if width == 0 || height == 0 || (n != 1 && n != 3) || seg.len() < 6 + 3 * n {
                    return Ok(None);
                }
                if width * height > MAX_PIXELS {
                    return Err(format!("{width}x{height} image is too large"));
                }
                if !comps.is_empty() {
                    return Err("more than one JPEG frame header".into());
                }
                for i in 0..n {
                    let c = &seg[6 + 3 * i..9 + 3 * i];
                    let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                        return Err("bad JPEG frame header".into());
                    }
                    comps.push(Component {
                        id: c[0],
                        h,
                        v,
                        tq: c[2] as usize,
                        bw: 0,
                        bh: 0,
                        coef: Vec::new(),
                    });
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
                vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
                let (mx, my) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
                for c in &mut comps {
                    c.bw = mx * c.h;
                    c.bh = my * c.v;
                    c.coef = vec![0; c.bw * c.bh * 64];
                }
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 => {
                let mut p = 0;
                while p < seg.len() {
                    let (tc, th) = (seg[p] >> 4, (seg[p] & 15) as usize);
                    let counts: [u8; 16] = seg
                        .get(p + 1..p + 17)
                        .and_then(|s| s.try_into().ok())
                        .ok_or("truncated Huffman table")?;
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let vals = seg
                        .get(p + 17..p + 17 + total)
                        .ok_or("truncated Huffman table")?
                        .to_vec();
                    if th > 3 || tc > 1 {
                        return Err("bad Huffman table".into());
                    }
                    let t = Some(Huffman::new(&counts, vals)?);
                    if tc == 0 {
                        dc_tabs[th] = t;
                    } else {
                        ac_tabs[th] = t;
                    }
                    p += 17 + total;
                }
            }
            0xDB => {
                let mut p = 0;
                while p < seg.len() {
                    let (pq, tq) = (seg[p] >> 4, (seg[p] & 15) as usize);
                    if tq > 3 {
                        return Err("bad quantization table".into());
                    }
                    let n = if pq == 0 { 64 } else { 128 };
                    let body = seg
                        .get(p + 1..p + 1 + n)
                        .ok_or("truncated quantization table")?;
                    for k in 0..64 {
                        qt[tq][ZIGZAG[k]] = if pq == 0 {
                            body[k] as i32
                        } else {
                            u16::from_be_bytes([body[2 * k], body[2 * k + 1]]) as i32
                        };
                    }
                    p += 1 + n;
                }
            }
            0xDD => restart_interval = be16(seg, 0)?,
            0xE0 => jfif |= seg.starts_with(b"JFIF\0"),
            0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => adobe = Some(seg[11]),
            0xDA => {
                if comps.is_empty() {
                    return Err("JPEG scan before frame header".into());
                }
                let ns = *seg.first().ok_or("bad scan header")? as usize;
                if ns == 0 || seg.len() < 1 + 2 * ns + 3 {
                    return Err("bad scan header".into());
                }
                let mut sel = Vec::with_capacity(ns);
                for i in 0..ns {
                    let (id, t) = (seg[1 + 2 * i], seg[2 + 2 * i]);
                    let ci = comps
                        .iter()
                        .position(|c| c.id == id)
                        .ok_or("scan names an unknown component")?;
                    let dc = dc_tabs[(t >> 4) as usize & 3]
                        .clone()
                        .ok_or("missing DC table")?;
                    let ac = ac_tabs[(t & 15) as usize & 3]
                        .clone()
                        .ok_or("missing AC table")?;
                    sel.push((ci, dc, ac));
                }
                let mut bits = Bits {
                    data,
                    pos,
                    acc: 0,
                    n: 0,
                    marker_hit: false,
                };
                decode_scan(
                    &mut comps,
                    &sel,
                    &mut bits,
                    width,
                    height,
                    hmax,
                    vmax,
                    restart_interval,
                )?;
                pos = bits.pos;
            }
            _ => {}
        }
    }
    if comps.is_empty() {
        return Err("JPEG has no frame".into());
    }
    // Dequantize + IDCT every block into padded planes, then upsample.
    let mut planes = Vec::with_capacity(comps.len());
    for c in &comps {
        let q = &qt[c.tq];
        let stride = c.bw * 8;
        let mut plane = vec![0u8; stride * c.bh * 8];
        for by in 0..c.bh {
            for bx in 0..c.bw {
                let k = (by * c.bw + bx) * 64;
                idct_islow(
                    &c.coef[k..k + 64],
                    q,
                    &mut plane[by * 8 * stride + bx * 8..],
                    stride,
                );
            }
        }
        let dw = (width * c.h).div_ceil(hmax);
        let dh = (height * c.v).div_ceil(vmax);
        match upsample(
            &plane,
            stride,
            dw,
            dh,
            hmax / c.h,
            vmax / c.v,
            c,
            hmax,
            vmax,
            width,
            height,
        ) {
            Some(p) => planes.push(p),
            None => return Ok(None),
        }
    }
    // libjpeg's default colour space guess (jdapimin.c).
    let ycc = comps.len() == 3
        && (jfif
            || match adobe {
                Some(t) => t != 0,
                None => !(comps[0].id == b'R' && comps[1].id == b'G' && comps[2].id == b'B'),
            });
    let n = width * height;
    let planes = match (planes.len(), out) {
        (1, JpegOut::Rgb) => vec![planes[0].clone(), planes[0].clone(), planes.remove(0)],
        (1, _) => planes,
        (_, JpegOut::Gray) if ycc => vec![planes.swap_remove(0)],
        (_, JpegOut::Gray) => {
            let g = (0..n)
                .map(|i| {
                    let (r, g, b) = (
                        planes[0][i] as i32,
                        planes[1][i] as i32,
                        planes[2][i] as i32,
                    );
                    ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) as u8
                })
                .collect();
            vec![g]
        }
        _ if ycc => ycc_to_rgb(&planes),
        _ => planes,
    };
    Ok(Some(JpegImage {
        width,
        height,
        planes,
    }))
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    comps: &mut [Component],
    sel: &[(usize, Huffman, Huffman)],
    bits: &mut Bits,
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    restart_interval: usize,
) -> R<()> {
    let mut pred = vec![0i32; sel.len()];
    let (ux, uy) = if sel.len() == 1 {
        // Non-interleaved: the component's own block grid, one block per MCU.
        let c = &comps[sel[0].0];
        let dw = (width * c.h).div_ceil(hmax);
        let dh = (height * c.v).div_ceil(vmax);
        (dw.div_ceil(8), dh.div_ceil(8))
    } else {
        (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax))
    };
    for m in 0..ux * uy {
        if restart_interval > 0 && m > 0 && m % restart_interval == 0 {
            bits.restart()?;
            pred.iter_mut().for_each(|p| *p = 0);
        }
        let (mx, my) = (m % ux, m / ux);
        for (s, (ci, dc, ac)) in sel.iter().enumerate() {
            let c = &mut comps[*ci];
            let (h, v, bw) = if sel.len() == 1 {
                (1, 1, c.bw)
            } else {
                (c.h, c.v, c.bw)
            };
            for y in 0..v {
                for x in 0..h {
                    let bi = (my * v + y) * bw + mx * h + x;
                    decode_block(
                        bits,
                        dc,
                        ac,
                        &mut pred[s],
                        &mut c.coef[bi * 64..bi * 64 + 64],
                    )?;
                }
            }
        }
    }
    // Leave the reader at the marker that ends the scan.
    let d = bits.data;
    let mut p = bits.pos;
    while p + 1 < d.len() && !(d[p] == 0xFF && d[p + 1] != 0 && !(0xD0..=0xD7).contains(&d[p + 1]))
    {
        p += 1;
    }
    bits.pos = p;
    Ok(())
}

/// One block's coefficients (natural order) from the bit stream.
fn decode_block(
    bits: &mut Bits,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    coef: &mut [i16],
) -> R<()> {
    let t = bits.decode(dc)? as u32;
    if t > 16 {
        return Err("corrupt JPEG data (bad DC)".into());
    }
    *pred = pred.wrapping_add(extend(bits.bits(t), t));
    // Stored as libjpeg's 16-bit JCOEF.
    coef[0] = *pred as i16;
    let mut k = 1;
    while k < 64 {
        let rs = bits.decode(ac)?;
        let (r, sz) = ((rs >> 4) as usize, (rs & 15) as u32);
        if sz == 0 {
            if r != 15 {
                break;
            }
            k += 16;
            continue;
        }
        k += r;
        if k > 63 {
            return Err("corrupt JPEG data (AC index out of range)".into());
        }
        coef[ZIGZAG[k]] = extend(bits.bits(sz), sz) as i16;
        k += 1;
    }
    Ok(())
}

/// libjpeg's `jpeg_idct_islow` (CONST_BITS 13, PASS1_BITS 2) with output
/// range limiting, into 8 rows of `out` at `stride`.
fn idct_islow(coef: &[i16], q: &[i32; 64], out: &mut [u8], stride: usize) {
    const CB: i32 = 13;
    const P1: i32 = 2;
    const F0_298: i64 = 2446;
    const F0_390: i64 = 3196;
    const F0_541: i64 = 4433;
    const F0_765: i64 = 6270;
    const F0_899: i64 = 7373;
    const F1_175: i64 = 9633;
    const F1_501: i64 = 12299;
    const F1_847: i64 = 15137;
    const F1_961: i64 = 16069;
    const F2_053: i64 = 16819;
    const F2_562: i64 = 20995;
    const F3_072: i64 = 25172;
    fn descale(x: i64, n: i32) -> i64 {
        (x + (1 << (n - 1))) >> n
    }
    // Shared even/odd butterflies; `x[k]` is input k of the 1-D transform.
    fn butterfly(x: [i64; 8]) -> [i64; 8] {
        let (z2, z3) = (x[2], x[6]);
        let z1 = (z2 + z3) * F0_541;
        let tmp2 = z1 - z3 * F1_847;
        let tmp3 = z1 + z2 * F0_765;
        let tmp0 = (x[0] + x[4]) << CB;
        let tmp1 = (x[0] - x[4]) << CB;
        let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (mut o0, mut o1, mut o2, mut o3) = (x[7], x[5], x[3], x[1]);
        let (mut z1, mut z2, mut z3, mut z4) = (o0 + o3, o1 + o2, o0 + o2, o1 + o3);
        let z5 = (z3 + z4) * F1_175;
        o0 *= F0_298;
        o1 *= F2_053;
        o2 *= F3_072;
        o3 *= F1_501;
        z1 *= -F0_899;
        z2 *= -F2_562;
        z3 *= -F1_961;
        z4 *= -F0_390;
        z3 += z5;
        z4 += z5;
        o0 += z1 + z3;
        o1 += z2 + z4;
        o2 += z2 + z3;
        o3 += z1 + z4;
        [
            t10 + o3,
            t11 + o2,
            t12 + o1,
            t13 + o0,
            t13 - o0,
            t12 - o1,
            t11 - o2,
            t10 - o3,
        ]
    }
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let x: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + col] as i64 * q[r * 8 + col] as i64);
        if x[1..].iter().all(|&v| v == 0) {
            for r in 0..8 {
                ws[r * 8 + col] = x[0] << P1;
            }
            continue;
        }
        let y = butterfly(x);
        for r in 0..8 {
            ws[r * 8 + col] = descale(y[r], CB - P1);
        }
    }
    for row in 0..8 {
        let x: [i64; 8] = std::array::from_fn(|c| ws[row * 8 + c]);
        let y = butterfly(x);
        for c in 0..8 {
            let v = descale(y[c], CB + P1 + 3) + 128;
            out[row * stride + c] = v.clamp(0, 255) as u8;
        }
    }
}

/// libjpeg's upsampling of one component plane (`dw × dh` real samples in
/// a padded plane of `stride`) to `width × height`. `None` for factor
/// combinations libjpeg itself rejects.
#[allow(clippy::too_many_arguments)]
fn upsample(
    p: &[u8],
    stride: usize,
    dw: usize,
    dh: usize,
    fx: usize,
    fy: usize,
    c: &Component,
    hmax: usize,
    vmax: usize,
    width: usize,
    height: usize,
) -> Option<Vec<u8>> {
    if !hmax.is_multiple_of(c.h) || !vmax.is_multiple_of(c.v) {
        return None;
    }
    let at = |x: usize, y: usize| p[y * stride + x] as i32;
    // Context rows: the first row stands above itself, the last real row
    // below itself.
    let above = |y: usize| y.saturating_sub(1);
    let below = |y: usize| (y + 1).min(dh - 1);
    let mut out = vec![0u8; width * height];
    let ow = dw * fx; // upsampled width before cropping
    let mut row = vec![0u8; ow.max(width)];
    for oy in 0..height {
        match (fx, fy) {
            (1, 1) => row[..dw].copy_from_slice(&p[oy * stride..oy * stride + dw]),
            (2, 1) if dw > 2 => {
                let y = oy;
                row[0] = at(0, y) as u8;
                row[1] = ((at(0, y) * 3 + at(1, y) + 2) >> 2) as u8;
                for x in 1..dw - 1 {
                    let v = at(x, y) * 3;
                    row[2 * x] = ((v + at(x - 1, y) + 1) >> 2) as u8;
                    row[2 * x + 1] = ((v + at(x + 1, y) + 2) >> 2) as u8;
                }
                let l = dw - 1;
                row[2 * l] = ((at(l, y) * 3 + at(l - 1, y) + 1) >> 2) as u8;
                row[2 * l + 1] = at(l, y) as u8;
            }
            (1, 2) => {
                let y = oy / 2;
                let (n, bias) = if oy % 2 == 0 {
                    (above(y), 1)
                } else {
                    (below(y), 2)
                };
                for (x, r) in row.iter_mut().enumerate().take(dw) {
                    *r = ((at(x, y) * 3 + at(x, n) + bias) >> 2) as u8;
                }
            }
            (2, 2) if dw > 2 => {
                let y = oy / 2;
                let n = if oy % 2 == 0 { above(y) } else { below(y) };
                let sum = |x: usize| at(x, y) * 3 + at(x, n);
                let mut this = sum(0);
                let mut next = sum(1);
                row[0] = ((this * 4 + 8) >> 4) as u8;
                row[1] = ((this * 3 + next + 7) >> 4) as u8;
                let mut last = this;
                this = next;
                for x in 1..dw - 1 {
                    next = sum(x + 1);
                    row[2 * x] = ((this * 3 + last + 8) >> 4) as u8;
                    row[2 * x + 1] = ((this * 3 + next + 7) >> 4) as u8;
                    last = this;
                    this = next;
                }
                let l = dw - 1;
                row[2 * l] = ((this * 3 + last + 8) >> 4) as u8;
                row[2 * l + 1] = ((this * 4 + 7) >> 4) as u8;
            }
            _ => {
                // Plain replication (libjpeg's h2v1/h2v2/int upsamplers).
                let y = oy / fy;
                for x in 0..dw {
                    for k in 0..fx {
                        row[x * fx + k] = p[y * stride + x];
                    }
                }
            }
        }
        out[oy * width..(oy + 1) * width].copy_from_slice(&row[..width]);
    }
    Some(out)
}

/// libjpeg's `ycc_rgb_convert` with its fixed-point tables.
fn ycc_to_rgb(p: &[Vec<u8>]) -> Vec<Vec<u8>> {
    const ONE_HALF: i64 = 1 << 15;
    let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
    let mut cr_r = [0i32; 256];
    let mut cb_b = [0i32; 256];
    let mut cr_g = [0i64; 256];
    let mut cb_g = [0i64; 256];
    for i in 0..256 {
        let x = i as i64 - 128;
        cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> 16) as i32;
        cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> 16) as i32;
        cr_g[i] = -fix(0.71414) * x;
        cb_g[i] = -fix(0.34414) * x + ONE_HALF;
    }
    let n = p[0].len();
    let mut out = vec![vec![0u8; n]; 3];
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    for i in 0..n {
        let (y, cb, cr) = (p[0][i] as i32, p[1][i] as usize, p[2][i] as usize);
        out[0][i] = clamp(y + cr_r[cr]);
        out[1][i] = clamp(y + ((cb_g[cb] + cr_g[cr]) >> 16) as i32);
        out[2][i] = clamp(y + cb_b[cb]);
    }
    out
}
