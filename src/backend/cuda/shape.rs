//! `shape` operations on the GPU (in progress).
