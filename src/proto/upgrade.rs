//! Caffe's proto upgrades (`src/caffe/util/upgrade_proto.cpp`), step for
//! step: V0 → V1 (padding layers folded into conv/pool), data-transformation
//! fields → `transform_param`, V1 → V2 (`layers` → `layer`), `input` fields →
//! an `Input` layer, old-style BatchNorm params, and the solver's
//! `solver_type` enum → `type` string.
//!
//! Every upgrade runs on every net that is read (text or binary), as in
//! Caffe. Caffe's log lines are returned as [`Note`]s instead of printed, so
//! that library callers decide where they go; Caffe's `LOG(FATAL)`s become
//! errors naming the file.
use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
pub use crate::log::Severity;
use crate::proto::caffe::{
    param_spec, pooling_parameter, solver_parameter, v0_layer_parameter, v1_layer_parameter,
    BlobShape, InputParameter, LayerParameter, NetParameter, SolverParameter, V0LayerParameter,
    V1LayerParameter,
};
use crate::proto::{binary, text};

use v1_layer_parameter::LayerType as V1;

/// One of Caffe's upgrade log messages, with the `file:line` Caffe logs it
/// from (for glog-style output through `crate::log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub severity: Severity,
    pub site: &'static str,
    pub text: String,
}

impl Note {
    /// Log it through `crate::log` (glog format, stderr by default).
    pub fn log(&self) {
        crate::log::log(self.severity, self.site, &self.text);
    }
}

/// What an upgrade did: Caffe's messages, and whether every field found a
/// home (Caffe's `success`; on `false` Caffe continues with what it has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub notes: Vec<Note>,
    pub success: bool,
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

impl Report {
    /// An empty, successful report (for calling the single steps).
    pub fn new() -> Self {
        Report {
            notes: Vec::new(),
            success: true,
        }
    }
    fn info(&mut self, site: &'static str, text: impl Into<String>) {
        self.push(Severity::Info, site, text);
    }
    fn warn(&mut self, site: &'static str, text: impl Into<String>) {
        self.push(Severity::Warning, site, text);
    }
    fn error(&mut self, site: &'static str, text: impl Into<String>) {
        self.push(Severity::Error, site, text);
    }
    fn push(&mut self, severity: Severity, site: &'static str, text: impl Into<String>) {
        self.notes.push(Note {
            severity,
            site,
            text: text.into(),
        });
    }
    /// The messages' texts, in order.
    pub fn texts(&self) -> Vec<String> {
        self.notes.iter().map(|n| n.text.clone()).collect()
    }
    /// Log every message through `crate::log`.
    pub fn log(&self) {
        self.notes.iter().for_each(Note::log);
    }
}

/// Where Caffe logs each upgrade message from (`upgrade_proto.cpp` of BVLC
/// master; the line numbers are approximate, as nothing parses them).
mod site {
    pub const V0_ATTEMPT: &str = "upgrade_proto.cpp:28";
    pub const V0_PROBLEMS: &str = "upgrade_proto.cpp:33";
    pub const V0_SUCCESS: &str = "upgrade_proto.cpp:36";
    pub const V0_NOTE: &str = "upgrade_proto.cpp:39";
    pub const DATA_ATTEMPT: &str = "upgrade_proto.cpp:46";
    pub const DATA_SUCCESS: &str = "upgrade_proto.cpp:49";
    pub const DATA_NOTE: &str = "upgrade_proto.cpp:51";
    pub const V1_ATTEMPT: &str = "upgrade_proto.cpp:55";
    pub const V1_PROBLEMS: &str = "upgrade_proto.cpp:60";
    pub const V1_SUCCESS: &str = "upgrade_proto.cpp:63";
    pub const INPUT_ATTEMPT: &str = "upgrade_proto.cpp:69";
    pub const INPUT_SUCCESS: &str = "upgrade_proto.cpp:72";
    pub const INPUT_NOTE: &str = "upgrade_proto.cpp:74";
    pub const BN_ATTEMPT: &str = "upgrade_proto.cpp:79";
    pub const BN_SUCCESS: &str = "upgrade_proto.cpp:82";
    pub const V0_LAYER: &str = "upgrade_proto.cpp:219";
    pub const V1_LAYER_FAILED: &str = "upgrade_proto.cpp:591";
    pub const V1_LAYER: &str = "upgrade_proto.cpp:584";
    pub const SOLVER_ATTEMPT: &str = "upgrade_proto.cpp:1116";
    pub const SOLVER_SUCCESS: &str = "upgrade_proto.cpp:1123";
    pub const SOLVER_NOTE: &str = "upgrade_proto.cpp:1125";
    pub const SNAPSHOT_PREFIX: &str = "upgrade_proto.cpp:1147";
}

fn fatal(source: &str, msg: impl Into<String>) -> Error {
    Error::format(source, msg)
}

// ---------------------------------------------------------------- net ----

