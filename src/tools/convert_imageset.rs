//! Caffe's `convert_imageset ROOTFOLDER/ LISTFILE DB_NAME`: every line
//! `path label` of the list becomes record `%08d_<path>` (the line's index
//! after the optional shuffle) holding a `Datum`, as Caffe writes it:
//!
//! - raw (default): `channels, height, width, data` (planar BGR or grey
//!   bytes), `label`, `encoded: false`;
//! - `--encoded` / `--encode_type`: `data` (an image file), `label`,
//!   `encoded: true`. With `--encoded` alone the encoding is guessed from
//!   the file's extension and, without resizing, the file's own bytes are
//!   stored; an explicit `--encode_type` always re-encodes, as Caffe's
//!   extension match (".png" against "png") never succeeds for it.
//!
//! Images are read as Caffe's `ReadImageToCVMat` does (see
//! `data::image`), `ROOTFOLDER` and the list path joined as plain strings.
//! Where Caffe logs an unreadable image and skips it, this tool stops with
//! an error naming the list line and the file, and removes the partly
//! written database: nothing is left half done.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use prost::Message;
use rayon::prelude::*;

use crate::data::image::Image;
use crate::data::rng::{caffe_shuffle, Mt19937};
use crate::data::source::{create_writer, log_opened, DbBackend};
use crate::error::{Error, Result};
use crate::log;
use crate::proto::caffe::Datum;

const SITE_SHUFFLING: &str = "convert_imageset.cpp:86";
const SITE_TOTAL: &str = "convert_imageset.cpp:89";
const SITE_ENCODE_TYPE: &str = "convert_imageset.cpp:92";
const SITE_PROCESSED: &str = "convert_imageset.cpp:147";
const SITE_PROCESSED_LAST: &str = "convert_imageset.cpp:153";
/// Records per write transaction, as in Caffe's tool.
const COMMIT_EVERY: usize = 1000;

/// The tool's flags, with Caffe's defaults.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Read images as grey (`--gray`).
    pub gray: bool,
    /// Shuffle the list (`--shuffle`) with `seed`.
    pub shuffle: bool,
    /// Seed of the shuffle (Caffe's tool draws one at random).
    pub seed: u32,
    pub backend: DbBackend,
    /// Resize to `resize_height × resize_width` when both are positive.
    pub resize_height: i32,
    pub resize_width: i32,
    /// Check that all records have the same size (`--check_size`).
    pub check_size: bool,
    /// Store image files instead of raw pixels (`--encoded`).
    pub encoded: bool,
    /// The file format to store (`png`, `jpg`); implies `encoded`.
    pub encode_type: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            gray: false,
            shuffle: false,
            seed: 0,
            backend: DbBackend::Lmdb,
            resize_height: 0,
            resize_width: 0,
            check_size: false,
            encoded: false,
            encode_type: String::new(),
        }
    }
}

/// One line of a list file: `path label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// 1-based line number in the list file, for messages.
    pub line: usize,
    pub path: String,
    pub label: i32,
}

/// Read a list file of `path label` lines (Caffe's format: the label
/// follows the last space, so paths may contain spaces). Trailing blank
/// lines are ignored; a line without a label, with a label that is not an
/// integer, or blank in the middle is an error naming the line.
pub fn parse_list_file(path: &Path) -> Result<Vec<ListEntry>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::format(path, "the list file is not valid UTF-8 text"))?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate().take(last.map_or(0, |n| n + 1)) {
        let at = |msg: String| Error::Data(format!("{}:{}: {msg}", path.display(), i + 1));
        let Some(pos) = l.rfind(' ') else {
            return Err(at(format!("expected `<file> <label>`, got '{l}'")));
        };
        let name = l[..pos].trim_end();
        let label = l[pos + 1..].trim();
        if name.is_empty() {
            return Err(at(format!("no file name before the label in '{l}'")));
        }
        let label: i32 = label
            .parse()
            .map_err(|_| at(format!("the label '{label}' is not an integer")))?;
        out.push(ListEntry {
            line: i + 1,
            path: name.to_string(),
            label,
        });
    }
    Ok(out)
}

