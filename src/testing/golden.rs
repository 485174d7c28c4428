//! The golden-case harness: run one case of `../shared/golden/layers/<case>/`
//! (real BVLC Caffe's inputs, weights and outputs) through a `Net` on a
//! backend and compare every top, bottom diff and param diff.
//!
//! Procedure (the golden README's): build the case's net in its phase, copy
//! `params.caffemodel`, set the bottoms, forward, compare tops; zero param
//! diffs, set the top diffs, backward, compare bottom and param diffs.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::net::{Net, NetOptions};
use crate::proto::binary::{read_blob_proto_vector, read_net_binary};
use crate::proto::caffe::{BlobProto, Phase};
use crate::proto::text::parse_net_text;
use crate::tensor::Blob;

/// `../shared` next to the crate, or `$RCAFFE_SHARED` when set: test
/// executables carried to a lent GPU machine (scripts/gpu-bundle.sh) find
/// their copy of the golden cases and bench nets there.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("RCAFFE_SHARED") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// `golden/` of [`shared_dir`].
pub fn golden_dir() -> PathBuf {
    shared_dir().join("golden")
}

/// `|a - b| <= atol + rtol·|b|`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub atol: f32,
    pub rtol: f32,
}

/// The golden README's tolerance classes, by layer type: GEMM / reduction
/// layers and losses `atol 1e-5, rtol 1e-4`; element-wise, copy, shape and
/// transcendental layers `atol 1e-6, rtol 1e-5` (integer outputs, such as
/// indices and masks, are then exact). Scale and Bias, which the README
/// does not list, reduce over the batch for their operand's gradient, so
/// they are in the GEMM class; Im2col (a copy), Embed (named by the README
/// among the copy layers) and LSTMUnit (element-wise transcendentals) are
/// in the tight one.
pub fn tolerance_for(layer_type: &str) -> Tolerance {
    const GEMM: &[&str] = &[
        "Convolution",
        "Deconvolution",
        "InnerProduct",
        "LRN",
        "MVN",
        "BatchNorm",
        "LSTM",
        "RNN",
        "SPP",
        "Reduction",
        "Scale",
        "Bias",
    ];
    if GEMM.contains(&layer_type) || layer_type.ends_with("Loss") {
        Tolerance {
            atol: 1e-5,
            rtol: 1e-4,
        }
    } else {
        Tolerance {
            atol: 1e-6,
            rtol: 1e-5,
        }
    }
}

/// What one comparison found.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub what: String,
    pub max_abs: f32,
    pub max_rel: f32,
    pub ok: bool,
}

/// All comparisons of one case.
#[derive(Debug, Clone, Default)]
pub struct CaseReport {
    pub case: String,
    pub comparisons: Vec<Comparison>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        !self.comparisons.is_empty() && self.comparisons.iter().all(|c| c.ok)
    }
    pub fn summary(&self) -> String {
        let mut s = format!("case {}:", self.case);
        for c in &self.comparisons {
            s.push_str(&format!(
                "\n  {} {}: max abs {:.3e}, max rel {:.3e}",
                if c.ok { "ok  " } else { "FAIL" },
                c.what,
                c.max_abs,
                c.max_rel
            ));
        }
        s
    }
}

fn proto_values(p: &BlobProto) -> Vec<f32> {
    if !p.double_data.is_empty() {
        p.double_data.iter().map(|&d| d as f32).collect()
    } else {
        p.data.clone()
    }
}

/// Compare `got` with Caffe's `want` (shape and values).
pub fn compare(what: &str, got: &[f32], want: &[f32], tol: Tolerance) -> Comparison {
    if got.len() != want.len() {
        return Comparison {
            what: format!("{what} (length {} vs Caffe's {})", got.len(), want.len()),
            max_abs: f32::INFINITY,
            max_rel: f32::INFINITY,
            ok: false,
        };
    }
    let (mut max_abs, mut max_rel, mut ok) = (0f32, 0f32, true);
    for (&a, &b) in got.iter().zip(want) {
        let d = (a - b).abs();
        // Equal values (infinities included) and NaN-for-NaN pass; so does
        // anything within tolerance. A NaN difference fails.
        let within = d <= tol.atol + tol.rtol * b.abs();
        let same = a == b || (a.is_nan() && b.is_nan());
        if !within && !same {
            ok = false;
        }
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / b.abs().max(1e-3));
    }
    Comparison {
        what: what.to_string(),
        max_abs,
        max_rel,
        ok,
    }
}