/// Caffe's `NetNeedsUpgrade` (master): any of the five upgrades applies.
pub fn net_needs_upgrade(net: &NetParameter) -> bool {
    net_needs_v0_to_v1_upgrade(net)
        || net_needs_v1_to_v2_upgrade(net)
        || net_needs_data_upgrade(net)
        || net_needs_input_upgrade(net)
        || net_needs_batch_norm_upgrade(net)
}

/// Caffe's `UpgradeNetAsNeeded`, returning its log messages.
pub fn upgrade_net_as_needed(net: &mut NetParameter, source: &str) -> Result<Vec<String>> {
    Ok(upgrade_net(net, source)?.texts())
}

/// Caffe's `UpgradeNetAsNeeded` with the messages' severities and the
/// success flag.
pub fn upgrade_net(net: &mut NetParameter, source: &str) -> Result<Report> {
    let mut r = Report::new();
    if net_needs_v0_to_v1_upgrade(net) {
        r.info(
            site::V0_ATTEMPT,
            format!(
            "Attempting to upgrade input file specified using deprecated V0LayerParameter: {source}"
        ),
        );
        let original = std::mem::take(net);
        if !upgrade_v0_net(&original, net, source, &mut r)? {
            r.success = false;
            r.error(
                site::V0_PROBLEMS,
                "Warning: had one or more problems upgrading V0NetParameter to NetParameter \
                 (see above); continuing anyway.",
            );
        } else {
            r.info(
                site::V0_SUCCESS,
                "Successfully upgraded file specified using deprecated V0LayerParameter",
            );
        }
        r.warn(
            site::V0_NOTE,
            "Note that future Caffe releases will not support V0NetParameter; use \
             ./build/tools/upgrade_net_proto_text for prototxt and \
             ./build/tools/upgrade_net_proto_binary for model weights upgrade this and any \
             other net protos to the new format.",
        );
    }
    if net_needs_data_upgrade(net) {
        r.info(
            site::DATA_ATTEMPT,
            format!(
                "Attempting to upgrade input file specified using deprecated transformation \
             parameters: {source}"
            ),
        );
        upgrade_net_data_transformation(net);
        r.info(
            site::DATA_SUCCESS,
            "Successfully upgraded file specified using deprecated data transformation \
             parameters.",
        );
        r.warn(
            site::DATA_NOTE,
            "Note that future Caffe releases will only support transform_param messages for \
             transformation fields.",
        );
    }
    if net_needs_v1_to_v2_upgrade(net) {
        r.info(
            site::V1_ATTEMPT,
            format!(
            "Attempting to upgrade input file specified using deprecated V1LayerParameter: {source}"
        ),
        );
        let original = std::mem::take(net);
        if !upgrade_v1_net(&original, net, source, &mut r)? {
            r.success = false;
            r.error(
                site::V1_PROBLEMS,
                "Warning: had one or more problems upgrading V1LayerParameter (see above); \
                 continuing anyway.",
            );
        } else {
            r.info(
                site::V1_SUCCESS,
                "Successfully upgraded file specified using deprecated V1LayerParameter",
            );
        }
    }
    if net_needs_input_upgrade(net) {
        r.info(
            site::INPUT_ATTEMPT,
            format!(
            "Attempting to upgrade input file specified using deprecated input fields: {source}"
        ),
        );
        upgrade_net_input(net, source)?;
        r.info(
            site::INPUT_SUCCESS,
            "Successfully upgraded file specified using deprecated input fields.",
        );
        r.warn(
            site::INPUT_NOTE,
            "Note that future Caffe releases will only support input layers and not input fields.",
        );
    }
    if net_needs_batch_norm_upgrade(net) {
        r.info(
            site::BN_ATTEMPT,
            format!("Attempting to upgrade batch norm layers using deprecated params: {source}"),
        );
        upgrade_net_batch_norm(net);
        r.info(
            site::BN_SUCCESS,
            "Successfully upgraded batch norm layers using deprecated params.",
        );
    }
    Ok(r)
}

// ------------------------------------------------------------ V0 → V1 ----

/// Some `layers` entry holds a nested V0 `layer`.
pub fn net_needs_v0_to_v1_upgrade(net: &NetParameter) -> bool {
    net.layers.iter().any(|l| l.layer.is_some())
}

/// Caffe's `UpgradeV0Net`: returns whether the upgrade was fully compatible.
pub fn upgrade_v0_net(
    v0_with_padding: &NetParameter,
    net: &mut NetParameter,
    source: &str,
    r: &mut Report,
) -> Result<bool> {
    let v0 = upgrade_v0_padding_layers(v0_with_padding, source)?;
    let mut ok = true;
    *net = NetParameter::default();
    net.name = v0.name.clone();
    for layer in &v0.layers {
        let mut out = V1LayerParameter::default();
        ok &= upgrade_v0_layer_parameter(layer, &mut out, source, r)?;
        net.layers.push(out);
    }
    net.input = v0.input.clone();
    net.input_dim = v0.input_dim.clone();
    net.force_backward = v0.force_backward;
    Ok(ok)
}

