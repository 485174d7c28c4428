//! `recurrent` operations on the GPU (in progress).
