//! Running model-zoo nets without their data: replace every data layer by a
//! `DummyData` layer producing tops of the same shapes, and shrink batches so
//! that large nets run a forward/backward pass in seconds.
//!
//! Caffe sizes a data layer's tops from its first record at setup (§4 of
//! `reference/LAYERS.md`); without the data the shape must be worked out from
//! the prototxt, which is exact for batch size, crop size, resize and colour,
//! and needs a rule where the images themselves decide:
//!
//! | type       | first top (data)                                  | other tops |
//! |------------|---------------------------------------------------|------------|
//! | Data       | (N, C, crop or H, crop or W), C/H/W by source     | label (N)  |
//! | ImageData  | (N, 3 or 1 by is_color, crop or new_h, crop or new_w) | label (N) |
//! | WindowData | (N, 3, crop, crop)                                | label (N)  |
//! | MemoryData | (N, channels, height, width)                      | label (N)  |
//! | HDF5Data   | (N, hints.image) or the top's hint                | (N) each   |
//!
//! Data sources of the known datasets by name: a source containing `siamese`
//! holds MNIST pairs stacked as channels (2×28×28), `mnist` 1×28×28, `cifar`
//! 3×32×32. Anything else (ImageNet LMDBs, image lists without resize, HDF5
//! datasets) takes [`DataShapeHints::image`], by default 3×227×227. More
//! than one `mean_value` fixes C (Caffe requires one per channel), and
//! `force_gray` makes it 1.
//!
//! Data tops are filled uniformly in [0, 1] on every forward; labels are the
//! constant 0, a valid class index for every classifier and a valid
//! "dissimilar" flag for ContrastiveLoss. Python data layers and types from
//! Caffe forks are left alone, so building the net still fails with their
//! clear errors.
use crate::error::{Error, Result};
use crate::proto::caffe::{
    BlobShape, DummyDataParameter, FillerParameter, LayerParameter, NetParameter,
    TransformationParameter,
};

/// The data layer types [`swap_data_layers_for_dummy`] replaces.
pub const DATA_LAYER_TYPES: &[&str] =
    &["Data", "ImageData", "WindowData", "MemoryData", "HDF5Data"];

/// What to assume where a prototxt does not determine a top's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataShapeHints {
    /// (channels, height, width) of images whose size only the files know;
    /// `crop_size`, `new_height`/`new_width`, `is_color` still apply.
    pub image: [usize; 3],
    /// Per top name, the dims after the batch axis; overrides every rule
    /// (e.g. the feature count of an HDF5 dataset).
    pub tops: Vec<(String, Vec<usize>)>,
}

impl Default for DataShapeHints {
    fn default() -> Self {
        DataShapeHints {
            image: [3, 227, 227],
            tops: Vec::new(),
        }
    }
}

impl DataShapeHints {
    fn top(&self, name: &str) -> Option<&[usize]> {
        self.tops
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }
}

/// Replace each data layer of `param` (see [`DATA_LAYER_TYPES`]) by a
/// `DummyData` layer with the same name, tops and include/exclude rules, so
/// the result builds in every phase and stage exactly as the original does
/// (e.g. mnist_autoencoder's `test-on-train` stage). With `max_batch`, every
/// batch is capped at that size, including the first axis of existing
/// `Input`/`DummyData` layers (see [`shrink_batch`]). Shapes follow the
/// module's rules with [`DataShapeHints::default`].
pub fn swap_data_layers_for_dummy(
    param: &NetParameter,
    max_batch: Option<usize>,
) -> Result<NetParameter> {
    swap_data_layers_with(param, max_batch, &DataShapeHints::default())
}

/// [`swap_data_layers_for_dummy`] with explicit shape hints.
pub fn swap_data_layers_with(
    param: &NetParameter,
    max_batch: Option<usize>,
    hints: &DataShapeHints,
) -> Result<NetParameter> {
    let mut out = param.clone();
    for lp in &mut out.layer {
        if DATA_LAYER_TYPES.contains(&lp.r#type()) {
            *lp = dummy_for(lp, max_batch, hints)?;
        }
    }
    if let Some(b) = max_batch {
        out = shrink_batch(&out, b);
    }
    Ok(out)
}