/// Caffe's `UpgradeV0PaddingLayers`: drop V0 "padding" layers, moving their
/// `pad` into the conv/pool layer they feed and rewiring its bottom.
pub fn upgrade_v0_padding_layers(param: &NetParameter, source: &str) -> Result<NetParameter> {
    let mut out = param.clone();
    out.layers.clear();
    // Blob name → index of the layer that last produced it (-1: net input).
    let mut last_top: HashMap<&str, isize> = HashMap::new();
    for name in &param.input {
        last_top.insert(name, -1);
    }
    for (i, conn) in param.layers.iter().enumerate() {
        let ty = v0_type(conn);
        if ty != "padding" {
            out.layers.push(conn.clone());
        }
        for (j, blob) in conn.bottom.iter().enumerate() {
            let top_idx = *last_top
                .get(blob.as_str())
                .ok_or_else(|| fatal(source, format!("Unknown blob input {blob} to layer {j}")))?;
            if top_idx < 0 {
                continue;
            }
            let src = &param.layers[top_idx as usize];
            if v0_type(src) != "padding" {
                continue;
            }
            // Caffe CHECKs these; other cases were undefined in old Caffe.
            if ty != "conv" && ty != "pool" {
                return Err(fatal(
                    source,
                    format!(
                        "Padding layer input to non-convolutional / non-pooling layer type {ty}"
                    ),
                ));
            }
            if conn.bottom.len() != 1 {
                return Err(fatal(source, "Conv Layer takes a single blob as input."));
            }
            if src.bottom.len() != 1 {
                return Err(fatal(source, "Padding Layer takes a single blob as input."));
            }
            if src.top.len() != 1 {
                return Err(fatal(
                    source,
                    "Padding Layer produces a single blob as output.",
                ));
            }
            let pad = src.layer.as_ref().map_or(0, |l| l.pad());
            let last = out
                .layers
                .last_mut()
                .expect("conv/pool layer was just pushed");
            last.layer.get_or_insert_with(Default::default).pad = Some(pad);
            last.bottom[j] = src.bottom[0].clone();
        }
        for blob in &conn.top {
            last_top.insert(blob, i as isize);
        }
    }
    Ok(out)
}

fn v0_type(conn: &V1LayerParameter) -> &str {
    conn.layer.as_ref().map_or("", |l| l.r#type())
}

/// Caffe's `UpgradeV0LayerParameter`: one V0 layer connection → V1 layer.
pub fn upgrade_v0_layer_parameter(
    conn: &V1LayerParameter,
    out: &mut V1LayerParameter,
    source: &str,
    r: &mut Report,
) -> Result<bool> {
    *out = V1LayerParameter {
        bottom: conn.bottom.clone(),
        top: conn.top.clone(),
        ..Default::default()
    };
    let Some(v0) = conn.layer.as_ref() else {
        return Ok(true);
    };
    out.name = v0.name.clone();
    let ty = v0.r#type();
    if v0.r#type.is_some() {
        out.r#type = Some(upgrade_v0_layer_type(ty, source)? as i32);
    }
    out.blobs = v0.blobs.clone();
    out.blobs_lr = v0.blobs_lr.clone();
    out.weight_decay = v0.weight_decay.clone();

    macro_rules! sub {
        ($name:ident) => {
            out.$name.get_or_insert_with(Default::default)
        };
    }
    let ok = upgrade_v0_fields(v0, ty, out, r);

    if v0.scale.is_some() {
        sub!(transform_param).scale = v0.scale;
    }
    if v0.meanfile.is_some() {
        sub!(transform_param).mean_file = v0.meanfile.clone();
    }
    if v0.cropsize.is_some() {
        sub!(transform_param).crop_size = v0.cropsize;
    }
    if v0.mirror.is_some() {
        sub!(transform_param).mirror = v0.mirror;
    }
    Ok(ok)
}