/// Caffe's `matchExt`: the file's extension (with its dot) against the
/// encoding, case-insensitively.
fn match_ext(file: &str, enc: &str) -> bool {
    let ext = file.rfind('.').map_or(file, |p| &file[p..]).to_lowercase();
    let enc = enc.to_lowercase();
    ext == enc || (enc == "jpg" && ext == "jpeg")
}

/// Encode planar BGR / grey bytes as OpenCV's `imencode("." + enc)` would
/// choose the format (by the text after the last dot); JPEG at OpenCV's
/// default quality 95.
fn encode(img: &Image, enc: &str) -> std::result::Result<Vec<u8>, String> {
    use image::ImageEncoder;
    let fmt = enc.rsplit('.').next().unwrap_or("").to_lowercase();
    let n = img.height * img.width;
    let (pixels, color) = match img.channels {
        1 => (img.data.clone(), image::ExtendedColorType::L8),
        3 => {
            let (b, rest) = img.data.split_at(n);
            let (g, r) = rest.split_at(n);
            let rgb = (0..n).flat_map(|i| [r[i], g[i], b[i]]).collect();
            (rgb, image::ExtendedColorType::Rgb8)
        }
        c => return Err(format!("cannot encode a {c}-channel image")),
    };
    let (w, h) = (img.width as u32, img.height as u32);
    let mut out = Vec::new();
    let r = match fmt.as_str() {
        "png" => image::codecs::png::PngEncoder::new(&mut out).write_image(&pixels, w, h, color),
        "jpg" | "jpeg" | "jpe" => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .write_image(&pixels, w, h, color),
        _ => return Err(format!("unsupported encode_type '{enc}' (png or jpg)")),
    };
    r.map_err(|e| format!("cannot encode as {fmt}: {e}"))?;
    Ok(out)
}

/// One list entry → (serialized Datum, decoded size for `--check_size`).
fn make_record(
    root: &str,
    e: &ListEntry,
    o: &ConvertOptions,
) -> std::result::Result<(Vec<u8>, [usize; 3]), String> {
    let mut enc = o.encode_type.clone();
    if o.encoded && enc.is_empty() {
        // Caffe guesses from the file name, keeping the dot (".jpg").
        let p = e
            .path
            .rfind('.')
            .ok_or_else(|| format!("cannot guess the encoding of '{}'", e.path))?;
        enc = e.path[p..].to_lowercase();
    }
    let file = PathBuf::from(format!("{root}{}", e.path));
    let bytes =
        std::fs::read(&file).map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let mut img =
        Image::decode(&bytes, !o.gray).map_err(|err| format!("{}: {err}", file.display()))?;
    let (h, w) = (
        o.resize_height.max(0) as usize,
        o.resize_width.max(0) as usize,
    );
    if h > 0 && w > 0 {
        img = img.resized(h, w);
    }
    let dims = [img.channels, img.height, img.width];
    let datum = if enc.is_empty() {
        Datum {
            channels: Some(img.channels as i32),
            height: Some(img.height as i32),
            width: Some(img.width as i32),
            data: Some(img.data),
            label: Some(e.label),
            encoded: Some(false),
            ..Default::default()
        }
    } else {
        let data = if h == 0 && w == 0 && match_ext(&e.path, &enc) {
            bytes
        } else {
            encode(&img, &enc).map_err(|err| format!("{}: {err}", file.display()))?
        };
        Datum {
            data: Some(data),
            label: Some(e.label),
            encoded: Some(true),
            ..Default::default()
        }
    };
    Ok((datum.encode_to_vec(), dims))
}

