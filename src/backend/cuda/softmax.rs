//! `SoftmaxOps` on the GPU (`kernels/softmax.cu`): one thread per
//! `(outer, inner)` column runs Caffe's max / exp / sum / divide sequence
//! (or the backward's dot / subtract / multiply) over the channels, in the
//! CPU backend's order, so no scratch is needed.
//!
//! The loss is reduced on the device (`CudaBackend::reduce`: fixed grid,
//! per-block sums in double, then one block adds the partials) and only
//! the final numbers are downloaded: the loss sum, and the valid-label
//! count, whose reduction is NaN when a label is outside `[0, channels)`.
//! Only then (the error path) are the labels downloaded, to name the first
//! bad one exactly as the CPU backend does.
//!
//! Accuracy needs no scratch either: one block counts every column and
//! writes the accuracy into its top on the device (NaN when a label is
//! bad), that one value is read back to learn whether to fail, and the
//! per-class values come from one thread per class scanning the columns
//! in order. Integer counts make both bit-identical to the CPU's (up to
//! 2^24 counted columns, where the CPU's float counters stop being exact).
use cudarc::driver::LaunchConfig;

use super::kernels::REDUCE_THREADS;
use super::math::{elementwise, ll, CudaBackend, KArg};
use super::pool::at;
use crate::backend::{SoftmaxOps, View, ViewMut};
use crate::error::{Error, Result};

/// Columns per count reduction: the count comes back as an f32, exact up
/// to 2^24.
const COUNT_CHUNK: usize = 1 << 24;

fn i32k(v: usize, what: &str) -> KArg {
    KArg::I32(
        i32::try_from(v)
            .unwrap_or_else(|_| panic!("{what} {v} exceeds the GPU kernels' int range")),
    )
}

/// `(has_ignore, ignore_label)` kernel arguments.
fn ignore_args(ignore_label: Option<i32>) -> [KArg; 2] {
    [
        KArg::I32(ignore_label.is_some() as i32),
        KArg::I32(ignore_label.unwrap_or(0)),
    ]
}

impl CudaBackend {
    /// The number of columns whose label is not ignored, or the CPU
    /// backend's error for the first label outside `[0, channels)`.
    fn valid_labels(
        &self,
        cols: usize,
        channels: usize,
        label: &View,
        ignore_label: Option<i32>,
    ) -> Result<usize> {
        let lp = self.raw(label);
        let [has, ign] = ignore_args(ignore_label);
        let mut count = 0usize;
        let mut bad = false;
        let mut c0 = 0;
        while c0 < cols {
            let nc = COUNT_CHUNK.min(cols - c0);
            let args = [at(lp, c0), i32k(channels, "channels"), has, ign];
            let v = self.reduce("rc_label_count_partial", nc, &args);
            if v.is_nan() {
                bad = true;
                break;
            }
            count += v as usize;
            c0 += nc;
        }
        if !bad {
            return Ok(count);
        }
        let labels = label.buf.read(label.off + cols);
        for &v in &labels[label.off..] {
            let l = v as i32;
            if ignore_label != Some(l) && (l < 0 || l as usize >= channels) {
                return Err(Error::layer(format!(
                    "label {v} is outside [0, {channels}) (the softmax axis has {channels} classes)"
                )));
            }
        }
        // `reduce` also answers NaN when the device recorded an error (which
        // its check consumed), so with every label valid that is the cause.
        Err(Error::layer(
            "counting the valid labels on the GPU failed (an earlier GPU operation \
             reported an error; every label is in range)",
        ))
    }
}

impl SoftmaxOps for CudaBackend {
    fn softmax_forward(&self, outer: usize, channels: usize, inner: usize, x: ViewMut) {
        let cols = outer * inner;
        if cols == 0 || channels == 0 {
            return;
        }
        // rc_softmax_fwd(n, channels, inner, x)
        let args = [
            ll(cols),
            i32k(channels, "channels"),
            i32k(inner, "inner size"),
            self.ptr_mut(&x),
        ];
        self.launch("rc_softmax_fwd", elementwise(cols), &args);
    }