/// The type-dependent V0 fields, in Caffe's order (the order of the
/// "Unknown parameter" messages depends on it).
fn upgrade_v0_fields(
    v0: &V0LayerParameter,
    ty: &str,
    out: &mut V1LayerParameter,
    r: &mut Report,
) -> bool {
    let mut ok = true;
    let mut unknown = |field: &str, r: &mut Report| {
        r.error(
            site::V0_LAYER,
            format!("Unknown parameter {field} for layer type {ty}"),
        );
        ok = false;
    };
    macro_rules! sub {
        ($name:ident) => {
            out.$name.get_or_insert_with(Default::default)
        };
    }
    if let Some(v) = v0.num_output {
        match ty {
            "conv" => sub!(convolution_param).num_output = Some(v),
            "innerproduct" => sub!(inner_product_param).num_output = Some(v),
            _ => unknown("num_output", r),
        }
    }
    if let Some(v) = v0.biasterm {
        match ty {
            "conv" => sub!(convolution_param).bias_term = Some(v),
            "innerproduct" => sub!(inner_product_param).bias_term = Some(v),
            _ => unknown("biasterm", r),
        }
    }
    if let Some(v) = &v0.weight_filler {
        match ty {
            "conv" => sub!(convolution_param).weight_filler = Some(v.clone()),
            "innerproduct" => sub!(inner_product_param).weight_filler = Some(v.clone()),
            _ => unknown("weight_filler", r),
        }
    }
    if let Some(v) = &v0.bias_filler {
        match ty {
            "conv" => sub!(convolution_param).bias_filler = Some(v.clone()),
            "innerproduct" => sub!(inner_product_param).bias_filler = Some(v.clone()),
            _ => unknown("bias_filler", r),
        }
    }
    if let Some(v) = v0.pad {
        match ty {
            "conv" => sub!(convolution_param).pad.push(v),
            "pool" => sub!(pooling_param).pad = Some(v),
            _ => unknown("pad", r),
        }
    }
    if let Some(v) = v0.kernelsize {
        match ty {
            "conv" => sub!(convolution_param).kernel_size.push(v),
            "pool" => sub!(pooling_param).kernel_size = Some(v),
            _ => unknown("kernelsize", r),
        }
    }
    if let Some(v) = v0.group {
        match ty {
            "conv" => sub!(convolution_param).group = Some(v),
            _ => unknown("group", r),
        }
    }
    if let Some(v) = v0.stride {
        match ty {
            "conv" => sub!(convolution_param).stride.push(v),
            "pool" => sub!(pooling_param).stride = Some(v),
            _ => unknown("stride", r),
        }
    }
    let mut pool_ok = true;
    if let Some(v) = v0.pool {
        if ty == "pool" {
            use pooling_parameter::PoolMethod as P;
            use v0_layer_parameter::PoolMethod as P0;
            match P0::try_from(v) {
                Ok(P0::Max) => sub!(pooling_param).pool = Some(P::Max as i32),
                Ok(P0::Ave) => sub!(pooling_param).pool = Some(P::Ave as i32),
                Ok(P0::Stochastic) => sub!(pooling_param).pool = Some(P::Stochastic as i32),
                Err(_) => {
                    // Caffe's own message, not "Unknown parameter".
                    r.error(site::V0_LAYER, format!("Unknown pool method {v}"));
                    pool_ok = false;
                }
            }
        } else {
            unknown("pool", r);
        }
    }
    if let Some(v) = v0.dropout_ratio {
        match ty {
            "dropout" => sub!(dropout_param).dropout_ratio = Some(v),
            _ => unknown("dropout_ratio", r),
        }
    }
    if let Some(v) = v0.local_size {
        match ty {
            "lrn" => sub!(lrn_param).local_size = Some(v),
            _ => unknown("local_size", r),
        }
    }
    if let Some(v) = v0.alpha {
        match ty {
            "lrn" => sub!(lrn_param).alpha = Some(v),
            _ => unknown("alpha", r),
        }
    }
    if let Some(v) = v0.beta {
        match ty {
            "lrn" => sub!(lrn_param).beta = Some(v),
            _ => unknown("beta", r),
        }
    }
    if let Some(v) = v0.k {
        match ty {
            "lrn" => sub!(lrn_param).k = Some(v),
            _ => unknown("k", r),
        }
    }
    if let Some(v) = &v0.source {
        let v = Some(v.clone());
        match ty {
            "data" => sub!(data_param).source = v,
            "hdf5_data" => sub!(hdf5_data_param).source = v,
            "images" => sub!(image_data_param).source = v,
            "window_data" => sub!(window_data_param).source = v,
            "infogain_loss" => sub!(infogain_loss_param).source = v,
            _ => unknown("source", r),
        }
    }
    // Caffe moves scale/meanfile before batchsize and cropsize/mirror after
    // it; all four are type-independent, handled by the caller.
    if let Some(v) = v0.batchsize {
        let v = Some(v);
        match ty {
            "data" => sub!(data_param).batch_size = v,
            "hdf5_data" => sub!(hdf5_data_param).batch_size = v,
            "images" => sub!(image_data_param).batch_size = v,
            "window_data" => sub!(window_data_param).batch_size = v,
            _ => unknown("batchsize", r),
        }
    }
    if let Some(v) = v0.rand_skip {
        match ty {
            "data" => sub!(data_param).rand_skip = Some(v),
            "images" => sub!(image_data_param).rand_skip = Some(v),
            _ => unknown("rand_skip", r),
        }
    }
    if let Some(v) = v0.shuffle_images {
        match ty {
            "images" => sub!(image_data_param).shuffle = Some(v),
            _ => unknown("shuffle", r),
        }
    }
    // V0 new_height/new_width are int32, the new fields uint32: C++'s
    // implicit conversion wraps, and so does `as`.
    if let Some(v) = v0.new_height {
        match ty {
            "images" => sub!(image_data_param).new_height = Some(v as u32),
            _ => unknown("new_height", r),
        }
    }
    if let Some(v) = v0.new_width {
        match ty {
            "images" => sub!(image_data_param).new_width = Some(v as u32),
            _ => unknown("new_width", r),
        }
    }
    if let Some(v) = v0.concat_dim {
        match ty {
            "concat" => sub!(concat_param).concat_dim = Some(v),
            _ => unknown("concat_dim", r),
        }
    }
    if let Some(v) = v0.det_fg_threshold {
        match ty {
            "window_data" => sub!(window_data_param).fg_threshold = Some(v),
            _ => unknown("det_fg_threshold", r),
        }
    }
    if let Some(v) = v0.det_bg_threshold {
        match ty {
            "window_data" => sub!(window_data_param).bg_threshold = Some(v),
            _ => unknown("det_bg_threshold", r),
        }
    }
    if let Some(v) = v0.det_fg_fraction {
        match ty {
            "window_data" => sub!(window_data_param).fg_fraction = Some(v),
            _ => unknown("det_fg_fraction", r),
        }
    }
    if let Some(v) = v0.det_context_pad {
        match ty {
            "window_data" => sub!(window_data_param).context_pad = Some(v),
            _ => unknown("det_context_pad", r),
        }
    }
    if let Some(v) = &v0.det_crop_mode {
        match ty {
            "window_data" => sub!(window_data_param).crop_mode = Some(v.clone()),
            _ => unknown("det_crop_mode", r),
        }
    }
    if let Some(v) = &v0.hdf5_output_param {
        match ty {
            "hdf5_output" => out.hdf5_output_param = Some(v.clone()),
            _ => unknown("hdf5_output_param", r),
        }
    }
    ok && pool_ok
}

