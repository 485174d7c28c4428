//! The pure description of a net, computed exactly as Caffe's `Net::Init`
//! does, without any backend or tensor: NetState filtering (`FilterNet`),
//! split insertion (`InsertSplits`), blob names → ids with in-place reuse,
//! loss weights, param sharing and the need-backward analysis.
//!
//! The runtime `Net` instantiates layers from a [`NetSpec`]; everything here
//! is testable on its own. Caffe's names are kept (`blob_names`,
//! `learnable_param_ids`, `params_lr` ...) so that its source stays a guide.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::error::{Error, Result};
use crate::proto::caffe::param_spec::DimCheckMode;
use crate::proto::caffe::{
    ConvolutionParameter, EmbedParameter, InnerProductParameter, LayerParameter, NetParameter,
    NetState, NetStateRule, ParamSpec, Phase, RecurrentParameter, ScaleParameter,
};

/// Name Caffe gives to the anonymous tops it adds for `AutoTopBlobs` layers.
pub const AUTOMATIC_TOP: &str = "(automatic)";

/// How many param blobs a layer has (Caffe knows this only after `SetUp`;
/// the runtime supplies it, [`default_num_param_blobs`] covers Caffe's types).
pub type NumBlobsFn<'a> = &'a dyn Fn(&LayerParameter) -> Result<usize>;

/// One layer of the net after filtering and split insertion.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// The layer's parameters as the layer holds them (what Caffe's
    /// `ToProto` saves): `phase` filled in from the net when unset, bottoms
    /// renamed to split outputs, `loss_weight: 1` added to loss layers without
    /// weights, `lr_mult: 0` ParamSpecs added to BatchNorm.
    pub param: LayerParameter,
    pub bottom_ids: Vec<usize>,
    /// Blob ids of the tops, including anonymous `(automatic)` tops at the end.
    pub top_ids: Vec<usize>,
    /// Per top: true when top j reuses bottom j's blob (same name, same index).
    pub top_in_place: Vec<bool>,
    /// Per top (automatic tops included); 0 for non-loss tops.
    pub loss_weights: Vec<f32>,
    pub need_backward: bool,
    pub bottom_need_backward: Vec<bool>,
    /// Global (net) param index of each of this layer's param blobs.
    pub param_ids: Vec<usize>,
    /// Per param blob: whether its gradient is computed (`lr_mult != 0`, or
    /// `force_backward`).
    pub param_propagate_down: Vec<bool>,
}

impl LayerSpec {
    pub fn name(&self) -> &str {
        self.param.name()
    }
    pub fn type_name(&self) -> &str {
        self.param.r#type()
    }
    /// Number of anonymous tops Caffe added (`AutoTopBlobs`).
    pub fn num_auto_tops(&self) -> usize {
        self.top_ids.len() - self.param.top.len()
    }
    /// True when any top carries a non-zero loss weight.
    pub fn is_loss(&self) -> bool {
        self.loss_weights.iter().any(|&w| w != 0.0)
    }
}

/// One param blob of the net (Caffe's `params_` entry).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub layer_id: usize,
    /// Index of the blob within its layer.
    pub param_index: usize,
    /// The ParamSpec name, or the index within the layer (Caffe's
    /// `param_display_names_`).
    pub display_name: String,
    /// Net param id of the owner when this blob shares another's storage.
    pub owner: Option<usize>,
    /// How the runtime must check a sharer's shape against its owner.
    pub share_mode: DimCheckMode,
}

/// The whole net as Caffe's `Net::Init` lays it out.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpec {
    pub name: String,
    pub phase: Phase,
    /// The state the layers were filtered with.
    pub state: NetState,
    /// The filtered parameters before split insertion: what Caffe logs as
    /// "Initializing net from parameters:".
    pub filtered: NetParameter,
    /// FilterNet's messages ("The NetState phase (0) differed ..."), in order.
    pub filter_log: Vec<String>,
    pub force_backward: bool,
    pub debug_info: bool,
    pub layers: Vec<LayerSpec>,
    pub blob_names: Vec<String>,
    pub blob_loss_weights: Vec<f32>,
    pub blob_need_backward: Vec<bool>,
    /// Tops of `Input` layers, in order.
    pub input_blob_ids: Vec<usize>,
    /// Blobs produced and never consumed, ordered by name (Caffe iterates a
    /// `std::set<string>`), which fixes the `#K` numbering in logs.
    pub output_blob_ids: Vec<usize>,
    pub params: Vec<ParamInfo>,
    /// Per net param: its slot among the learnable params (sharers get their
    /// owner's slot).
    pub learnable_param_ids: Vec<usize>,
    /// Net param id of each learnable param (owners only, in order).
    pub learnable_params: Vec<usize>,
    /// Per learnable param.
    pub params_lr: Vec<f32>,
    pub params_weight_decay: Vec<f32>,
    pub has_params_lr: Vec<bool>,
    pub has_params_decay: Vec<bool>,
}

