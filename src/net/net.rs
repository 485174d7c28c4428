//! `Net`: the layers of a `NetSpec` instantiated on one backend, with their
//! blobs in one arena (activations first, then learnable parameters), so
//! in-place layers and shared parameters are literally the same blob.
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::layers::{create_layer, layer_types, Ctx, Io, Layer};
use crate::proto::caffe::param_spec::DimCheckMode;
use crate::proto::caffe::{NetParameter, NetState, Phase};
use crate::tensor::Blob;

use super::spec::{self, NetSpec};

/// How to build a net: its state (phase, level, stages), the random seed,
/// and which replica of how many it is (data sharding).
#[derive(Debug, Clone)]
pub struct NetOptions {
    pub phase: Phase,
    pub level: i32,
    pub stages: Vec<String>,
    /// A complete state (the solver's merged train/test state) overrides
    /// phase/level/stages when set.
    pub state: Option<NetState>,
    pub seed: u64,
    pub rank: usize,
    pub world: usize,
    /// Log the construction as Caffe's Net::Init does (the CLI turns it on;
    /// tests leave it off to keep their output short).
    pub log_init: bool,
}

impl NetOptions {
    pub fn new(phase: Phase) -> Self {
        NetOptions {
            phase,
            level: 0,
            stages: Vec::new(),
            state: None,
            seed: 1701,
            rank: 0,
            world: 1,
            log_init: false,
        }
    }
}

/// One output blob (never consumed by another layer), for logs.
#[derive(Debug, Clone)]
pub struct NetOutput {
    pub name: String,
    pub values: Vec<f32>,
    pub loss_weight: f32,
}

pub struct Net {
    spec: NetSpec,
    layers: Vec<Box<dyn Layer>>,
    /// Activation blobs (by spec blob id) followed by owned parameters.
    blobs: Vec<Blob>,
    /// Per layer: arena ids of its param blobs (sharers point at owners).
    layer_params: Vec<Vec<usize>>,
    /// Per learnable param (spec order): arena id.
    learnable: Vec<usize>,
    cx: Ctx,
    /// Caffe's `debug_info_`: per-layer mean |x| lines in forward/backward.
    debug_info: bool,
}

/// Where a non-finite value sits in a net (see `Net::find_non_finite`).
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    pub layer: String,
    pub layer_type: String,
    /// "top blob 'ip2' data", "bottom blob 'pool2' diff", "param blob 0 data" ...
    pub what: String,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of layer '{}' ({})",
            self.what, self.layer, self.layer_type
        )
    }
}

fn all_finite(b: &Blob, diff: bool) -> bool {
    let v = if diff { b.diff_vec() } else { b.data_vec() };
    v.iter().all(|x| x.is_finite())
}

