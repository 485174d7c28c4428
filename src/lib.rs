//! rcaffe: a Caffe-compatible deep-learning trainer.
//!
//! Data flow: text/binary files (`proto`) → upgrades (`proto::upgrade`) →
//! the pure net graph (`net::spec`) → a `Net` of layers on a backend →
//! a `Solver`. See `docs/ARCHITECTURE.md`.
pub mod error;
pub mod proto;

pub use error::{Error, Result};
