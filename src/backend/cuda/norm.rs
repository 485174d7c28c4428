//! `norm` operations on the GPU (in progress).
