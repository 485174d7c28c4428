//! The one place that maps a prototxt `type` string to a layer. Each family
//! module exposes `TYPES` and `create`; `LAYER_TYPES` is their union, and a
//! test keeps the two in sync.
use super::{common, data, loss, neuron, norm, recurrent, shape, vision, Layer};
use crate::error::{Error, Result};
use crate::proto::caffe::LayerParameter;

type Factory = fn(&str, &LayerParameter) -> Option<Result<Box<dyn Layer>>>;

const FAMILIES: &[(&[&str], Factory)] = &[
    (vision::TYPES, vision::create),
    (neuron::TYPES, neuron::create),
    (loss::TYPES, loss::create),
    (common::TYPES, common::create),
    (data::TYPES, data::create),
    (norm::TYPES, norm::create),
    (shape::TYPES, shape::create),
    (recurrent::TYPES, recurrent::create),
];

/// Every layer type this build knows, sorted.
pub fn layer_types() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = FAMILIES
        .iter()
        .flat_map(|(t, _)| t.iter().copied())
        .collect();
    v.sort_unstable();
    v
}

/// Build the layer for `lp.type`; errors name the layer and its type.
pub fn create_layer(lp: &LayerParameter) -> Result<Box<dyn Layer>> {
    let name = lp.name();
    let ty = lp.r#type();
    for (_, make) in FAMILIES {
        if let Some(r) = make(ty, lp) {
            return r.map_err(|e| e.in_layer(name, ty));
        }
    }
    if ty == "Python" {
        let (module, class) = lp
            .python_param
            .as_ref()
            .map(|p| (p.module().to_string(), p.layer().to_string()))
            .unwrap_or_default();
        return Err(Error::Net(format!(
            "layer '{name}' is a Python layer (module '{module}', class '{class}'): \
             Python layers are not supported by rcaffe"
        )));
    }
    Err(Error::Net(format!(
        "layer '{name}' has unknown type '{ty}'; known types: {}",
        layer_types().join(", ")
    )))
}
