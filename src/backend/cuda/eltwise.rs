//! `eltwise` operations on the GPU (in progress).