/// Caffe's `UpgradeV0LayerType`.
pub fn upgrade_v0_layer_type(ty: &str, source: &str) -> Result<V1> {
    Ok(match ty {
        "accuracy" => V1::Accuracy,
        "bnll" => V1::Bnll,
        "concat" => V1::Concat,
        "conv" => V1::Convolution,
        "data" => V1::Data,
        "dropout" => V1::Dropout,
        "euclidean_loss" => V1::EuclideanLoss,
        "flatten" => V1::Flatten,
        "hdf5_data" => V1::Hdf5Data,
        "hdf5_output" => V1::Hdf5Output,
        "im2col" => V1::Im2col,
        "images" => V1::ImageData,
        "infogain_loss" => V1::InfogainLoss,
        "innerproduct" => V1::InnerProduct,
        "lrn" => V1::Lrn,
        "multinomial_logistic_loss" => V1::MultinomialLogisticLoss,
        "pool" => V1::Pooling,
        "relu" => V1::Relu,
        "sigmoid" => V1::Sigmoid,
        "softmax" => V1::Softmax,
        "softmax_loss" => V1::SoftmaxLoss,
        "split" => V1::Split,
        "tanh" => V1::Tanh,
        "window_data" => V1::WindowData,
        _ => return Err(fatal(source, format!("Unknown layer name: {ty}"))),
    })
}

// ------------------------------------------------ data transformation ----

fn v1_type(l: &V1LayerParameter) -> i32 {
    l.r#type.unwrap_or(V1::None as i32)
}

/// A V1 DATA / IMAGE_DATA / WINDOW_DATA layer still has scale, mean_file,
/// crop_size or mirror in its data parameter.
pub fn net_needs_data_upgrade(net: &NetParameter) -> bool {
    net.layers.iter().any(|l| {
        let t = v1_type(l);
        let has = |s: Option<f32>, m: &Option<String>, c: Option<u32>, mi: Option<bool>| {
            s.is_some() || m.is_some() || c.is_some() || mi.is_some()
        };
        (t == V1::Data as i32
            && l.data_param
                .as_ref()
                .is_some_and(|p| has(p.scale, &p.mean_file, p.crop_size, p.mirror)))
            || (t == V1::ImageData as i32
                && l.image_data_param
                    .as_ref()
                    .is_some_and(|p| has(p.scale, &p.mean_file, p.crop_size, p.mirror)))
            || (t == V1::WindowData as i32
                && l.window_data_param
                    .as_ref()
                    .is_some_and(|p| has(p.scale, &p.mean_file, p.crop_size, p.mirror)))
    })
}

