//! Every registered layer type (issue 4): each is built inside a `Net` fed
//! by Input layers, twice:
//! - with a minimal valid parameter (the table below): the net must build,
//!   run forward with finite tops and run backward (except the types whose
//!   backward Caffe leaves undefined);
//! - with a bare parameter (name and type only) on the same bottoms: the
//!   net may build or fail, but a failure must be an error naming the layer
//!   and its type, and nothing may panic (construction, setup, reshape,
//!   forward or backward).
//!
//! `force_backward` makes backward reach every bottom that can take a
//! gradient, as Caffe's `caffe time` and zoo tests do.
//!
//! The table must cover `layer_types()`, so a newly registered type needs
//! an entry here.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::layers::data::memory_feed;
use rcaffe::layers::layer_types;
use rcaffe::net::{Net, NetOptions};
use rcaffe::proto::caffe::Phase;
use rcaffe::proto::text::parse_net_text;

/// How an input blob is filled.
#[derive(Clone, Copy)]
enum Fill {
    /// Values in [-1, 1).
    Signed,
    /// Values in [0.1, 1.1) (logs, probabilities).
    Positive,
    /// Integers `i mod k` (labels, indices, selectors).
    Ints(usize),
}

struct Case {
    ty: &'static str,
    /// The layer's parameter fields (prototxt), for the valid run.
    param: String,
    bottoms: Vec<(Vec<usize>, Fill)>,
    /// Top names: `t0`, `t1`, ... unless the layer needs its own (HDF5Data
    /// reads the datasets named like its tops).
    tops: Vec<String>,
}

fn top_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

fn case(ty: &'static str, param: &str, bottoms: &[(&[usize], Fill)], tops: usize) -> Case {
    Case {
        ty,
        param: param.to_string(),
        bottoms: bottoms.iter().map(|(s, f)| (s.to_vec(), *f)).collect(),
        tops: top_names(tops),
    }
}

/// Types whose backward Caffe leaves undefined: no backward is forced.
const NO_BACKWARD: &[&str] = &["Accuracy", "ArgMax", "Threshold"];

/// Types with an input that takes no gradient (indices, a selector,
/// InfogainLoss's H): `force_backward` would ask for it, and Caffe fails
/// then too. Their nets run backward only where something learnable needs
/// it (Embed's weights).
const NO_FORCE: &[&str] = &["BatchReindex", "Embed", "Filter", "InfogainLoss"];

/// Registered only with the `hdf5` feature.
const FEATURE_GATED: &[&str] = &["HDF5Data", "HDF5Output"];

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden")
}