impl NetSpec {
    /// Blob id by name; like Caffe's `blob_names_index_`, the last blob with
    /// that name wins (only `(automatic)` can repeat).
    pub fn blob_id(&self, name: &str) -> Option<usize> {
        self.blob_names.iter().rposition(|n| n == name)
    }
    /// Layer id by name; the last layer with that name wins, as in Caffe.
    pub fn layer_id(&self, name: &str) -> Option<usize> {
        self.layers.iter().rposition(|l| l.name() == name)
    }
    pub fn num_blobs(&self) -> usize {
        self.blob_names.len()
    }
}

// ---------------------------------------------------------------------------
// NetState

/// proto2 `MergeFrom` for NetState: set scalars overwrite, stages append.
fn merge_state(dst: &mut NetState, src: &NetState) {
    if src.phase.is_some() {
        dst.phase = src.phase;
    }
    if src.level.is_some() {
        dst.level = src.level;
    }
    dst.stage.extend(src.stage.iter().cloned());
}

/// The state a Solver builds its nets with: `phase`, then the net file's own
/// `state` merged over it (so a phase set in the file wins), then the
/// solver's `train_state` / `test_state[i]`.
pub fn solver_net_state(
    phase: Phase,
    net_state: Option<&NetState>,
    solver_state: Option<&NetState>,
) -> NetState {
    let mut s = NetState::default();
    s.set_phase(phase);
    if let Some(n) = net_state {
        merge_state(&mut s, n);
    }
    if let Some(n) = solver_state {
        merge_state(&mut s, n);
    }
    s
}

/// The state of `Net(param_file, phase, level, stages)` (the CLI's `test`
/// and `time`): the file's state with phase and level forced and `stages`
/// appended. The CLI passes `[""]` for an empty `--stage` flag, as Caffe does.
pub fn cli_net_state(
    param: &NetParameter,
    phase: Phase,
    level: i32,
    stages: &[String],
) -> NetState {
    let mut s = param.state.clone().unwrap_or_default();
    s.set_phase(phase);
    s.stage.extend(stages.iter().cloned());
    s.level = Some(level);
    s
}

// ---------------------------------------------------------------------------
// FilterNet

/// Caffe's `StateMeetsRule`; each broken condition logs one message.
pub fn state_meets_rule(
    state: &NetState,
    rule: &NetStateRule,
    layer_name: &str,
    log: &mut Vec<String>,
) -> bool {
    // Phases are logged as integers, like Caffe's enum streaming.
    if rule.phase.is_some() && rule.phase() != state.phase() {
        log.push(format!(
            "The NetState phase ({}) differed from the phase ({}) specified by a rule in layer {}",
            state.phase() as i32,
            rule.phase() as i32,
            layer_name
        ));
        return false;
    }
    if let Some(min) = rule.min_level {
        if state.level() < min {
            log.push(format!(
                "The NetState level ({}) is above the min_level ({}) specified by a rule in layer {}",
                state.level(),
                min,
                layer_name
            ));
            return false;
        }
    }
    if let Some(max) = rule.max_level {
        if state.level() > max {
            log.push(format!(
                "The NetState level ({}) is above the max_level ({}) specified by a rule in layer {}",
                state.level(),
                max,
                layer_name
            ));
            return false;
        }
    }
    for stage in &rule.stage {
        if !state.stage.contains(stage) {
            log.push(format!(
                "The NetState did not contain stage '{stage}' specified by a rule in layer {layer_name}"
            ));
            return false;
        }
    }
    for stage in &rule.not_stage {
        if state.stage.contains(stage) {
            log.push(format!(
                "The NetState contained a not_stage '{stage}' specified by a rule in layer {layer_name}"
            ));
            return false;
        }
    }
    true
}

