//! Norm family tests.