/// The table. `dir` is a temp dir for the file-based layers (ImageData's
/// image and list, HDF5Output's file, which HDF5Data then reads: the
/// table's order matters there).
fn cases(dir: &Path) -> Vec<Case> {
    use Fill::*;
    let s = Signed;
    let img = |shape: &[usize]| vec![(shape.to_vec(), Signed)];
    let one = |ty: &'static str, param: &str, shape: &[usize]| Case {
        ty,
        param: param.to_string(),
        bottoms: img(shape),
        tops: top_names(1),
    };
    let lmdb = golden().join("train/data/test_lmdb");
    let list = dir.join("images.txt");
    let h5 = dir.join("out.h5");
    let h5_list = dir.join("h5.txt");
    vec![
        // Vision.
        one(
            "Convolution",
            "convolution_param { num_output: 2 kernel_size: 3 }",
            &[2, 3, 5, 5],
        ),
        one(
            "Deconvolution",
            "convolution_param { num_output: 2 kernel_size: 2 stride: 2 }",
            &[2, 3, 3, 3],
        ),
        one(
            "Im2col",
            "convolution_param { kernel_size: 2 }",
            &[2, 3, 4, 4],
        ),
        one(
            "InnerProduct",
            "inner_product_param { num_output: 3 }",
            &[2, 3, 4],
        ),
        one("LRN", "", &[2, 6, 4, 4]),
        one("Pooling", "pooling_param { kernel_size: 2 }", &[2, 3, 4, 4]),
        one("SPP", "spp_param { pyramid_height: 2 }", &[2, 3, 4, 4]),
        // Neurons.
        one("AbsVal", "", &[2, 3, 4]),
        one("BNLL", "", &[2, 3, 4]),
        one("Clip", "clip_param { min: -0.5 max: 0.5 }", &[2, 3, 4]),
        one("Dropout", "", &[2, 3, 4]),
        one("ELU", "", &[2, 3, 4]),
        one("Exp", "", &[2, 3, 4]),
        case("Log", "", &[(&[2, 3, 4], Positive)], 1),
        one("PReLU", "", &[2, 3, 4]),
        one("Power", "", &[2, 3, 4]),
        one("ReLU", "", &[2, 3, 4]),
        one("Sigmoid", "", &[2, 3, 4]),
        one("Swish", "", &[2, 3, 4]),
        one("TanH", "", &[2, 3, 4]),
        one("Threshold", "", &[2, 3, 4]),
        // Losses and their kin.
        case("Accuracy", "", &[(&[4, 5], s), (&[4], Ints(5))], 1),
        case(
            "ContrastiveLoss",
            "",
            &[(&[4, 3], s), (&[4, 3], s), (&[4, 1, 1, 1], Ints(2))],
            1,
        ),
        case("EuclideanLoss", "", &[(&[4, 3], s), (&[4, 3], s)], 1),
        case("HingeLoss", "", &[(&[4, 5], s), (&[4], Ints(5))], 1),
        case(
            "InfogainLoss",
            "",
            &[
                (&[4, 5], Positive),
                (&[4], Ints(5)),
                (&[1, 1, 5, 5], Positive),
            ],
            1,
        ),
        case(
            "MultinomialLogisticLoss",
            "",
            &[(&[4, 5], Positive), (&[4], Ints(5))],
            1,
        ),
        case(
            "SigmoidCrossEntropyLoss",
            "",
            &[(&[4, 5], s), (&[4, 5], Ints(2))],
            1,
        ),
        one("Softmax", "", &[2, 3, 4]),
        case("SoftmaxWithLoss", "", &[(&[4, 5], s), (&[4], Ints(5))], 1),
        // Common.
        case("Concat", "", &[(&[2, 3], s), (&[2, 4], s)], 1),
        case(
            "DummyData",
            "dummy_data_param { shape { dim: 2 dim: 3 } }",
            &[],
            1,
        ),
        case("Eltwise", "", &[(&[2, 3], s), (&[2, 3], s)], 1),
        one("Flatten", "", &[2, 3, 4]),
        case("Input", "input_param { shape { dim: 2 dim: 3 } }", &[], 1),
        case("Split", "", &[(&[2, 3], s)], 2),
        // Data (MemoryData's arrays are fed by `run_valid`).
        case(
            "Data",
            &format!(
                "data_param {{ source: '{}' batch_size: 2 backend: LMDB }}",
                lmdb.display()
            ),
            &[],
            2,
        ),
        case(
            "ImageData",
            &format!(
                "image_data_param {{ source: '{}' root_folder: '{}/' batch_size: 2 }}",
                list.display(),
                dir.display()
            ),
            &[],
            2,
        ),
        case(
            "MemoryData",
            "memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 }",
            &[],
            2,
        ),
        case(
            "HDF5Output",
            &format!("hdf5_output_param {{ file_name: '{}' }}", h5.display()),
            &[(&[2, 3], s), (&[2, 1], Ints(3))],
            0,
        ),
        // The datasets HDF5Output wrote: "data" and "label".
        Case {
            tops: vec!["data".into(), "label".into()],
            ..case(
                "HDF5Data",
                &format!(
                    "hdf5_data_param {{ source: '{}' batch_size: 2 }}",
                    h5_list.display()
                ),
                &[],
                2,
            )
        },
        // Normalization.
        one("BatchNorm", "", &[2, 3, 4]),
        one("Bias", "", &[2, 3, 4]),
        one("MVN", "", &[2, 3, 4]),
        one("Scale", "", &[2, 3, 4]),
        // Recurrent: (T, N, ...) inputs and (T, N) continuation flags.
        case(
            "LSTM",
            "recurrent_param { num_output: 3 }",
            &[(&[2, 2, 4], s), (&[2, 2], Ints(2))],
            1,
        ),
        case(
            "RNN",
            "recurrent_param { num_output: 3 }",
            &[(&[2, 2, 4], s), (&[2, 2], Ints(2))],
            1,
        ),
        case(
            "LSTMUnit",
            "",
            &[(&[1, 2, 3], s), (&[1, 2, 12], s), (&[1, 2], Ints(2))],
            2,
        ),
        // Shape.
        one("ArgMax", "", &[2, 5]),
        case("BatchReindex", "", &[(&[4, 3], s), (&[3], Ints(4))], 1),
        case("Crop", "", &[(&[2, 3, 6, 6], s), (&[2, 3, 4, 4], s)], 1),
        case(
            "Embed",
            "embed_param { num_output: 3 input_dim: 5 }",
            &[(&[4], Ints(5))],
            1,
        ),
        case("Filter", "", &[(&[4, 3], s), (&[4], Ints(2))], 1),
        case(
            "Parameter",
            "parameter_param { shape { dim: 2 dim: 3 } }",
            &[],
            1,
        ),
        one("Reduction", "", &[2, 3]),
        one(
            "Reshape",
            "reshape_param { shape { dim: 0 dim: -1 } }",
            &[2, 3, 4],
        ),
        case("Silence", "", &[(&[2, 3], s)], 0),
        case("Slice", "", &[(&[2, 4], s)], 2),
        one("Tile", "tile_param { tiles: 2 }", &[2, 3]),
    ]
}