/// Cap the batch (first axis) of everything that creates blobs at `batch`:
/// `Input` shapes, `DummyData` shapes (and legacy `num`), the batch_size of
/// data layers, and the legacy net-level `input_shape` / `input_dim`.
/// Reshape layers are not touched: nets that fold time into the batch axis
/// (LRCN's 16×10 clips) need their Reshape dims adjusted by the caller.
pub fn shrink_batch(param: &NetParameter, batch: usize) -> NetParameter {
    let cap_shapes = |shapes: &mut [BlobShape]| {
        for d in shapes.iter_mut().filter_map(|s| s.dim.first_mut()) {
            *d = (*d).min(batch as i64);
        }
    };
    let cap = |b: Option<&mut u32>| {
        if let Some(b) = b {
            *b = (*b).min(batch as u32);
        }
    };
    let mut out = param.clone();
    cap_shapes(&mut out.input_shape);
    // Legacy input_dim: four values (N, C, H, W) per input.
    for n in out.input_dim.iter_mut().step_by(4) {
        *n = (*n).min(batch as i32);
    }
    for lp in &mut out.layer {
        if let Some(p) = lp.input_param.as_mut() {
            cap_shapes(&mut p.shape);
        }
        if let Some(p) = lp.dummy_data_param.as_mut() {
            cap_shapes(&mut p.shape);
            p.num.iter_mut().for_each(|n| cap(Some(n)));
        }
        // An unset batch_size is 0 (invalid) or ImageData's default 1:
        // nothing to cap either way.
        cap(lp
            .memory_data_param
            .as_mut()
            .and_then(|p| p.batch_size.as_mut()));
        cap(lp.data_param.as_mut().and_then(|p| p.batch_size.as_mut()));
        cap(lp
            .image_data_param
            .as_mut()
            .and_then(|p| p.batch_size.as_mut()));
        cap(lp
            .window_data_param
            .as_mut()
            .and_then(|p| p.batch_size.as_mut()));
        cap(lp
            .hdf5_data_param
            .as_mut()
            .and_then(|p| p.batch_size.as_mut()));
    }
    out
}

/// (channels, height, width) of a dataset known by its source name.
fn known_source(source: &str) -> Option<[usize; 3]> {
    let s = source.to_ascii_lowercase();
    if s.contains("siamese") {
        Some([2, 28, 28])
    } else if s.contains("mnist") {
        Some([1, 28, 28])
    } else if s.contains("cifar") {
        Some([3, 32, 32])
    } else {
        None
    }
}

fn err(lp: &LayerParameter, msg: impl std::fmt::Display) -> Error {
    Error::Net(format!(
        "cannot swap data layer '{}' ({}) for DummyData: {msg}",
        lp.name(),
        lp.r#type()
    ))
}

/// Apply the transformer's effect on the image shape: crop, gray, and the
/// channel count implied by a per-channel mean.
fn transformed(
    t: Option<&TransformationParameter>,
    legacy_crop: u32,
    chw: [usize; 3],
) -> [usize; 3] {
    let [mut c, mut h, mut w] = chw;
    let crop = t
        .map(|t| t.crop_size())
        .filter(|&c| c > 0)
        .unwrap_or(legacy_crop) as usize;
    if crop > 0 {
        (h, w) = (crop, crop);
    }
    if let Some(t) = t {
        if t.force_gray() {
            c = 1;
        } else if t.mean_value.len() > 1 {
            c = t.mean_value.len();
        }
    }
    [c, h, w]
}