    fn softmax_backward(&self, outer: usize, channels: usize, inner: usize, y: View, d: ViewMut) {
        let cols = outer * inner;
        if cols == 0 || channels == 0 {
            return;
        }
        // rc_softmax_bwd(n, channels, inner, y, d)
        let args = [
            ll(cols),
            i32k(channels, "channels"),
            i32k(inner, "inner size"),
            self.ptr(&y),
            self.ptr_mut(&d),
        ];
        self.launch("rc_softmax_bwd", elementwise(cols), &args);
    }

    fn softmax_loss_forward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        prob: View,
        label: View,
        ignore_label: Option<i32>,
    ) -> Result<(f32, usize)> {
        let cols = outer * inner;
        if cols == 0 {
            return Ok((0.0, 0));
        }
        // Validate first: an invalid label is an error whatever the loss.
        let count = self.valid_labels(cols, channels, &label, ignore_label)?;
        let [has, ign] = ignore_args(ignore_label);
        // rc_softmax_loss_partial(n, prob, label, channels, inner,
        //                         has_ignore, ignore_label, part)
        let args = [
            self.ptr(&prob),
            self.ptr(&label),
            i32k(channels, "channels"),
            i32k(inner, "inner size"),
            has,
            ign,
        ];
        let loss = self.reduce("rc_softmax_loss_partial", cols, &args);
        Ok((loss, count))
    }

    fn softmax_loss_backward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        prob: View,
        label: View,
        ignore_label: Option<i32>,
        dx: ViewMut,
    ) -> Result<usize> {
        let cols = outer * inner;
        if cols == 0 {
            return Ok(0);
        }
        let [has, ign] = ignore_args(ignore_label);
        // rc_softmax_loss_grad(n, prob, label, channels, inner, has_ignore,
        //                      ignore_label, dx)
        let args = [
            ll(cols),
            self.ptr(&prob),
            self.ptr(&label),
            i32k(channels, "channels"),
            i32k(inner, "inner size"),
            has,
            ign,
            self.ptr_mut(&dx),
        ];
        self.launch("rc_softmax_loss_grad", elementwise(cols), &args);
        self.valid_labels(cols, channels, &label, ignore_label)
    }

    fn accuracy(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        top_k: usize,
        ignore_label: Option<i32>,
        score: View,
        label: View,
        acc: ViewMut,
        per_class: Option<ViewMut>,
    ) -> Result<()> {
        let cols = outer * inner;
        // At most `channels` scores can be >= the true one, so a larger
        // top_k means the same (and keeps it in the kernels' int range).
        let common = [
            i32k(cols, "outer · inner"),
            self.ptr(&score),
            self.ptr(&label),
            i32k(channels, "channels"),
            i32k(inner.max(1), "inner size"),
            i32k(top_k.min(channels), "top_k"),
        ];
        let [has, ign] = ignore_args(ignore_label);
        // rc_accuracy_fwd(n, x, label, channels, inner, top_k, has_ignore,
        //                 ignore_label, acc): one block, see the kernel.
        let mut args = common.to_vec();
        args.extend([has, ign, self.ptr_mut(&acc)]);
        let one_block = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch("rc_accuracy_fwd", one_block, &args);
        // The one value read back: NaN flags a bad label (the error needs
        // a synchronous answer; accuracy itself is never NaN).
        // Synchronised and checked first: a failed download would panic.
        if let Err(e) = self.sync() {
            return Err(Error::layer(format!(
                "computing the accuracy on the GPU: {e}"
            )));
        }
        let status = acc.buf.read(acc.off + 1)[acc.off];
        if status.is_nan() {
            // Error path only: download the labels to name the first bad one.
            let labels = label.buf.read(label.off + cols);
            for &v in &labels[label.off..] {
                let l = v as i32;
                if ignore_label != Some(l) && (l < 0 || l as usize >= channels) {
                    return Err(Error::layer(format!(
                        "label {v} is outside [0, {channels})"
                    )));
                }
            }
            return Err(Error::layer(
                "the GPU accuracy kernel flagged a bad label, but every label is in range",
            ));
        }
        if let Some(pc) = per_class {
            if channels > 0 {
                // rc_accuracy_per_class_fwd(n, x, label, channels, inner,
                //     top_k, has_ignore, ignore_label, out): one thread per
                //     class.
                let mut args = common.to_vec();
                args.extend([has, ign, self.ptr_mut(&pc)]);
                self.launch("rc_accuracy_per_class_fwd", elementwise(channels), &args);
            }
        }
        Ok(())
    }
}