/// Deterministic values for an input.
fn values(n: usize, fill: Fill, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (*seed >> 40) as f32 / (1u64 << 24) as f32;
            match fill {
                Fill::Signed => 2.0 * u - 1.0,
                Fill::Positive => u + 0.1,
                Fill::Ints(k) => (i % k) as f32,
            }
        })
        .collect()
}

/// The net: one Input layer per bottom (`b0`, `b1`, ...) and the layer
/// `layer_<type>` with its tops and `param` as its fields.
fn net_text(c: &Case, param: &str) -> String {
    let mut s = String::new();
    if !NO_BACKWARD.contains(&c.ty) && !NO_FORCE.contains(&c.ty) {
        s.push_str("force_backward: true\n");
    }
    for (i, (shape, _)) in c.bottoms.iter().enumerate() {
        let dims: String = shape.iter().map(|d| format!("dim: {d} ")).collect();
        s.push_str(&format!(
            "layer {{ name: 'in{i}' type: 'Input' top: 'b{i}' input_param {{ shape {{ {dims}}} }} }}\n"
        ));
    }
    s.push_str(&format!(
        "layer {{ name: 'layer_{}' type: '{}' ",
        c.ty, c.ty
    ));
    for i in 0..c.bottoms.len() {
        s.push_str(&format!("bottom: 'b{i}' "));
    }
    for t in &c.tops {
        s.push_str(&format!("top: '{t}' "));
    }
    s.push_str(param);
    s.push_str(" }\n");
    s
}

fn build(c: &Case, param: &str) -> rcaffe::Result<Net> {
    let text = net_text(c, param);
    let p = parse_net_text(&text, c.ty).unwrap_or_else(|e| panic!("{}: {e}\n{text}", c.ty));
    Net::new(
        &p,
        &NetOptions::new(Phase::Train),
        Arc::new(CpuBackend::new()),
    )
}

fn set_inputs(net: &mut Net, c: &Case) -> rcaffe::Result<()> {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for (i, (shape, fill)) in c.bottoms.iter().enumerate() {
        let n = shape.iter().product();
        net.set_input(&format!("b{i}"), &values(n, *fill, &mut seed))?;
    }
    Ok(())
}

