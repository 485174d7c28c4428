//! `solver` operations on the GPU (in progress).