/// Caffe's `UpgradeNetDataTransformation`. Like Caffe's `mutable_*` calls,
/// it creates the data and transform sub-messages of every such layer even
/// when there is nothing to move (they then print as empty blocks).
pub fn upgrade_net_data_transformation(net: &mut NetParameter) {
    macro_rules! convert {
        ($l:expr, $ty:expr, $field:ident) => {
            if v1_type($l) == $ty as i32 {
                let p = $l.$field.get_or_insert_with(Default::default);
                let t = $l.transform_param.get_or_insert_with(Default::default);
                if let Some(v) = p.scale.take() {
                    t.scale = Some(v);
                }
                if let Some(v) = p.mean_file.take() {
                    t.mean_file = Some(v);
                }
                if let Some(v) = p.crop_size.take() {
                    t.crop_size = Some(v);
                }
                if let Some(v) = p.mirror.take() {
                    t.mirror = Some(v);
                }
            }
        };
    }
    for l in &mut net.layers {
        convert!(l, V1::Data, data_param);
        convert!(l, V1::ImageData, image_data_param);
        convert!(l, V1::WindowData, window_data_param);
    }
}

// ------------------------------------------------------------ V1 → V2 ----

pub fn net_needs_v1_to_v2_upgrade(net: &NetParameter) -> bool {
    !net.layers.is_empty()
}

/// Caffe's `UpgradeV1Net`: returns whether every layer upgraded cleanly.
pub fn upgrade_v1_net(
    v1: &NetParameter,
    net: &mut NetParameter,
    source: &str,
    r: &mut Report,
) -> Result<bool> {
    if !v1.layer.is_empty() {
        return Err(fatal(
            source,
            "Refusing to upgrade inconsistent NetParameter input; the definition includes both \
             'layer' and 'layers' fields. The current format defines 'layer' fields with string \
             type like layer { type: 'Layer' ... } and not layers { type: LAYER ... }. Manually \
             switch the definition to 'layer' format to continue.",
        ));
    }
    let mut ok = true;
    *net = v1.clone();
    net.layers.clear();
    net.layer.clear();
    for (i, l) in v1.layers.iter().enumerate() {
        let mut out = LayerParameter::default();
        if !upgrade_v1_layer_parameter(l, &mut out, source, r)? {
            r.error(
                site::V1_LAYER_FAILED,
                format!("Upgrade of input layer {i} failed."),
            );
            ok = false;
        }
        net.layer.push(out);
    }
    Ok(ok)
}

/// Caffe's `UpgradeV1LayerParameter`.
pub fn upgrade_v1_layer_parameter(
    v1: &V1LayerParameter,
    out: &mut LayerParameter,
    source: &str,
    r: &mut Report,
) -> Result<bool> {
    let mut ok = true;
    *out = LayerParameter {
        bottom: v1.bottom.clone(),
        top: v1.top.clone(),
        name: v1.name.clone(),
        include: v1.include.clone(),
        exclude: v1.exclude.clone(),
        blobs: v1.blobs.clone(),
        loss_weight: v1.loss_weight.clone(),
        ..Default::default()
    };
    if let Some(t) = v1.r#type {
        out.r#type = Some(upgrade_v1_layer_type(t, source)?.to_string());
    }
    fn spec(out: &mut LayerParameter, i: usize) -> &mut crate::proto::caffe::ParamSpec {
        if out.param.len() <= i {
            out.param.resize_with(i + 1, Default::default);
        }
        &mut out.param[i]
    }
    for (i, name) in v1.param.iter().enumerate() {
        spec(out, i).name = Some(name.clone());
    }
    for (i, &mode) in v1.blob_share_mode.iter().enumerate() {
        use param_spec::DimCheckMode as M;
        use v1_layer_parameter::DimCheckMode as M1;
        let m = match M1::try_from(mode) {
            Ok(M1::Strict) => M::Strict,
            Ok(M1::Permissive) => M::Permissive,
            Err(_) => return Err(fatal(source, format!("Unknown blob_share_mode: {mode}"))),
        };
        spec(out, i).share_mode = Some(m as i32);
    }
    for (i, &lr) in v1.blobs_lr.iter().enumerate() {
        spec(out, i).lr_mult = Some(lr);
    }
    for (i, &d) in v1.weight_decay.iter().enumerate() {
        spec(out, i).decay_mult = Some(d);
    }
    macro_rules! copy {
        ($($f:ident),*) => { $(if v1.$f.is_some() { out.$f = v1.$f.clone(); })* };
    }
    copy!(
        accuracy_param,
        argmax_param,
        concat_param,
        contrastive_loss_param,
        convolution_param,
        data_param,
        dropout_param,
        dummy_data_param,
        eltwise_param,
        exp_param,
        hdf5_data_param,
        hdf5_output_param,
        hinge_loss_param,
        image_data_param,
        infogain_loss_param,
        inner_product_param,
        lrn_param,
        memory_data_param,
        mvn_param,
        pooling_param,
        power_param,
        relu_param,
        sigmoid_param,
        softmax_param,
        slice_param,
        tanh_param,
        threshold_param,
        window_data_param,
        transform_param,
        loss_param
    );
    if v1.layer.is_some() {
        r.error(
            site::V1_LAYER,
            "Input NetParameter has V0 layer -- ignoring.",
        );
        ok = false;
    }
    Ok(ok)
}