/// The valid run: build, forward with finite tops, backward.
fn run_valid(c: &Case) -> Result<(), String> {
    if c.ty == "MemoryData" {
        // Two items of 1×2×2 and their labels, for the one batch.
        memory_feed("layer_MemoryData")
            .reset(vec![0.5; 8], vec![0.0, 1.0])
            .map_err(|e| e.to_string())?;
    }
    let mut net = build(c, &c.param).map_err(|e| format!("build: {e}"))?;
    set_inputs(&mut net, c).map_err(|e| e.to_string())?;
    net.forward().map_err(|e| format!("forward: {e}"))?;
    for name in &c.tops {
        let top = net
            .blob_by_name(name)
            .ok_or_else(|| format!("no top {name}"))?;
        if let Some(v) = top.data_vec().iter().find(|v| !v.is_finite()) {
            return Err(format!("top {name} holds {v}"));
        }
    }
    if !NO_BACKWARD.contains(&c.ty) {
        for name in &c.tops {
            if let Some(b) = net.blob_by_name_mut(name) {
                let n = b.count();
                b.set_diff(&vec![0.5; n]).map_err(|e| e.to_string())?;
            }
        }
        net.backward().map_err(|e| format!("backward: {e}"))?;
    }
    Ok(())
}

/// The bare run: whatever happens, no panic; a build error names the
/// layer and its type.
fn run_bare(c: &Case) -> Result<String, String> {
    match build(c, "") {
        Err(e) => {
            let e = e.to_string();
            if e.contains(&format!("layer_{}", c.ty)) && e.contains(c.ty) {
                Ok(format!("error: {e}"))
            } else {
                Err(format!(
                    "the error does not name the layer and its type: {e}"
                ))
            }
        }
        Ok(mut net) => {
            // It built: forward and backward may fail (no data fed), but
            // only with errors.
            let fwd = set_inputs(&mut net, c).and_then(|_| net.forward());
            let bwd = match fwd {
                Ok(_) if !NO_BACKWARD.contains(&c.ty) => net.backward().err(),
                _ => None,
            };
            Ok(format!(
                "built; forward {}, backward {}",
                fwd.map_or_else(|e| format!("error: {e}"), |_| "ok".into()),
                bwd.map_or("ok or skipped".into(), |e| format!("error: {e}"))
            ))
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-text panic)".into())
}

/// A 3×4 RGB PNG and a two-line list file for ImageData.
fn write_images(dir: &Path) {
    let img = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 60, 90]));
    img.save(dir.join("a.png")).unwrap();
    std::fs::write(dir.join("images.txt"), "a.png 0\na.png 1\n").unwrap();
}

#[test]
fn every_registered_type_builds_runs_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    std::fs::write(
        dir.path().join("h5.txt"),
        format!("{}\n", dir.path().join("out.h5").display()),
    )
    .unwrap();
    let table = cases(dir.path());
    let registered = layer_types();
    // The table covers the registry, and names nothing else.
    let listed: Vec<&str> = table.iter().map(|c| c.ty).collect();
    let unlisted: Vec<&&str> = registered.iter().filter(|t| !listed.contains(t)).collect();
    assert!(
        unlisted.is_empty(),
        "registered types without a case: {unlisted:?}"
    );
    let unknown: Vec<&&str> = listed
        .iter()
        .filter(|t| !registered.contains(t) && !FEATURE_GATED.contains(t))
        .collect();
    assert!(unknown.is_empty(), "cases for unknown types: {unknown:?}");

    let mut failures = Vec::new();
    let mut ran = 0;
    for c in table.iter().filter(|c| registered.contains(&c.ty)) {
        match catch_unwind(AssertUnwindSafe(|| run_valid(c))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{} (valid): {e}", c.ty)),
            Err(p) => failures.push(format!("{} (valid): PANIC {}", c.ty, panic_text(p))),
        }
        match catch_unwind(AssertUnwindSafe(|| run_bare(c))) {
            Ok(Ok(what)) => eprintln!("{:<24} bare: {what}", c.ty),
            Ok(Err(e)) => failures.push(format!("{} (bare): {e}", c.ty)),
            Err(p) => failures.push(format!("{} (bare): PANIC {}", c.ty, panic_text(p))),
        }
        ran += 1;
    }
    eprintln!("{ran} of {} registered types checked", registered.len());
    assert_eq!(ran, registered.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
