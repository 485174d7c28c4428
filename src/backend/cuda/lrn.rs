//! `lrn` operations on the GPU (in progress).
