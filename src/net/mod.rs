//! Nets: the pure graph (`spec`) and the runtime `Net` on a backend.
#[allow(clippy::module_inception)]
mod net;
pub mod spec;

pub use net::{Net, NetOptions, NetOutput, NonFinite};
