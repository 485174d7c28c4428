//! rcaffe: a Caffe-compatible deep-learning trainer.
//!
//! Data flow: text/binary files (`proto`) → upgrades (`proto::upgrade`) →
//! the pure net graph (`net::spec`) → a `Net` of layers on a backend →
//! a `Solver`. See `docs/ARCHITECTURE.md`.
pub mod backend;
pub mod data;
pub mod error;
pub mod fillers;
pub mod layers;
pub mod log;
pub mod net;
pub mod parallel;
pub mod proto;
pub mod solver;
pub mod tensor;
pub mod testing;
pub mod tools;

pub use error::{Error, Result};