/// Caffe's `UpgradeV1LayerType`: the V1 enum value → the layer type string.
pub fn upgrade_v1_layer_type(t: i32, source: &str) -> Result<&'static str> {
    let Ok(t) = V1::try_from(t) else {
        return Err(fatal(
            source,
            format!("Unknown V1LayerParameter layer type: {t}"),
        ));
    };
    Ok(match t {
        V1::None => "",
        V1::Absval => "AbsVal",
        V1::Accuracy => "Accuracy",
        V1::Argmax => "ArgMax",
        V1::Bnll => "BNLL",
        V1::Concat => "Concat",
        V1::ContrastiveLoss => "ContrastiveLoss",
        V1::Convolution => "Convolution",
        V1::Deconvolution => "Deconvolution",
        V1::Data => "Data",
        V1::Dropout => "Dropout",
        V1::DummyData => "DummyData",
        V1::EuclideanLoss => "EuclideanLoss",
        V1::Eltwise => "Eltwise",
        V1::Exp => "Exp",
        V1::Flatten => "Flatten",
        V1::Hdf5Data => "HDF5Data",
        V1::Hdf5Output => "HDF5Output",
        V1::HingeLoss => "HingeLoss",
        V1::Im2col => "Im2col",
        V1::ImageData => "ImageData",
        V1::InfogainLoss => "InfogainLoss",
        V1::InnerProduct => "InnerProduct",
        V1::Lrn => "LRN",
        V1::MemoryData => "MemoryData",
        V1::MultinomialLogisticLoss => "MultinomialLogisticLoss",
        V1::Mvn => "MVN",
        V1::Pooling => "Pooling",
        V1::Power => "Power",
        V1::Relu => "ReLU",
        V1::Sigmoid => "Sigmoid",
        V1::SigmoidCrossEntropyLoss => "SigmoidCrossEntropyLoss",
        V1::Silence => "Silence",
        V1::Softmax => "Softmax",
        V1::SoftmaxLoss => "SoftmaxWithLoss",
        V1::Split => "Split",
        V1::Slice => "Slice",
        V1::Tanh => "TanH",
        V1::WindowData => "WindowData",
        V1::Threshold => "Threshold",
    })
}

// ------------------------------------------------------- input fields ----

pub fn net_needs_input_upgrade(net: &NetParameter) -> bool {
    !net.input.is_empty()
}

/// Caffe's `UpgradeNetInput`: `input` + `input_shape`/`input_dim` become
/// one `Input` layer named "input" at the front of the net; an `input`
/// without shapes (old caffemodels) is just dropped.
pub fn upgrade_net_input(net: &mut NetParameter, source: &str) -> Result<()> {
    let has_shape = !net.input_shape.is_empty();
    let has_dim = !net.input_dim.is_empty();
    if has_shape || has_dim {
        let n = net.input.len();
        // Caffe indexes past the end here (undefined behaviour); refuse.
        if has_shape && net.input_shape.len() < n {
            return Err(fatal(
                source,
                format!("{n} inputs but only {} input_shape", net.input_shape.len()),
            ));
        }
        if !has_shape && net.input_dim.len() < 4 * n {
            return Err(fatal(
                source,
                format!(
                    "{n} inputs need {} input_dim values (4 per input), found {}",
                    4 * n,
                    net.input_dim.len()
                ),
            ));
        }
        let shape = (0..n)
            .map(|i| {
                if has_shape {
                    net.input_shape[i].clone()
                } else {
                    BlobShape {
                        dim: net.input_dim[4 * i..4 * i + 4]
                            .iter()
                            .map(|&d| d as i64)
                            .collect(),
                    }
                }
            })
            .collect();
        let layer = LayerParameter {
            name: Some("input".into()),
            r#type: Some("Input".into()),
            top: net.input.clone(),
            input_param: Some(InputParameter { shape }),
            ..Default::default()
        };
        net.layer.insert(0, layer);
    }
    net.input.clear();
    net.input_shape.clear();
    net.input_dim.clear();
    Ok(())
}

// ---------------------------------------------------------- BatchNorm ----

/// A BatchNorm layer declares exactly 3 `param`s (the old definition).
pub fn net_needs_batch_norm_upgrade(net: &NetParameter) -> bool {
    net.layer.iter().any(is_old_batch_norm)
}

fn is_old_batch_norm(l: &LayerParameter) -> bool {
    l.r#type() == "BatchNorm" && l.param.len() == 3
}

/// Caffe's `UpgradeNetBatchNorm`: lr_mult and decay_mult of those three
/// params become 0; other ParamSpec fields are kept.
pub fn upgrade_net_batch_norm(net: &mut NetParameter) {
    for l in net.layer.iter_mut().filter(|l| is_old_batch_norm(l)) {
        for p in &mut l.param {
            p.lr_mult = Some(0.0);
            p.decay_mult = Some(0.0);
        }
    }
}

// ------------------------------------------------------------- solver ----

pub fn solver_needs_type_upgrade(solver: &SolverParameter) -> bool {
    solver.solver_type.is_some()
}