impl Net {
    /// Build a net from an (already upgraded) NetParameter.
    pub fn new(param: &NetParameter, opts: &NetOptions, be: Arc<dyn Backend>) -> Result<Net> {
        let state = opts
            .state
            .clone()
            .unwrap_or_else(|| spec::cli_net_state(param, opts.phase, opts.level, &opts.stages));
        let known = layer_types();
        let num_blobs = |lp: &crate::proto::caffe::LayerParameter| -> Result<usize> {
            if !known.contains(&lp.r#type()) {
                // The registry's error names the layer and the known types.
                create_layer(lp)?;
            }
            spec::default_num_blobs_or_err(lp)
        };
        let spec = spec::build_with_state(param, &state, &num_blobs)?;
        let log = |m: &str| {
            if opts.log_init {
                crate::log::info("net.cpp:53", m);
            }
        };
        for m in &spec.filter_log {
            log(m);
        }
        if opts.log_init {
            crate::log::info(
                "net.cpp:53",
                &format!(
                    "Initializing net from parameters: \n{}",
                    crate::proto::text::print_net(&spec.filtered)
                ),
            );
        }
        let mut cx = Ctx::new(be.clone(), spec.phase, opts.seed);
        cx.rank = opts.rank;
        cx.world = opts.world;

        let mut blobs: Vec<Blob> = (0..spec.num_blobs())
            .map(|_| Blob::new(&*be, &[]))
            .collect();
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut layer_params: Vec<Vec<usize>> = Vec::with_capacity(spec.layers.len());
        // Net param id -> arena id (filled as owners are set up).
        let mut param_arena: Vec<Option<usize>> = vec![None; spec.params.len()];
        let mut memory = 0usize;

        for (li, ls) in spec.layers.iter().enumerate() {
            let (name, ty) = (ls.name().to_string(), ls.type_name().to_string());
            let wrap = |e: Error| e.in_layer(&name, &ty);
            log(&format!("Creating Layer {name}"));
            let mut layer = create_layer(&ls.param)?;
            for &b in &ls.bottom_ids {
                log(&format!("{name} <- {}", spec.blob_names[b]));
            }
            for &t in &ls.top_ids {
                log(&format!("{name} -> {}", spec.blob_names[t]));
            }
            layer
                .arity()
                .check(ls.bottom_ids.len(), ls.top_ids.len())
                .map_err(wrap)?;
            if ls.top_in_place.iter().any(|&p| p) && !layer.allows_in_place() {
                return Err(wrap(Error::layer(
                    "this layer type cannot compute in place (a top has the same name as its bottom)",
                )));
            }
            cx.phase = ls.param.phase();
            let mut fresh = {
                let mut io = Io::new(&mut blobs, &ls.bottom_ids, &ls.top_ids, &[]);
                layer.setup(&mut cx, &mut io).map_err(wrap)?
            };
            if fresh.len() != ls.param_ids.len() {
                return Err(wrap(Error::layer(format!(
                    "created {} parameter blobs but the net expected {}",
                    fresh.len(),
                    ls.param_ids.len()
                ))));
            }
            // Blobs given in the prototxt replace the fillers' values (Caffe skips fillers then).
            if !ls.param.blobs.is_empty() {
                if ls.param.blobs.len() != fresh.len() {
                    return Err(wrap(Error::layer(format!(
                        "the prototxt gives {} blobs, the layer has {}",
                        ls.param.blobs.len(),
                        fresh.len()
                    ))));
                }
                for (b, p) in fresh.iter_mut().zip(&ls.param.blobs) {
                    if !b.shape_equals(p) {
                        return Err(wrap(Error::layer(format!(
                            "prototxt blob shape {:?} does not match {}",
                            Blob::proto_shape(p)?,
                            b.shape_string()
                        ))));
                    }
                    b.copy_from_proto(p).map_err(wrap)?;
                }
            }
            let mut ids = Vec::with_capacity(fresh.len());
            for (j, blob) in fresh.into_iter().enumerate() {
                let pid = ls.param_ids[j];
                let info = &spec.params[pid];
                match info.owner {
                    None => {
                        param_arena[pid] = Some(blobs.len());
                        ids.push(blobs.len());
                        blobs.push(blob);
                    }
                    Some(owner) => {
                        let aid = param_arena[owner].ok_or_else(|| {
                            Error::Net(format!(
                                "shared parameter of layer '{name}' has no owner yet"
                            ))
                        })?;
                        let o = &blobs[aid];
                        let ok = match info.share_mode {
                            DimCheckMode::Strict => o.shape() == blob.shape(),
                            DimCheckMode::Permissive => o.count() == blob.count(),
                        };
                        if !ok {
                            let owner_layer = spec.layers[spec.params[owner].layer_id].name();
                            return Err(Error::Net(format!(
                                "Cannot share param '{}' owned by layer '{owner_layer}' with layer '{name}': \
                                 shape mismatch. Owner shape is {}; sharer shape is {}",
                                info.display_name,
                                o.shape_string(),
                                blob.shape_string()
                            )));
                        }
                        ids.push(aid);
                    }
                }
            }
            {
                let mut io = Io::new(&mut blobs, &ls.bottom_ids, &ls.top_ids, &ids);
                if let Err(e) = layer.reshape(&mut cx, &mut io) {
                    // Name where each bottom came from, so a shape mismatch
                    // points at both layers.
                    let from = Self::describe_bottoms(&spec, li, &blobs);
                    return Err(wrap(e).with_context(&from));
                }
            }
            Self::set_loss_weights(&*be, &mut blobs, &ls.top_ids, &ls.loss_weights);
            if opts.log_init {
                log(&format!("Setting up {name}"));
                for (k, &t) in ls.top_ids.iter().enumerate() {
                    log(&format!("Top shape: {}", blobs[t].shape_string()));
                    let w = ls.loss_weights.get(k).copied().unwrap_or(0.0);
                    if w != 0.0 {
                        log(&format!("    with loss weight {}", crate::log::g(w)));
                    }
                    memory += blobs[t].count();
                }
                log(&format!("Memory required for data: {}", memory * 4));
            }
            layers.push(layer);
            layer_params.push(ids);
        }
        if opts.log_init {
            for ls in spec.layers.iter().rev() {
                let n = ls.name();
                if ls.need_backward {
                    log(&format!("{n} needs backward computation."));
                } else {
                    log(&format!("{n} does not need backward computation."));
                }
            }
            for &o in &spec.output_blob_ids {
                log(&format!(
                    "This network produces output {}",
                    spec.blob_names[o]
                ));
            }
            log("Network initialization done.");
        }
        let learnable = spec
            .learnable_params
            .iter()
            .map(|&pid| param_arena[pid].expect("learnable param has an owner"))
            .collect();
        let debug_info = spec.debug_info;
        Ok(Net {
            spec,
            layers,
            blobs,
            layer_params,
            learnable,
            cx,
            debug_info,
        })
    }