/// Caffe's `FilterNet`: keep the layers whose include/exclude rules accept
/// `state`. The result carries `state` as its `state`.
pub fn filter_net(param: &NetParameter, state: &NetState) -> Result<NetParameter> {
    filter_net_logged(param, state, &mut Vec::new())
}

/// [`filter_net`], collecting Caffe's log messages.
pub fn filter_net_logged(
    param: &NetParameter,
    state: &NetState,
    log: &mut Vec<String>,
) -> Result<NetParameter> {
    let mut out = NetParameter {
        layer: Vec::new(),
        ..param.clone()
    };
    out.state = Some(state.clone());
    for layer in &param.layer {
        let name = layer.name();
        if !layer.include.is_empty() && !layer.exclude.is_empty() {
            return Err(Error::Net(format!(
                "Layer '{name}': specify either include rules or exclude rules; not both."
            )));
        }
        // No include rules: kept unless an exclude rule matches. Both loops
        // stop at the first match, so later rules log nothing (as in Caffe).
        let mut included = layer.include.is_empty();
        for rule in &layer.exclude {
            if !included {
                break;
            }
            if state_meets_rule(state, rule, name, log) {
                included = false;
            }
        }
        for rule in &layer.include {
            if included {
                break;
            }
            if state_meets_rule(state, rule, name, log) {
                included = true;
            }
        }
        if included {
            out.layer.push(layer.clone());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// InsertSplits

/// `<blob>_<layer>_<top index>_split`
pub fn split_layer_name(layer_name: &str, blob_name: &str, blob_idx: usize) -> String {
    format!("{blob_name}_{layer_name}_{blob_idx}_split")
}

/// `<blob>_<layer>_<top index>_split_<k>`
pub fn split_blob_name(
    layer_name: &str,
    blob_name: &str,
    blob_idx: usize,
    split_idx: usize,
) -> String {
    format!("{blob_name}_{layer_name}_{blob_idx}_split_{split_idx}")
}

/// A `Split` layer exactly as Caffe's `ConfigureSplitLayer` makes it: only
/// name, type, bottom, tops and (when the source top is a loss) loss weights.
fn split_layer(
    layer_name: &str,
    blob_name: &str,
    blob_idx: usize,
    split_count: usize,
    loss_weight: f32,
) -> LayerParameter {
    let mut l = LayerParameter {
        name: Some(split_layer_name(layer_name, blob_name, blob_idx)),
        r#type: Some("Split".to_string()),
        bottom: vec![blob_name.to_string()],
        ..Default::default()
    };
    for k in 0..split_count {
        l.top
            .push(split_blob_name(layer_name, blob_name, blob_idx, k));
        if loss_weight != 0.0 {
            l.loss_weight.push(if k == 0 { loss_weight } else { 0.0 });
        }
    }
    l
}

/// Producer of a blob version: (layer index or -1 for legacy `input`, top index).
type TopIdx = (isize, usize);

/// Caffe's `InsertSplits`: a top consumed more than once (a non-zero
/// explicit `loss_weight` counts as one use) gets a `Split` layer right after
/// its producer, and the consumers read the split's outputs in order.
pub fn insert_splits(param: &NetParameter) -> Result<NetParameter> {
    let mut last_top: HashMap<&str, TopIdx> = HashMap::new();
    let mut bottom_source: HashMap<(usize, usize), TopIdx> = HashMap::new();
    let mut bottom_count: HashMap<TopIdx, usize> = HashMap::new();
    let mut top_loss_weight: HashMap<TopIdx, f32> = HashMap::new();
    let mut split_idx: HashMap<TopIdx, usize> = HashMap::new();
    // Legacy `input` blobs are produced by a pseudo layer named "input".
    let layer_name = |i: isize| -> &str {
        if i < 0 {
            "input"
        } else {
            param.layer[i as usize].name()
        }
    };
    for (i, name) in param.input.iter().enumerate() {
        last_top.insert(name, (-1, i));
    }
    for (i, layer) in param.layer.iter().enumerate() {
        for (j, blob) in layer.bottom.iter().enumerate() {
            let Some(&src) = last_top.get(blob.as_str()) else {
                return Err(Error::Net(format!(
                    "Unknown bottom blob '{blob}' (layer '{}', bottom index {j})",
                    layer.name()
                )));
            };
            bottom_source.insert((i, j), src);
            *bottom_count.entry(src).or_insert(0) += 1;
        }
        for (j, blob) in layer.top.iter().enumerate() {
            last_top.insert(blob, (i as isize, j));
        }
        let last_loss = layer.loss_weight.len().min(layer.top.len());
        for j in 0..last_loss {
            // Looked up by name, as Caffe does (a top repeated within one
            // layer resolves to its last occurrence).
            let idx = last_top[layer.top[j].as_str()];
            let w = layer.loss_weight[j];
            top_loss_weight.insert(idx, w);
            if w != 0.0 {
                *bottom_count.entry(idx).or_insert(0) += 1;
            }
        }
    }
    let count = |idx: TopIdx| bottom_count.get(&idx).copied().unwrap_or(0);

    let mut out = NetParameter {
        layer: Vec::new(),
        ..param.clone()
    };
    for (i, name) in param.input.iter().enumerate() {
        let n = count((-1, i));
        if n > 1 {
            out.layer.push(split_layer(layer_name(-1), name, i, n, 0.0));
        }
    }
    for (i, src_layer) in param.layer.iter().enumerate() {
        let mut layer = src_layer.clone();
        for j in 0..layer.bottom.len() {
            let src = bottom_source[&(i, j)];
            if count(src) > 1 {
                let k = split_idx.entry(src).or_insert(0);
                layer.bottom[j] = split_blob_name(layer_name(src.0), &layer.bottom[j], src.1, *k);
                *k += 1;
            }
        }
        let mut splits = Vec::new();
        for j in 0..layer.top.len() {
            let idx = (i as isize, j);
            let n = count(idx);
            if n > 1 {
                let w = top_loss_weight.get(&idx).copied().unwrap_or(0.0);
                splits.push(split_layer(layer.name(), &layer.top[j], j, n, w));
                if w != 0.0 {
                    // The split's output 0 now carries the loss; Caffe clears
                    // the producer's whole list, other tops' weights included.
                    layer.loss_weight.clear();
                    *split_idx.entry(idx).or_insert(0) += 1;
                }
            }
        }
        out.layer.push(layer);
        out.layer.extend(splits);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Layer facts Net::Init needs from the layer classes.

/// Types derived from Caffe's `LossLayer` (default `loss_weight: 1` on top 0,
/// one automatic top). All of Caffe's end in "Loss".
pub fn is_loss_layer(type_name: &str) -> bool {
    type_name.ends_with("Loss")
}

/// Caffe's `AllowForceBackward(bottom_index)` for the standard types.
pub fn allow_force_backward(type_name: &str, bottom_index: usize) -> bool {
    match type_name {
        "EuclideanLoss" => true,
        "ContrastiveLoss" => bottom_index != 2,
        "LSTMUnit" => bottom_index != 2,
        // Sequence continuation indicators.
        "LSTM" | "RNN" => bottom_index != 1,
        t if is_loss_layer(t) => bottom_index != 1,
        _ => true,
    }
}

/// The number of tops Caffe ensures for `AutoTopBlobs` layers
/// (`max(MinTopBlobs, ExactNumTopBlobs)`): 1 for loss layers, else 0.
pub fn min_auto_tops(layer: &LayerParameter) -> usize {
    if is_loss_layer(layer.r#type()) {
        1
    } else {
        0
    }
}

fn conv_bias(l: &LayerParameter) -> bool {
    l.convolution_param.as_ref().map_or_else(
        || ConvolutionParameter::default().bias_term(),
        |p| p.bias_term(),
    )
}
fn ip_bias(l: &LayerParameter) -> bool {
    l.inner_product_param.as_ref().map_or_else(
        || InnerProductParameter::default().bias_term(),
        |p| p.bias_term(),
    )
}
fn embed_bias(l: &LayerParameter) -> bool {
    l.embed_param
        .as_ref()
        .map_or_else(|| EmbedParameter::default().bias_term(), |p| p.bias_term())
}
fn scale_bias(l: &LayerParameter) -> bool {
    l.scale_param
        .as_ref()
        .map_or_else(|| ScaleParameter::default().bias_term(), |p| p.bias_term())
}
fn expose_hidden(l: &LayerParameter) -> bool {
    l.recurrent_param.as_ref().map_or_else(
        || RecurrentParameter::default().expose_hidden(),
        |p| p.expose_hidden(),
    )
}

/// Caffe's types without param blobs.
const NO_PARAM_TYPES: &[&str] = &[
    "AbsVal",
    "Accuracy",
    "ArgMax",
    "BNLL",
    "BatchReindex",
    "Clip",
    "Concat",
    "ContrastiveLoss",
    "Crop",
    "Data",
    "Dropout",
    "DummyData",
    "ELU",
    "Eltwise",
    "EuclideanLoss",
    "Exp",
    "Filter",
    "Flatten",
    "HDF5Data",
    "HDF5Output",
    "HingeLoss",
    "Im2col",
    "ImageData",
    "InfogainLoss",
    "Input",
    "LRN",
    "LSTMUnit",
    "Log",
    "MVN",
    "MemoryData",
    "MultinomialLogisticLoss",
    "Pooling",
    "Power",
    "ReLU",
    "Reduction",
    "Reshape",
    "SPP",
    "Sigmoid",
    "SigmoidCrossEntropyLoss",
    "Silence",
    "Slice",
    "Softmax",
    "SoftmaxWithLoss",
    "Split",
    "Swish",
    "TanH",
    "Threshold",
    "Tile",
    "WindowData",
];

/// The number of param blobs Caffe's own layer of this type creates, from the
/// parameters alone; `None` for types Caffe does not register (and `Python`).
pub fn default_num_param_blobs(layer: &LayerParameter) -> Option<usize> {
    let bottoms = layer.bottom.len();
    let n = match layer.r#type() {
        "Convolution" | "Deconvolution" => 1 + conv_bias(layer) as usize,
        "InnerProduct" => 1 + ip_bias(layer) as usize,
        "Embed" => 1 + embed_bias(layer) as usize,
        "PReLU" | "Parameter" => 1,
        // mean, variance, moving-average factor
        "BatchNorm" => 3,
        // A second bottom supplies the scale (resp. the bias) itself.
        "Scale" => (bottoms == 1) as usize + scale_bias(layer) as usize,
        "Bias" => (bottoms == 1) as usize,
        // W_xc, b_c, W_hc (+ W_xc_static with a static input).
        "LSTM" => 3 + recurrent_static_input(layer, 2) as usize,
        // W_xh, b_h, W_hh, W_ho, b_o (+ W_xh_static).
        "RNN" => 5 + recurrent_static_input(layer, 1) as usize,
        t if NO_PARAM_TYPES.contains(&t) => 0,
        _ => return None,
    };
    Some(n)
}

/// RecurrentLayer: `static_input_ = bottoms > 2 + expose_hidden * recur_blobs`.
fn recurrent_static_input(layer: &LayerParameter, num_recur_blobs: usize) -> bool {
    let exposed = if expose_hidden(layer) {
        num_recur_blobs
    } else {
        0
    };
    layer.bottom.len() > 2 + exposed
}

/// A `num_blobs` function from [`default_num_param_blobs`] that rejects
/// unknown types with an error naming the layer.
pub fn default_num_blobs_or_err(layer: &LayerParameter) -> Result<usize> {
    default_num_param_blobs(layer).ok_or_else(|| {
        Error::Net(format!(
            "Unknown layer type: {} (layer '{}')",
            layer.r#type(),
            layer.name()
        ))
    })
}

/// Edits Caffe's layers make to their own parameters in `LayerSetUp`:
/// loss layers default to `loss_weight: 1`; BatchNorm masks its statistics
/// from the solver with `lr_mult: 0` ParamSpecs.
fn setup_edits(lp: &mut LayerParameter, n_param_blobs: usize) -> Result<()> {
    if is_loss_layer(lp.r#type()) && lp.loss_weight.is_empty() {
        lp.loss_weight.push(1.0);
    }
    if lp.r#type() == "BatchNorm" {
        for i in 0..n_param_blobs {
            if lp.param.len() == i {
                lp.param.push(ParamSpec {
                    lr_mult: Some(0.0),
                    ..Default::default()
                });
            } else if lp.param.get(i).is_some_and(|p| p.lr_mult() != 0.0) {
                return Err(Error::Net(format!(
                    "Layer '{}': Cannot configure batch normalization statistics as layer parameters \
                     (param {i} has lr_mult {})",
                    lp.name(),
                    lp.param[i].lr_mult()
                )));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Net::Init

/// Build the spec for `phase` as a Solver does: the phase, with the net's own
/// `state` merged over it (see [`solver_net_state`]).
pub fn build(param: &NetParameter, phase: Phase, num_blobs: NumBlobsFn) -> Result<NetSpec> {
    let state = solver_net_state(phase, param.state.as_ref(), None);
    build_with_state(param, &state, num_blobs)
}

/// Caffe's `Net::Init` on `param` with its state replaced by `state`.
pub fn build_with_state(
    param: &NetParameter,
    state: &NetState,
    num_blobs: NumBlobsFn,
) -> Result<NetSpec> {
    let phase = state.phase();
    let mut filter_log = Vec::new();
    let filtered = filter_net_logged(param, state, &mut filter_log)?;
    let split = insert_splits(&filtered)?;
    let mut b = Builder::default();
    for (layer_id, layer) in split.layer.iter().enumerate() {
        b.append_layer(layer_id, layer.clone(), phase, num_blobs)?;
    }
    b.backward_pass();
    let force_backward = split.force_backward();
    if force_backward {
        b.force_backward();
    }
    // Caffe walks a std::set<string>: byte-wise name order.
    let output_blob_ids = b.available.iter().map(|n| b.name_to_idx[n]).collect();
    Ok(NetSpec {
        name: split.name().to_string(),
        phase,
        state: state.clone(),
        filtered,
        filter_log,
        force_backward,
        debug_info: split.debug_info(),
        layers: b.layers,
        blob_names: b.blob_names,
        blob_loss_weights: b.blob_loss_weights,
        blob_need_backward: b.blob_need_backward,
        input_blob_ids: b.input_blob_ids,
        output_blob_ids,
        params: b.params,
        learnable_param_ids: b.learnable_param_ids,
        learnable_params: b.learnable_params,
        params_lr: b.params_lr,
        params_weight_decay: b.params_weight_decay,
        has_params_lr: b.has_params_lr,
        has_params_decay: b.has_params_decay,
    })
}

#[derive(Default)]
struct Builder {
    layers: Vec<LayerSpec>,
    blob_names: Vec<String>,
    blob_loss_weights: Vec<f32>,
    blob_need_backward: Vec<bool>,
    name_to_idx: HashMap<String, usize>,
    available: BTreeSet<String>,
    input_blob_ids: Vec<usize>,
    params: Vec<ParamInfo>,
    param_names_index: HashMap<String, usize>,
    learnable_param_ids: Vec<usize>,
    learnable_params: Vec<usize>,
    params_lr: Vec<f32>,
    params_weight_decay: Vec<f32>,
    has_params_lr: Vec<bool>,
    has_params_decay: Vec<bool>,
}

impl Builder {
    fn new_blob(&mut self, name: &str) -> usize {
        let id = self.blob_names.len();
        self.blob_names.push(name.to_string());
        self.blob_loss_weights.push(0.0);
        self.blob_need_backward.push(false);
        id
    }

    fn append_layer(
        &mut self,
        layer_id: usize,
        mut lp: LayerParameter,
        phase: Phase,
        num_blobs: NumBlobsFn,
    ) -> Result<()> {
        if lp.phase.is_none() {
            lp.set_phase(phase);
        }
        let name = lp.name().to_string();
        if !lp.propagate_down.is_empty() && lp.propagate_down.len() != lp.bottom.len() {
            return Err(Error::Net(format!(
                "Layer '{name}': propagate_down param must be specified either 0 or bottom_size times \
                 ({} given for {} bottoms)",
                lp.propagate_down.len(),
                lp.bottom.len()
            )));
        }
        // Where Caffe creates the layer (an unknown type fails here).
        let n_param_blobs = num_blobs(&lp)?;

        let mut need_backward = false;
        let mut bottom_ids = Vec::with_capacity(lp.bottom.len());
        let mut bottom_need_backward = Vec::with_capacity(lp.bottom.len());
        for (i, blob) in lp.bottom.iter().enumerate() {
            if !self.available.remove(blob) {
                return Err(Error::Net(format!(
                    "Unknown bottom blob '{blob}' (layer '{name}', bottom index {i})"
                )));
            }
            let id = self.name_to_idx[blob];
            bottom_ids.push(id);
            // propagate_down replaces (does not AND) the blob's flag, but the
            // layer's own flag still comes from the blob.
            bottom_need_backward.push(
                lp.propagate_down
                    .get(i)
                    .copied()
                    .unwrap_or(self.blob_need_backward[id]),
            );
            need_backward |= self.blob_need_backward[id];
        }

        let mut top_ids = Vec::new();
        let mut top_in_place = Vec::new();
        for (j, blob) in lp.top.iter().enumerate() {
            if lp.bottom.get(j) == Some(blob) {
                top_ids.push(self.name_to_idx[blob]);
                top_in_place.push(true);
            } else if self.name_to_idx.contains_key(blob) {
                return Err(Error::Net(format!(
                    "Top blob '{blob}' produced by multiple sources (layer '{name}', top index {j})"
                )));
            } else {
                let id = self.new_blob(blob);
                self.name_to_idx.insert(blob.clone(), id);
                top_ids.push(id);
                top_in_place.push(false);
            }
            self.available.insert(blob.clone());
            if lp.r#type() == "Input" {
                // Caffe takes the newest blob, i.e. this top.
                self.input_blob_ids.push(self.blob_names.len() - 1);
            }
        }
        // Anonymous tops: neither named nor available to later layers.
        for _ in lp.top.len()..min_auto_tops(&lp) {
            top_ids.push(self.new_blob(AUTOMATIC_TOP));
            top_in_place.push(false);
        }

        // Layer::SetUp runs on the layer's own copy of its parameters, which
        // it may edit (and `ToProto` saves); Net::Init keeps reading its own.
        let mut own = lp.clone();
        setup_edits(&mut own, n_param_blobs)?;
        let loss_weights = if own.loss_weight.is_empty() {
            vec![0.0; top_ids.len()]
        } else if own.loss_weight.len() != top_ids.len() {
            return Err(Error::Net(format!(
                "Layer '{name}': loss_weight must be unspecified or specified once per top blob \
                 ({} given for {} tops)",
                own.loss_weight.len(),
                top_ids.len()
            )));
        } else {
            own.loss_weight.clone()
        };
        for (&id, &w) in top_ids.iter().zip(&loss_weights) {
            self.blob_loss_weights[id] = w;
        }

        if lp.param.len() > n_param_blobs {
            return Err(Error::Net(format!(
                "Too many params specified for layer '{name}' ({} param specs, {} param blobs)",
                lp.param.len(),
                n_param_blobs
            )));
        }
        // The net's copy decides param_propagate_down (so a BatchNorm without
        // ParamSpecs still "needs backward"); the layer's copy decides the
        // learning-rate multipliers.
        let default_spec = ParamSpec::default();
        let mut param_propagate_down = Vec::with_capacity(n_param_blobs);
        for pid in 0..n_param_blobs {
            let spec = lp.param.get(pid).unwrap_or(&default_spec);
            let p = spec.lr_mult() != 0.0;
            need_backward |= p;
            param_propagate_down.push(p);
        }
        let mut param_ids = Vec::with_capacity(n_param_blobs);
        for pid in 0..n_param_blobs {
            param_ids.push(self.append_param(layer_id, &own, pid)?);
        }

        if need_backward {
            for &id in &top_ids {
                self.blob_need_backward[id] = true;
            }
        }
        self.layers.push(LayerSpec {
            param: own,
            bottom_ids,
            top_ids,
            top_in_place,
            loss_weights,
            need_backward,
            bottom_need_backward,
            param_ids,
            param_propagate_down,
        });
        Ok(())
    }

    /// Caffe's `AppendParam`: anonymous or first-seen names own a learnable
    /// slot; a repeated name shares its owner's slot.
    fn append_param(&mut self, layer_id: usize, lp: &LayerParameter, pid: usize) -> Result<usize> {
        let default_spec = ParamSpec::default();
        let spec = lp.param.get(pid).unwrap_or(&default_spec);
        let pname = spec.name();
        let display_name = if pname.is_empty() {
            pid.to_string()
        } else {
            pname.to_string()
        };
        let net_param_id = self.params.len();
        let share_mode = spec.share_mode();
        let owner = if pname.is_empty() {
            None
        } else {
            self.param_names_index.get(pname).copied()
        };
        match owner {
            None => {
                if !pname.is_empty() {
                    self.param_names_index
                        .insert(pname.to_string(), net_param_id);
                }
                self.learnable_param_ids.push(self.learnable_params.len());
                self.learnable_params.push(net_param_id);
                self.has_params_lr.push(spec.lr_mult.is_some());
                self.has_params_decay.push(spec.decay_mult.is_some());
                self.params_lr.push(spec.lr_mult());
                self.params_weight_decay.push(spec.decay_mult());
            }
            Some(owner_id) => {
                let lid = self.learnable_param_ids[owner_id];
                self.learnable_param_ids.push(lid);
                let owner_layer = self.layers[self.params[owner_id].layer_id]
                    .name()
                    .to_string();
                let mismatch = |what: &str, mine: f32, theirs: f32| {
                    Error::Net(format!(
                        "Shared param '{pname}' has mismatched {what}: layer '{}' sets {mine}, \
                         owner layer '{owner_layer}' has {theirs}",
                        lp.name()
                    ))
                };
                if let Some(lr) = spec.lr_mult {
                    if self.has_params_lr[lid] {
                        if lr != self.params_lr[lid] {
                            return Err(mismatch("lr_mult", lr, self.params_lr[lid]));
                        }
                    } else {
                        self.has_params_lr[lid] = true;
                        self.params_lr[lid] = lr;
                    }
                }
                if let Some(d) = spec.decay_mult {
                    if self.has_params_decay[lid] {
                        if d != self.params_weight_decay[lid] {
                            return Err(mismatch("decay_mult", d, self.params_weight_decay[lid]));
                        }
                    } else {
                        self.has_params_decay[lid] = true;
                        self.params_weight_decay[lid] = d;
                    }
                }
            }
        }
        self.params.push(ParamInfo {
            layer_id,
            param_index: pid,
            display_name,
            owner,
            share_mode,
        });
        Ok(net_param_id)
    }

    /// Net::Init's reverse pass: drop backward for layers that do not reach a
    /// loss or whose every top was marked as not needing gradients. Sets are
    /// keyed by blob *name*, so in-place chains share one entry.
    fn backward_pass(&mut self) {
        let mut under_loss: HashSet<&str> = HashSet::new();
        let mut skip_backp: HashSet<&str> = HashSet::new();
        for layer in self.layers.iter_mut().rev() {
            let mut contributes_loss = false;
            let mut skip_propagate_down = true;
            for (j, &id) in layer.top_ids.iter().enumerate() {
                let name = self.blob_names[id].as_str();
                if layer.loss_weights[j] != 0.0 || under_loss.contains(name) {
                    contributes_loss = true;
                }
                if !skip_backp.contains(name) {
                    skip_propagate_down = false;
                }
            }
            if layer.need_backward && skip_propagate_down {
                layer.need_backward = false;
                layer
                    .bottom_need_backward
                    .iter_mut()
                    .for_each(|b| *b = false);
            }
            if !contributes_loss {
                layer.need_backward = false;
            }
            for (i, &id) in layer.bottom_ids.iter().enumerate() {
                let name = self.blob_names[id].as_str();
                if contributes_loss {
                    under_loss.insert(name);
                } else {
                    layer.bottom_need_backward[i] = false;
                }
                if !layer.bottom_need_backward[i] {
                    skip_backp.insert(name);
                }
            }
        }
    }

    /// `force_backward: true`: every layer runs backward, every bottom the
    /// layer allows gets a gradient, every param gets a gradient.
    fn force_backward(&mut self) {
        for layer in &mut self.layers {
            layer.need_backward = true;
            let ty = layer.param.r#type().to_string();
            for (i, &id) in layer.bottom_ids.iter().enumerate() {
                let nb = layer.bottom_need_backward[i] || allow_force_backward(&ty, i);
                layer.bottom_need_backward[i] = nb;
                self.blob_need_backward[id] |= nb;
            }
            layer
                .param_propagate_down
                .iter_mut()
                .for_each(|p| *p = true);
        }
    }
}