fn case_json(dir: &Path) -> Result<serde_json::Value, String> {
    let text =
        std::fs::read_to_string(dir.join("case.json")).map_err(|e| format!("case.json: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("case.json: {e}"))
}

/// A case's comparisons and the values they were made on, so two backends'
/// runs of one case can also be compared with each other.
#[derive(Debug, Clone, Default)]
pub struct CaseRun {
    pub report: CaseReport,
    /// `(what, values)` of every value comparison (shape mismatches are
    /// reported in `report` only).
    pub outputs: Vec<(String, Vec<f32>)>,
}

impl CaseRun {
    fn push(&mut self, what: String, got: Vec<f32>, want: &[f32], tol: Tolerance) {
        self.report
            .comparisons
            .push(compare(&what, &got, want, tol));
        self.outputs.push((what, got));
    }
}

/// Run a case on the CPU backend.
pub fn run_case(case: &str) -> Result<CaseReport, String> {
    run_case_on(case, Arc::new(CpuBackend::new()))
}

/// Run a case on any backend.
pub fn run_case_on(case: &str, be: Arc<dyn Backend>) -> Result<CaseReport, String> {
    run_case_full(case, be).map(|r| r.report)
}

/// Run a case on any backend, keeping the values compared.
pub fn run_case_full(case: &str, be: Arc<dyn Backend>) -> Result<CaseRun, String> {
    let dir = golden_dir().join("layers").join(case);
    let meta = case_json(&dir)?;
    let layer_type = meta["layer_type"].as_str().unwrap_or("").to_string();
    let layer_name = meta["layer_name"].as_str().unwrap_or("layer").to_string();
    let tol = tolerance_for(&layer_type);
    let phase = if meta["phase"].as_str() == Some("TEST") {
        Phase::Test
    } else {
        Phase::Train
    };
    let forward_only = meta["forward_only"].as_bool().unwrap_or(false);
    let net_path = dir.join("net.prototxt");
    let text =
        std::fs::read_to_string(&net_path).map_err(|e| format!("{}: {e}", net_path.display()))?;
    let param =
        parse_net_text(&text, &net_path.display().to_string()).map_err(|e| e.to_string())?;
    let mut net = Net::new(&param, &NetOptions::new(phase), be).map_err(|e| e.to_string())?;
    let params_file = dir.join("params.caffemodel");
    if params_file.exists() {
        let weights = read_net_binary(&params_file).map_err(|e| e.to_string())?;
        net.copy_trained_layers_from(&weights)
            .map_err(|e| e.to_string())?;
    }
    let li = net
        .spec()
        .layer_id(&layer_name)
        .ok_or_else(|| format!("net has no layer '{layer_name}'"))?;
    // The layer's bottoms and tops by their names in net.prototxt.
    let orig = param
        .layer
        .iter()
        .find(|l| l.name() == layer_name)
        .ok_or_else(|| format!("net.prototxt has no layer '{layer_name}'"))?;
    let bottom_names = orig.bottom.clone();
    let top_names = orig.top.clone();
    let bottoms =
        read_blob_proto_vector(&dir.join("bottoms.binaryproto")).map_err(|e| e.to_string())?;
    if bottoms.blobs.len() == bottom_names.len() {
        for (name, bp) in bottom_names.iter().zip(&bottoms.blobs) {
            net.set_input(name, &proto_values(bp))
                .map_err(|e| e.to_string())?;
        }
    } else if !bottoms.blobs.is_empty() {
        return Err(format!(
            "bottoms.binaryproto has {} blobs, layer has {} bottoms",
            bottoms.blobs.len(),
            bottom_names.len()
        ));
    }
    let mut run = CaseRun {
        report: CaseReport {
            case: case.to_string(),
            comparisons: Vec::new(),
        },
        outputs: Vec::new(),
    };
    net.forward().map_err(|e| e.to_string())?;
    let tops = read_blob_proto_vector(&dir.join("tops.binaryproto")).map_err(|e| e.to_string())?;
    for (name, want) in top_names.iter().zip(&tops.blobs) {
        let got = net
            .blob_by_name(name)
            .ok_or_else(|| format!("no top '{name}'"))?;
        // The shape too: a top with the right count but the wrong axes
        // (e.g. MVN's legacy 4-D top, a 0-axis loss) is a mismatch.
        let want_shape = Blob::proto_shape(want).map_err(|e| e.to_string())?;
        if got.shape() != want_shape.as_slice() {
            run.report.comparisons.push(Comparison {
                what: format!(
                    "top {name} shape {:?} vs Caffe's {want_shape:?}",
                    got.shape()
                ),
                max_abs: f32::INFINITY,
                max_rel: f32::INFINITY,
                ok: false,
            });
        }
        run.push(
            format!("top {name}"),
            got.data_vec(),
            &proto_values(want),
            tol,
        );
    }
    let after_fwd = dir.join("params_after_forward.caffemodel");
    if after_fwd.exists() {
        let want = read_net_binary(&after_fwd).map_err(|e| e.to_string())?;
        if let Some(l) = want.layer.iter().find(|l| l.name() == layer_name) {
            for (j, bp) in l.blobs.iter().enumerate() {
                let got = net.layer_params(li)[j].data_vec();
                run.push(
                    format!("param {j} after forward"),
                    got,
                    &proto_values(bp),
                    tol,
                );
            }
        }
    }
    if forward_only {
        return Ok(run);
    }
    // Backward from the recorded top diffs, with zeroed param diffs.
    for j in 0..net.layer_params(li).len() {
        let b = net.layer_param_mut(li, j);
        let n = b.count();
        b.set_diff(&vec![0.0; n]).map_err(|e| e.to_string())?;
    }
    let top_diffs =
        read_blob_proto_vector(&dir.join("top_diffs.binaryproto")).map_err(|e| e.to_string())?;
    for (name, d) in top_names.iter().zip(&top_diffs.blobs) {
        let b = net
            .blob_by_name_mut(name)
            .ok_or_else(|| format!("no top '{name}'"))?;
        b.set_diff(&proto_values(d))
            .map_err(|e| format!("top diff {name}: {e}"))?;
    }
    net.backward().map_err(|e| e.to_string())?;
    let listed: Vec<String> = meta["bottom_diffs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let bd_file = dir.join("bottom_diffs.binaryproto");
    if !listed.is_empty() && bd_file.exists() {
        let bd = read_blob_proto_vector(&bd_file).map_err(|e| e.to_string())?;
        for (name, want) in listed.iter().zip(&bd.blobs) {
            let got = net
                .blob_by_name(name)
                .ok_or_else(|| format!("no bottom '{name}'"))?;
            run.push(
                format!("bottom diff {name}"),
                got.diff_vec(),
                &proto_values(want),
                tol,
            );
        }
    }
    let pd_file = dir.join("param_diffs.binaryproto");
    if pd_file.exists() {
        let pd = read_blob_proto_vector(&pd_file).map_err(|e| e.to_string())?;
        let params = net.layer_params(li);
        for (j, want) in pd.blobs.iter().enumerate() {
            let got = params
                .get(j)
                .ok_or_else(|| format!("layer has no param {j}"))?;
            run.push(
                format!("param {j} diff"),
                got.diff_vec(),
                &proto_values(want),
                tol,
            );
        }
    }
    Ok(run)
}

/// Run a case and panic with the report unless every comparison passes.
pub fn assert_case(case: &str) {
    match run_case(case) {
        Ok(r) if r.passed() => {}
        Ok(r) => panic!("{}", r.summary()),
        Err(e) => panic!("case {case}: {e}"),
    }
}

/// All case names (folder names), sorted.
pub fn all_cases() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(golden_dir().join("layers"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