    /// "bottom 'x' (shape 64 20 (1280)) from layer 'conv1' (Convolution); ..."
    fn describe_bottoms(spec: &NetSpec, li: usize, blobs: &[Blob]) -> String {
        let ls = &spec.layers[li];
        let parts: Vec<String> = ls
            .bottom_ids
            .iter()
            .map(|&b| {
                let producer = spec.layers[..li]
                    .iter()
                    .rev()
                    .find(|l| l.top_ids.contains(&b))
                    .map(|l| format!("layer '{}' ({})", l.name(), l.type_name()))
                    .unwrap_or_else(|| "net input".to_string());
                format!(
                    "bottom '{}' of shape {} from {producer}",
                    spec.blob_names[b],
                    blobs[b].shape_string()
                )
            })
            .collect();
        parts.join("; ")
    }

    /// A top with a loss weight carries that weight in its diff (Caffe's
    /// SetLossWeights): the layer's loss is `dot(data, diff)` and backward
    /// starts from it.
    fn set_loss_weights(be: &dyn Backend, blobs: &mut [Blob], tops: &[usize], weights: &[f32]) {
        for (&t, &w) in tops.iter().zip(weights) {
            if w != 0.0 {
                let b = &mut blobs[t];
                let n = b.count();
                be.set(n, w, b.diff.view_mut());
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }
    pub fn phase(&self) -> Phase {
        self.spec.phase
    }
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.cx.be.clone()
    }
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    pub fn layer_names(&self) -> Vec<String> {
        self.spec
            .layers
            .iter()
            .map(|l| l.name().to_string())
            .collect()
    }
    pub fn layer_types(&self) -> Vec<String> {
        self.spec
            .layers
            .iter()
            .map(|l| l.type_name().to_string())
            .collect()
    }

    /// Reshape and run layer `i` forward; returns its weighted loss.
    pub fn forward_layer(&mut self, i: usize) -> Result<f32> {
        let ls = &self.spec.layers[i];
        let layer = &mut self.layers[i];
        let wrap = |e: Error| e.in_layer(ls.name(), ls.type_name());
        self.cx.phase = ls.param.phase();
        let mut io = Io::new(
            &mut self.blobs,
            &ls.bottom_ids,
            &ls.top_ids,
            &self.layer_params[i],
        );
        layer.reshape(&mut self.cx, &mut io).map_err(wrap)?;
        layer.forward(&mut self.cx, &mut io).map_err(wrap)?;
        let mut loss = 0.0;
        for (&t, &w) in ls.top_ids.iter().zip(&ls.loss_weights) {
            if w != 0.0 {
                let b = &self.blobs[t];
                loss += self.cx.be.dot(b.count(), b.data.view(), b.diff.view());
            }
        }
        if self.debug_info {
            self.forward_debug_info(i);
        }
        Ok(loss)
    }

    /// Run layer `i` backward if the net needs its gradient.
    pub fn backward_layer(&mut self, i: usize) -> Result<()> {
        let ls = &self.spec.layers[i];
        if !ls.need_backward {
            return Ok(());
        }
        let layer = &mut self.layers[i];
        let wrap = |e: Error| e.in_layer(ls.name(), ls.type_name());
        self.cx.phase = ls.param.phase();
        let mut io = Io::new(
            &mut self.blobs,
            &ls.bottom_ids,
            &ls.top_ids,
            &self.layer_params[i],
        )
        .with_param_propagate_down(&ls.param_propagate_down);
        layer
            .backward(&mut self.cx, &mut io, &ls.bottom_need_backward)
            .map_err(wrap)?;
        if self.debug_info {
            self.backward_debug_info(i);
        }
        Ok(())
    }

    /// Forward through every layer; returns the total weighted loss.
    pub fn forward(&mut self) -> Result<f32> {
        let mut loss = 0.0;
        for i in 0..self.layers.len() {
            loss += self.forward_layer(i)?;
        }
        Ok(loss)
    }

    pub fn backward(&mut self) -> Result<()> {
        for i in (0..self.layers.len()).rev() {
            self.backward_layer(i)?;
        }
        if self.debug_info {
            self.backward_norms_debug_info();
        }
        Ok(())
    }

    pub fn forward_backward(&mut self) -> Result<f32> {
        let loss = self.forward()?;
        self.backward()?;
        Ok(loss)
    }

    /// Caffe's `set_debug_info` (the solver turns it on for display
    /// iterations when the solver's `debug_info` is set).
    pub fn set_debug_info(&mut self, on: bool) {
        self.debug_info = on;
    }
    pub fn debug_info(&self) -> bool {
        self.debug_info
    }

    /// mean |x| of a blob's data or diff, as Caffe's `asum / count` (float).
    fn mean_abs(&self, b: &Blob, diff: bool) -> f32 {
        let n = b.count();
        let v = if diff { b.diff.view() } else { b.data.view() };
        self.cx.be.asum(n, v) / n as f32
    }

    /// Caffe's `ForwardDebugInfo`: every top's and param's mean |data|.
    fn forward_debug_info(&self, i: usize) {
        use crate::log::{g, info, site};
        let ls = &self.spec.layers[i];
        for &t in &ls.top_ids {
            let m = self.mean_abs(&self.blobs[t], false);
            info(
                site::NET_FORWARD_TOP,
                &format!(
                    "    [Forward] Layer {}, top blob {} data: {}",
                    ls.name(),
                    self.spec.blob_names[t],
                    g(m)
                ),
            );
        }
        for (j, &id) in self.layer_params[i].iter().enumerate() {
            let m = self.mean_abs(&self.blobs[id], false);
            info(
                site::NET_FORWARD_PARAM,
                &format!(
                    "    [Forward] Layer {}, param blob {} data: {}",
                    ls.name(),
                    self.spec.params[ls.param_ids[j]].display_name,
                    g(m)
                ),
            );
        }
    }

    /// Caffe's `BackwardDebugInfo`: mean |diff| of the bottoms that get a
    /// gradient and of the params that do.
    fn backward_debug_info(&self, i: usize) {
        use crate::log::{g, info, site};
        let ls = &self.spec.layers[i];
        for (k, &b) in ls.bottom_ids.iter().enumerate() {
            if !ls.bottom_need_backward.get(k).copied().unwrap_or(false) {
                continue;
            }
            let m = self.mean_abs(&self.blobs[b], true);
            info(
                site::NET_BACKWARD_BOTTOM,
                &format!(
                    "    [Backward] Layer {}, bottom blob {} diff: {}",
                    ls.name(),
                    self.spec.blob_names[b],
                    g(m)
                ),
            );
        }
        for (j, &id) in self.layer_params[i].iter().enumerate() {
            if !ls.param_propagate_down.get(j).copied().unwrap_or(true) {
                continue;
            }
            let m = self.mean_abs(&self.blobs[id], true);
            info(
                site::NET_BACKWARD_PARAM,
                &format!(
                    "    [Backward] Layer {}, param blob {j} diff: {}",
                    ls.name(),
                    g(m)
                ),
            );
        }
    }

    /// The end of Caffe's `Backward` with debug info: L1 and L2 norms of all
    /// learnable data and diffs, at ERROR severity as Caffe logs it.
    fn backward_norms_debug_info(&self) {
        use crate::log::{error, g, site};
        let be = &self.cx.be;
        let (mut asum_data, mut asum_diff, mut sumsq_data, mut sumsq_diff) =
            (0f32, 0f32, 0f32, 0f32);
        for &id in &self.learnable {
            let b = &self.blobs[id];
            let n = b.count();
            asum_data += be.asum(n, b.data.view());
            asum_diff += be.asum(n, b.diff.view());
            sumsq_data += be.sumsq(n, b.data.view());
            sumsq_diff += be.sumsq(n, b.diff.view());
        }
        error(
            site::NET_BACKWARD_ALL,
            &format!(
                "    [Backward] All net params (data, diff): L1 norm = ({}, {}); L2 norm = ({}, {})",
                g(asum_data),
                g(asum_diff),
                g(sumsq_data.sqrt()),
                g(sumsq_diff.sqrt())
            ),
        );
    }

    /// Caffe's `UpdateDebugInfo` for every param blob, after an update:
    /// owners show mean |weights| and mean |step| (the step is in the diff),
    /// sharers name their owner. (Caffe 1.0 has the function but never
    /// calls it; the solver calls this on display iterations.)
    pub fn update_debug_info(&self) {
        use crate::log::{g, info, site};
        for p in &self.spec.params {
            let layer = self.spec.layers[p.layer_id].name();
            let blob = &self.blobs[self.layer_params[p.layer_id][p.param_index]];
            let diff = self.mean_abs(blob, true);
            let (site, msg) = match p.owner {
                None => (
                    site::NET_UPDATE,
                    format!(
                        "    [Update] Layer {layer}, param {} data: {}; diff: {}",
                        p.display_name,
                        g(self.mean_abs(blob, false)),
                        g(diff)
                    ),
                ),
                Some(o) => {
                    let owner = &self.spec.params[o];
                    let msg = format!(
                        "    [Update] Layer {layer}, param blob {} (owned by layer {}, param {}) diff: {}",
                        p.display_name,
                        self.spec.layers[owner.layer_id].name(),
                        owner.display_name,
                        g(diff)
                    );
                    (site::NET_UPDATE_SHARED, msg)
                }
            };
            info(site, &msg);
        }
    }

    /// The first non-finite value left by the last forward/backward, for a
    /// divergence message: a weight first (layer order), then the first
    /// layer whose output is non-finite (forward order), then the first
    /// layer whose gradient is (backward order: bottom diffs, then param
    /// diffs). A blob computed in place belongs to the layer that produced
    /// it; the layers that then modified it in place are named too.
    /// Copies blobs to the host: meant for the failure path only.
    pub fn find_non_finite(&self) -> Option<NonFinite> {
        let at = |i: usize, what: String| {
            let ls = &self.spec.layers[i];
            Some(NonFinite {
                layer: ls.name().to_string(),
                layer_type: ls.type_name().to_string(),
                what,
            })
        };
        // The layers in `range` that compute blob `b` in place.
        let in_place = |range: std::ops::Range<usize>, b: usize| -> String {
            let names: Vec<&str> = self.spec.layers[range]
                .iter()
                .filter(|l| {
                    l.top_ids
                        .iter()
                        .zip(&l.top_in_place)
                        .any(|(&t, &ip)| ip && t == b)
                })
                .map(|l| l.name())
                .collect();
            if names.is_empty() {
                String::new()
            } else {
                format!(" (then modified in place by {})", names.join(", "))
            }
        };
        let n = self.spec.layers.len();
        for (i, ls) in self.spec.layers.iter().enumerate() {
            for (j, &id) in self.layer_params[i].iter().enumerate() {
                if !all_finite(&self.blobs[id], false) {
                    let name = &self.spec.params[ls.param_ids[j]].display_name;
                    return at(i, format!("param blob {name} data (the weights)"));
                }
            }
        }
        for (i, ls) in self.spec.layers.iter().enumerate() {
            for (k, &t) in ls.top_ids.iter().enumerate() {
                if ls.top_in_place.get(k).copied().unwrap_or(false) {
                    continue;
                }
                if !all_finite(&self.blobs[t], false) {
                    let name = &self.spec.blob_names[t];
                    let then = in_place(i + 1..n, t);
                    return at(i, format!("top blob '{name}' data{then}"));
                }
            }
        }
        for (i, ls) in self.spec.layers.iter().enumerate().rev() {
            if !ls.need_backward {
                continue;
            }
            for (k, &b) in ls.bottom_ids.iter().enumerate() {
                if ls.top_ids.contains(&b)
                    || !ls.bottom_need_backward.get(k).copied().unwrap_or(false)
                {
                    continue;
                }
                if !all_finite(&self.blobs[b], true) {
                    let name = &self.spec.blob_names[b];
                    // Earlier layers computing `b` in place run backward after this one.
                    let then = in_place(0..i, b);
                    return at(i, format!("bottom blob '{name}' diff (the gradient){then}"));
                }
            }
            for (j, &id) in self.layer_params[i].iter().enumerate() {
                if ls.param_propagate_down.get(j).copied().unwrap_or(true)
                    && !all_finite(&self.blobs[id], true)
                {
                    return at(i, format!("param blob {j} diff (the gradient)"));
                }
            }
        }
        None
    }

    /// Zero the diffs of every learnable parameter (before each iteration).
    pub fn clear_param_diffs(&mut self) {
        let be = self.cx.be.clone();
        for &id in &self.learnable {
            let b = &mut self.blobs[id];
            let n = b.count();
            be.set(n, 0.0, b.diff.view_mut());
        }
    }

    pub fn num_learnable(&self) -> usize {
        self.learnable.len()
    }
    pub fn learnable(&self, i: usize) -> &Blob {
        &self.blobs[self.learnable[i]]
    }
    pub fn learnable_mut(&mut self, i: usize) -> &mut Blob {
        &mut self.blobs[self.learnable[i]]
    }
    pub fn learnable_lr_mult(&self, i: usize) -> f32 {
        self.spec.params_lr[i]
    }
    pub fn learnable_decay_mult(&self, i: usize) -> f32 {
        self.spec.params_weight_decay[i]
    }
    /// Display name of learnable param `i` (`layer` + param name or index).
    pub fn learnable_name(&self, i: usize) -> String {
        let info = &self.spec.params[self.spec.learnable_params[i]];
        format!(
            "{} {}",
            self.spec.layers[info.layer_id].name(),
            info.display_name
        )
    }

    /// The parameter blobs of layer `i`.
    pub fn layer_params(&self, i: usize) -> Vec<&Blob> {
        self.layer_params[i]
            .iter()
            .map(|&id| &self.blobs[id])
            .collect()
    }
    pub fn layer_param_mut(&mut self, i: usize, j: usize) -> &mut Blob {
        let id = self.layer_params[i][j];
        &mut self.blobs[id]
    }

    /// The data positions of the layers that have one, by layer name (see
    /// `Layer::data_position`; saved by rcaffe's snapshots).
    pub fn data_positions(&self) -> Vec<(String, serde_json::Value)> {
        self.layers
            .iter()
            .zip(&self.spec.layers)
            .filter_map(|(l, ls)| l.data_position().map(|p| (ls.name().to_string(), p)))
            .collect()
    }

    /// Continue layer `name`'s data stream from a saved position.
    pub fn restore_data_position(&mut self, name: &str, pos: &serde_json::Value) -> Result<()> {
        let li = self
            .spec
            .layer_id(name)
            .ok_or_else(|| Error::Net(format!("the net has no layer '{name}'")))?;
        let ls = &self.spec.layers[li];
        self.layers[li]
            .restore_data_position(pos)
            .map_err(|e| e.in_layer(ls.name(), ls.type_name()))
    }

    /// Batches the prefetching layers handed out and the time the net
    /// waited for them, summed over layers (`None` without such layers).
    pub fn data_wait(&self) -> Option<crate::data::WaitStats> {
        self.layers
            .iter()
            .filter_map(|l| l.data_wait())
            .reduce(|a, b| crate::data::WaitStats {
                batches: a.batches + b.batches,
                waited: a.waited + b.waited,
            })
    }

    /// Restart the net's random stream (Dropout masks, random DummyData)
    /// from a seed derived from the net's seed and `n`. The solver does it
    /// at every iteration with `n` = the iteration, so the draws of an
    /// iteration do not depend on the iterations before it and a resumed
    /// run draws what the uninterrupted run drew.
    pub fn reseed_rng(&mut self, n: u64) {
        use rand::SeedableRng;
        // splitmix64 of (seed, n): distinct, well-mixed seeds.
        let mut z = self.cx.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.cx.rng = rand::rngs::StdRng::seed_from_u64(z ^ (z >> 31));
    }

    pub fn blob_by_name(&self, name: &str) -> Option<&Blob> {
        self.spec.blob_id(name).map(|id| &self.blobs[id])
    }
    pub fn blob_by_name_mut(&mut self, name: &str) -> Option<&mut Blob> {
        self.spec.blob_id(name).map(|id| &mut self.blobs[id])
    }
    pub fn has_blob(&self, name: &str) -> bool {
        self.spec.blob_id(name).is_some()
    }

    /// Write `values` into the data of blob `name` (net inputs).
    pub fn set_input(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let b = self
            .blob_by_name_mut(name)
            .ok_or_else(|| Error::Net(format!("net has no blob named '{name}'")))?;
        b.set_data(values)
            .map_err(|e| Error::Net(format!("input '{name}': {e}")))
    }

    /// The net's outputs in Caffe's order, copied to the host.
    pub fn outputs(&self) -> Vec<NetOutput> {
        self.spec
            .output_blob_ids
            .iter()
            .map(|&id| NetOutput {
                name: self.spec.blob_names[id].clone(),
                values: self.blobs[id].data_vec(),
                loss_weight: self.spec.blob_loss_weights[id],
            })
            .collect()
    }

    /// Caffe's CopyTrainedLayersFrom: match layers by name; a matched layer
    /// must have the same number of blobs and each shape must match
    /// (legacy 4-D shapes allowed). Unmatched source layers are ignored.
    /// Returns the names of the source layers that were ignored.
    pub fn copy_trained_layers_from(&mut self, param: &NetParameter) -> Result<Vec<String>> {
        let mut ignored = Vec::new();
        for src in &param.layer {
            let name = src.name();
            let Some(li) = self.spec.layer_id(name) else {
                ignored.push(name.to_string());
                continue;
            };
            let n_target = self.layer_params[li].len();
            if src.blobs.len() != n_target {
                return Err(Error::Net(format!(
                    "Incompatible number of blobs for layer '{name}': the weights file has {}, the net has {n_target}",
                    src.blobs.len()
                )));
            }
            for (j, bp) in src.blobs.iter().enumerate() {
                let id = self.layer_params[li][j];
                let target = &mut self.blobs[id];
                if !target.shape_equals(bp) {
                    let src_shape = Blob::proto_shape(bp)
                        .map(|s| crate::tensor::shape_string(&s))
                        .unwrap_or_else(|e| e.to_string());
                    return Err(Error::Net(format!(
                        "Cannot copy param {j} weights from layer '{name}'; shape mismatch. \
                         Source param shape is {src_shape}; target param shape is {}. \
                         To learn this layer's parameters from scratch rather than copying from a \
                         saved net, rename the layer.",
                        target.shape_string()
                    )));
                }
                target
                    .copy_from_proto(bp)
                    .map_err(|e| Error::Net(format!("layer '{name}' param {j}: {e}")))?;
            }
        }
        Ok(ignored)
    }

    /// Copy the learnable values of `other` into same-named layers of this
    /// net (a test net following its train net).
    pub fn share_weights_from(&mut self, other: &Net) -> Result<()> {
        let be = self.cx.be.clone();
        for li in 0..self.spec.layers.len() {
            if self.layer_params[li].is_empty() {
                continue;
            }
            let name = self.spec.layers[li].name();
            let Some(oi) = other.spec.layer_id(name) else {
                continue;
            };
            if other.layer_params[oi].len() != self.layer_params[li].len() {
                return Err(Error::Net(format!(
                    "layer '{name}' has {} blobs in one net and {} in the other",
                    self.layer_params[li].len(),
                    other.layer_params[oi].len()
                )));
            }
            for j in 0..self.layer_params[li].len() {
                let src = &other.blobs[other.layer_params[oi][j]];
                let dst = &mut self.blobs[self.layer_params[li][j]];
                if src.shape() != dst.shape() {
                    return Err(Error::Net(format!(
                        "layer '{name}' param {j}: shape {} vs {}",
                        src.shape_string(),
                        dst.shape_string()
                    )));
                }
                be.copy(src.count(), src.data.view(), dst.data.view_mut());
            }
        }
        Ok(())
    }

    /// Caffe's Net::ToProto: the layers as they hold their parameters, with
    /// their blobs (and diffs when asked).
    pub fn to_proto(&self, write_diff: bool) -> NetParameter {
        let mut p = NetParameter {
            name: Some(self.spec.name.clone()),
            ..Default::default()
        };
        for (li, ls) in self.spec.layers.iter().enumerate() {
            let mut lp = ls.param.clone();
            lp.blobs = self.layer_params[li]
                .iter()
                .map(|&id| self.blobs[id].to_proto(write_diff))
                .collect();
            p.layer.push(lp);
        }
        p
    }
}
