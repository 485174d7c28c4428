//! `conv` operations on the GPU (in progress).
