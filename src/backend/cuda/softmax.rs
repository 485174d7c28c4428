//! `softmax` operations on the GPU (in progress).