/// Caffe's `UpgradeSolverAsNeeded`, returning its log messages.
pub fn upgrade_solver_as_needed(solver: &mut SolverParameter, source: &str) -> Result<Vec<String>> {
    Ok(upgrade_solver(solver, source)?.texts())
}

/// Caffe's `UpgradeSolverAsNeeded` with severities and the success flag.
pub fn upgrade_solver(solver: &mut SolverParameter, source: &str) -> Result<Report> {
    let mut r = Report::new();
    if !solver_needs_type_upgrade(solver) {
        return Ok(r);
    }
    r.info(
        site::SOLVER_ATTEMPT,
        format!(
            "Attempting to upgrade input file specified using deprecated 'solver_type' field \
         (enum)': {source}"
        ),
    );
    upgrade_solver_type(solver, source)?;
    r.info(
        site::SOLVER_SUCCESS,
        "Successfully upgraded file specified using deprecated 'solver_type' field (enum) to \
         'type' field (string).",
    );
    r.warn(site::SOLVER_NOTE, "Note that future Caffe releases will only support 'type' field (string) for a solver's type.");
    Ok(r)
}

/// Caffe's `UpgradeSolverType`: `solver_type` (enum) → `type` (string).
pub fn upgrade_solver_type(solver: &mut SolverParameter, source: &str) -> Result<()> {
    use solver_parameter::SolverType as S;
    let Some(t) = solver.solver_type else {
        return Ok(());
    };
    if solver.r#type.is_some() {
        return Err(fatal(
            source,
            "Failed to upgrade solver: old solver_type field (enum) and new type field (string) \
             cannot be both specified in solver proto text.",
        ));
    }
    let name = match S::try_from(t) {
        Ok(S::Sgd) => "SGD",
        Ok(S::Nesterov) => "Nesterov",
        Ok(S::Adagrad) => "AdaGrad",
        Ok(S::Rmsprop) => "RMSProp",
        Ok(S::Adadelta) => "AdaDelta",
        Ok(S::Adam) => "Adam",
        Err(_) => {
            return Err(fatal(
                source,
                format!("Unknown SolverParameter solver_type: {t}"),
            ))
        }
    };
    solver.r#type = Some(name.to_string());
    solver.solver_type = None;
    Ok(())
}

/// Caffe's `UpgradeSnapshotPrefixProperty` (run when a solver is read for
/// training): an unset `snapshot_prefix` becomes the solver file's path
/// without its extension; a prefix naming an existing directory becomes
/// `<dir>/<solver file stem>`. Returns Caffe's log message when it changed.
pub fn upgrade_snapshot_prefix(solver: &mut SolverParameter, solver_file: &Path) -> Option<String> {
    match &solver.snapshot_prefix {
        None => {
            let p = solver_file.with_extension("");
            solver.snapshot_prefix = Some(p.to_string_lossy().into_owned());
            Some(format!(
                "snapshot_prefix was not specified and is set to {}",
                p.display()
            ))
        }
        Some(prefix) if Path::new(prefix).is_dir() => {
            let stem = solver_file.file_stem().unwrap_or_default();
            let p = Path::new(prefix).join(stem);
            solver.snapshot_prefix = Some(p.to_string_lossy().into_owned());
            Some(format!(
                "snapshot_prefix is a directory and is set to {}",
                p.display()
            ))
        }
        Some(_) => None,
    }
}

// ------------------------------------------------------------ loaders ----

/// Read a net prototxt and upgrade it (Caffe's
/// `ReadNetParamsFromTextFileOrDie`); upgrade messages are logged (`crate::log`).
pub fn load_net_text(path: &Path) -> Result<NetParameter> {
    let mut net = text::read_net_text(path)?;
    let r = upgrade_net(&mut net, &path.display().to_string())?;
    r.log();
    Ok(net)
}

/// Read a `.caffemodel` and upgrade it (Caffe's
/// `ReadNetParamsFromBinaryFileOrDie`); upgrade messages are logged (`crate::log`).
pub fn load_net_binary(path: &Path) -> Result<NetParameter> {
    let mut net = binary::read_net_binary(path)?;
    let r = upgrade_net(&mut net, &path.display().to_string())?;
    r.log();
    Ok(net)
}

/// Read a solver prototxt as `caffe train` does (Caffe's
/// `ReadSolverParamsFromTextFileOrDie`): upgrade `solver_type`, then fix up
/// `snapshot_prefix`. Messages are logged (`crate::log`).
pub fn load_solver(path: &Path) -> Result<SolverParameter> {
    let mut solver = text::read_solver_text(path)?;
    let r = upgrade_solver(&mut solver, &path.display().to_string())?;
    r.log();
    if let Some(msg) = upgrade_snapshot_prefix(&mut solver, path) {
        crate::log::info(site::SNAPSHOT_PREFIX, &msg);
    }
    Ok(solver)
}
