//! `pool` operations on the GPU (in progress).
