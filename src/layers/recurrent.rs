//! The recurrent layer family: LSTM, RNN (Caffe's RecurrentLayer
//! subclasses, computed directly rather than through an unrolled net) and
//! LSTMUnit (one LSTM step).
use super::Layer;
use crate::error::Result;
use crate::proto::caffe::LayerParameter;

mod common;
mod lstm;
mod lstm_unit;
mod rnn;
#[cfg(test)]
mod tests;

pub use lstm::Lstm;
pub use lstm_unit::LstmUnit;
pub use rnn::Rnn;

/// Layer types of this family.
pub const TYPES: &[&str] = &["LSTM", "LSTMUnit", "RNN"];

fn boxed<L: Layer + 'static>(r: Result<L>) -> Result<Box<dyn Layer>> {
    r.map(|l| Box::new(l) as Box<dyn Layer>)
}

/// Build a layer of this family, or `None` if `ty` is not one of ours.
pub fn create(ty: &str, lp: &LayerParameter) -> Option<Result<Box<dyn Layer>>> {
    Some(match ty {
        "LSTM" => boxed(Lstm::new(lp)),
        "LSTMUnit" => boxed(LstmUnit::new(lp)),
        "RNN" => boxed(Rnn::new(lp)),
        _ => return None,
    })
}