fn dummy_for(
    lp: &LayerParameter,
    max_batch: Option<usize>,
    hints: &DataShapeHints,
) -> Result<LayerParameter> {
    let ty = lp.r#type();
    let nt = lp.top.len();
    let t = lp.transform_param.as_ref();
    let tops_exactly = |n: usize| {
        if nt == n {
            Ok(())
        } else {
            Err(err(
                lp,
                format!("it has {nt} tops, {ty} produces exactly {n}"),
            ))
        }
    };
    // (batch, dims of the first top after the batch axis)
    let (batch, first): (u32, Vec<usize>) = match ty {
        "Data" => {
            if !(1..=2).contains(&nt) {
                return Err(err(lp, format!("it has {nt} tops, Data produces 1 or 2")));
            }
            let p = lp.data_param.clone().unwrap_or_default();
            let chw = known_source(p.source()).unwrap_or(hints.image);
            (p.batch_size(), transformed(t, p.crop_size(), chw).to_vec())
        }
        "ImageData" => {
            tops_exactly(2)?;
            let p = lp.image_data_param.clone().unwrap_or_default();
            let [_, mut h, mut w] = hints.image;
            if p.new_height() > 0 && p.new_width() > 0 {
                (h, w) = (p.new_height() as usize, p.new_width() as usize);
            }
            let c = if p.is_color() { 3 } else { 1 };
            (
                p.batch_size(),
                transformed(t, p.crop_size(), [c, h, w]).to_vec(),
            )
        }
        "WindowData" => {
            tops_exactly(2)?;
            let p = lp.window_data_param.clone().unwrap_or_default();
            // Windows are cropped from colour images to crop_size.
            let [_, h, w] = hints.image;
            (
                p.batch_size(),
                transformed(t, p.crop_size(), [3, h, w]).to_vec(),
            )
        }
        "MemoryData" => {
            tops_exactly(2)?;
            let p = lp.memory_data_param.unwrap_or_default();
            let chw = [p.channels(), p.height(), p.width()].map(|d| d as usize);
            (p.batch_size(), chw.to_vec())
        }
        "HDF5Data" => {
            if nt == 0 {
                return Err(err(lp, "it has no tops"));
            }
            let p = lp.hdf5_data_param.clone().unwrap_or_default();
            (p.batch_size(), hints.image.to_vec())
        }
        _ => return Err(err(lp, "not a data layer type")),
    };
    let batch = max_batch.map_or(batch as usize, |m| (batch as usize).min(m));
    if batch == 0 {
        return Err(err(lp, "batch_size must be positive"));
    }
    let mut shapes = Vec::with_capacity(nt);
    let mut fillers = Vec::with_capacity(nt);
    for (i, name) in lp.top.iter().enumerate() {
        let dims: Vec<usize> = match hints.top(name) {
            Some(d) => d.to_vec(),
            None if i == 0 => first.clone(),
            None => Vec::new(),
        };
        if dims.contains(&0) {
            return Err(err(
                lp,
                format!("top '{name}' would have a zero dimension {dims:?}"),
            ));
        }
        let mut dim = vec![batch as i64];
        dim.extend(dims.iter().map(|&d| d as i64));
        shapes.push(BlobShape { dim });
        fillers.push(if i == 0 {
            FillerParameter {
                r#type: Some("uniform".into()),
                min: Some(0.0),
                max: Some(1.0),
                ..Default::default()
            }
        } else {
            FillerParameter {
                r#type: Some("constant".into()),
                value: Some(0.0),
                ..Default::default()
            }
        });
    }
    Ok(LayerParameter {
        name: lp.name.clone(),
        r#type: Some("DummyData".into()),
        top: lp.top.clone(),
        include: lp.include.clone(),
        exclude: lp.exclude.clone(),
        phase: lp.phase,
        dummy_data_param: Some(DummyDataParameter {
            data_filler: fillers,
            shape: shapes,
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::text::parse_net_text;

    fn shapes(p: &NetParameter, layer: usize) -> Vec<Vec<i64>> {
        let lp = &p.layer[layer];
        assert_eq!(lp.r#type(), "DummyData");
        lp.dummy_data_param
            .as_ref()
            .unwrap()
            .shape
            .iter()
            .map(|s| s.dim.clone())
            .collect()
    }

    #[test]
    fn data_layers_get_prototxt_shapes() {
        let net = parse_net_text(
            r#"
            layer { name: "mnist" type: "Data" top: "data" top: "label"
                    include { phase: TRAIN }
                    data_param { source: "examples/mnist/mnist_train_lmdb" batch_size: 64 } }
            layer { name: "img" type: "Data" top: "d2"
                    transform_param { crop_size: 224 mean_value: 104 mean_value: 117 mean_value: 123 }
                    data_param { source: "ilsvrc12_train_lmdb" batch_size: 32 } }
            layer { name: "pairs" type: "Data" top: "pair" top: "sim"
                    data_param { source: "mnist_siamese_train_leveldb" batch_size: 8 } }
            layer { name: "list" type: "ImageData" top: "a" top: "b"
                    transform_param { crop_size: 100 }
                    image_data_param { source: "x.txt" batch_size: 4 new_height: 240 new_width: 320 is_color: false } }
            layer { name: "list2" type: "ImageData" top: "a2" top: "b2"
                    image_data_param { source: "x.txt" new_height: 240 new_width: 320 } }
            layer { name: "win" type: "WindowData" top: "w" top: "wl"
                    transform_param { crop_size: 227 }
                    window_data_param { source: "w.txt" batch_size: 128 } }
            layer { name: "mem" type: "MemoryData" top: "m" top: "ml"
                    memory_data_param { batch_size: 5 channels: 2 height: 3 width: 4 } }
            layer { name: "h5" type: "HDF5Data" top: "x" top: "y" top: "z"
                    hdf5_data_param { source: "h.txt" batch_size: 10 } }
            layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
                    inner_product_param { num_output: 2 } }
            "#,
            "t",
        )
        .unwrap();
        let hints = DataShapeHints {
            tops: vec![("x".into(), vec![4])],
            ..Default::default()
        };
        let p = swap_data_layers_with(&net, None, &hints).unwrap();
        assert_eq!(shapes(&p, 0), vec![vec![64, 1, 28, 28], vec![64]]);
        assert_eq!(p.layer[0].include, net.layer[0].include);
        assert_eq!(p.layer[0].name(), "mnist");
        assert_eq!(p.layer[0].top, net.layer[0].top);
        assert_eq!(shapes(&p, 1), vec![vec![32, 3, 224, 224]]);
        assert_eq!(shapes(&p, 2), vec![vec![8, 2, 28, 28], vec![8]]);
        assert_eq!(shapes(&p, 3), vec![vec![4, 1, 100, 100], vec![4]]);
        // batch_size defaults to 1; no crop keeps the resize.
        assert_eq!(shapes(&p, 4), vec![vec![1, 3, 240, 320], vec![1]]);
        assert_eq!(shapes(&p, 5), vec![vec![128, 3, 227, 227], vec![128]]);
        assert_eq!(shapes(&p, 6), vec![vec![5, 2, 3, 4], vec![5]]);
        assert_eq!(shapes(&p, 7), vec![vec![10, 4], vec![10], vec![10]]);
        assert_eq!(p.layer[8], net.layer[8]);
        // Data uniform in [0, 1], labels constant 0.
        let f = &p.layer[0].dummy_data_param.as_ref().unwrap().data_filler;
        assert_eq!(
            (f[0].r#type(), f[0].min(), f[0].max()),
            ("uniform", 0.0, 1.0)
        );
        assert_eq!((f[1].r#type(), f[1].value()), ("constant", 0.0));

        let small = swap_data_layers_with(&net, Some(2), &hints).unwrap();
        assert_eq!(shapes(&small, 0), vec![vec![2, 1, 28, 28], vec![2]]);
        assert_eq!(shapes(&small, 4), vec![vec![1, 3, 240, 320], vec![1]]);
    }

    #[test]
    fn legacy_crop_and_default_image() {
        let net = parse_net_text(
            r#"layer { name: "d" type: "Data" top: "data" top: "label"
                       data_param { source: "somewhere" batch_size: 3 crop_size: 50 } }
               layer { name: "e" type: "Data" top: "e"
                       data_param { source: "somewhere" batch_size: 3 } }"#,
            "t",
        )
        .unwrap();
        let p = swap_data_layers_for_dummy(&net, None).unwrap();
        assert_eq!(shapes(&p, 0), vec![vec![3, 3, 50, 50], vec![3]]);
        assert_eq!(shapes(&p, 1), vec![vec![3, 3, 227, 227]]);
    }

    #[test]
    fn bad_data_layers_are_errors() {
        for (text, want) in [
            (
                r#"layer { name: "d" type: "Data" top: "a" top: "b" top: "c" data_param { batch_size: 2 } }"#,
                "it has 3 tops",
            ),
            (
                r#"layer { name: "d" type: "ImageData" top: "a" }"#,
                "exactly 2",
            ),
            (
                r#"layer { name: "d" type: "Data" top: "a" data_param { source: "x" } }"#,
                "batch_size must be positive",
            ),
        ] {
            let net = parse_net_text(text, "t").unwrap();
            let e = swap_data_layers_for_dummy(&net, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("layer 'd'") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn shrink_caps_inputs_and_dummies() {
        let net = parse_net_text(
            r#"input: "old" input_dim: 10 input_dim: 3 input_dim: 4 input_dim: 5
               input: "old2" input_shape { dim: 7 dim: 2 }
               layer { name: "in" type: "Input" top: "a" top: "b"
                       input_param { shape { dim: 64 dim: 3 } shape { dim: 1 dim: 9 } } }
               layer { name: "dd" type: "DummyData" top: "c" top: "d"
                       dummy_data_param { shape { dim: 32 dim: 3 } num: 20 } }
               layer { name: "py" type: "Python" top: "e" }"#,
            "t",
        )
        .unwrap();
        let p = shrink_batch(&net, 2);
        assert_eq!(p.input_dim, vec![2, 3, 4, 5]);
        assert_eq!(p.input_shape[0].dim, vec![2, 2]);
        let ip = p.layer[0].input_param.as_ref().unwrap();
        assert_eq!(ip.shape[0].dim, vec![2, 3]);
        assert_eq!(ip.shape[1].dim, vec![1, 9]);
        let dd = p.layer[1].dummy_data_param.as_ref().unwrap();
        assert_eq!(dd.shape[0].dim, vec![2, 3]);
        assert_eq!(dd.num, vec![2]);
        assert_eq!(p.layer[2], net.layer[2]);
        // Python layers are not data layers to swap: they keep failing clearly.
        assert_eq!(
            swap_data_layers_for_dummy(&net, None).unwrap().layer[2],
            net.layer[2]
        );
    }
}