/// Run the tool: `root` is prefixed to every listed path as a string (end
/// it with `/`, as with Caffe). Returns the number of records written.
pub fn convert_imageset(root: &str, list: &Path, db: &Path, o: &ConvertOptions) -> Result<usize> {
    let mut entries = parse_list_file(list)?;
    if o.shuffle {
        log::info(SITE_SHUFFLING, "Shuffling data");
        caffe_shuffle(&mut entries, &mut Mt19937::new(o.seed));
    }
    log::info(SITE_TOTAL, &format!("A total of {} images.", entries.len()));
    if !o.encode_type.is_empty() && !o.encoded {
        log::info(
            SITE_ENCODE_TYPE,
            "encode_type specified, assuming encoded=true.",
        );
    }
    let mut w = create_writer(o.backend, db)?;
    log_opened(o.backend, db);
    let result = (|| {
        let progress = std::io::stderr().is_terminal() && entries.len() >= 2 * COMMIT_EVERY;
        let mut first_dims = None;
        let mut count: usize = 0;
        for (c, chunk) in entries.chunks(COMMIT_EVERY).enumerate() {
            // Decode/resize/encode in parallel, store in list order.
            let made: Vec<_> = chunk.par_iter().map(|e| make_record(root, e, o)).collect();
            for (k, (e, r)) in chunk.iter().zip(made).enumerate() {
                let at = |msg: String| Error::Data(format!("{}:{}: {msg}", list.display(), e.line));
                let (value, dims) = r.map_err(at)?;
                if o.check_size {
                    match first_dims {
                        None => first_dims = Some(dims),
                        Some(d) if d != dims => {
                            return Err(at(format!(
                                "{}: image is {}x{}x{} but the first is {}x{}x{} (--check_size)",
                                e.path, dims[0], dims[1], dims[2], d[0], d[1], d[2]
                            )))
                        }
                        _ => {}
                    }
                }
                let line_id = c * COMMIT_EVERY + k;
                w.put(format!("{line_id:08}_{}", e.path).as_bytes(), &value);
                count += 1;
            }
            w.commit()?;
            if progress {
                eprint!("\r\x1b[K");
            }
            if count.is_multiple_of(COMMIT_EVERY) {
                log::info(SITE_PROCESSED, &format!("Processed {count} files."));
            }
            if progress && count < entries.len() {
                eprint!("\rconvert_imageset: {count}/{} images", entries.len());
            }
        }
        Ok(count)
    })();
    match result {
        Ok(count) => {
            w.finish()?;
            if !count.is_multiple_of(COMMIT_EVERY) {
                log::info(SITE_PROCESSED_LAST, &format!("Processed {count} files."));
            }
            Ok(count)
        }
        Err(e) => {
            drop(w);
            let _ = std::fs::remove_dir_all(db);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_follow_caffes_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        std::fs::write(&p, "a.jpg 1\r\ndir/with space.png -3\nb.png 7\n\n").unwrap();
        let l = parse_list_file(&p).unwrap();
        assert_eq!(
            l.iter()
                .map(|e| (e.line, e.path.as_str(), e.label))
                .collect::<Vec<_>>(),
            vec![
                (1, "a.jpg", 1),
                (2, "dir/with space.png", -3),
                (3, "b.png", 7)
            ]
        );
        for (text, line, what) in [
            ("a.jpg 1\nnolabel\n", 2, "expected"),
            ("a.jpg x\n", 1, "not an integer"),
            ("a.jpg 1\n\nb.jpg 2\n", 2, "expected"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = parse_list_file(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("list.txt:{line}:")) && e.contains(what),
                "{e}"
            );
        }
    }

    #[test]
    fn extension_match_keeps_caffes_dot() {
        assert!(match_ext("x/a.JPG", ".jpg"));
        assert!(!match_ext("a.jpg", "jpg"));
        assert!(!match_ext("a.png", ".jpg"));
    }

    #[test]
    fn encodes_png_losslessly_and_jpeg() {
        let img = Image {
            channels: 3,
            height: 2,
            width: 3,
            data: (0..18).map(|i| i * 10).collect(),
        };
        let png = encode(&img, ".png").unwrap();
        assert_eq!(Image::decode(&png, true).unwrap(), img);
        let jpg = encode(&img, "jpg").unwrap();
        assert!(jpg.starts_with(&[0xFF, 0xD8]));
        assert!(encode(&img, "bmp").unwrap_err().contains("unsupported"));
    }
}
