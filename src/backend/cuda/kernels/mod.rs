//! The CUDA C sources of the backend's own kernels, one `.cu` file per
//! operation family (mirroring `src/backend/cpu/<family>.rs`), compiled
//! with NVRTC at run time for the GPU present (see `nvrtc.rs`).
//!
//! Each family lists the `extern "C"` kernels the Rust side launches; the
//! NVRTC check (tests/cuda_kernels.rs) compiles every family and checks that
//! the PTX defines exactly these entry points, so a renamed or missing
//! kernel is caught without a GPU.

/// Prepended to every family: limits, loop macros, the block reduction.
pub const COMMON: &str = include_str!("common.cuh");

/// Threads per block of the reduction kernels (`RC_REDUCE_THREADS`).
pub const REDUCE_THREADS: u32 = 256;

/// Maximum spatial axes of the N-D im2col kernels (`RC_MAX_AXES`, Caffe's
/// limit for its N-D GPU kernels too).
pub const MAX_AXES: usize = 10;

/// One `.cu` file and the kernels it defines.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    /// File name, for compile logs.
    pub file: &'static str,
    pub source: &'static str,
    pub kernels: &'static [&'static str],
}

impl Family {
    /// The full program text NVRTC compiles: the common prelude, then the
    /// family's file with line numbers reset so compile errors point into it.
    pub fn program(&self) -> String {
        format!("{COMMON}\n#line 1 \"{}\"\n{}", self.file, self.source)
    }
}

pub const MATH: Family = Family {
    name: "math",
    file: "math.cu",
    source: include_str!("math.cu"),
    kernels: &[
        "rc_set",
        "rc_add_scalar",
        "rc_axpy",
        "rc_axpby",
        "rc_scal",
        "rc_copy",
        "rc_add",
        "rc_sub",
        "rc_mul",
        "rc_div",
        "rc_max",
        "rc_dropout_mask",
        "rc_dot_partial",
        "rc_asum_partial",
        "rc_sumsq_partial",
        "rc_sum_partials",
    ],
};

pub const UNARY: Family = Family {
    name: "unary",
    file: "unary.cu",
    source: include_str!("unary.cu"),
    kernels: &[
        "rc_relu_fwd",
        "rc_relu_bwd",
        "rc_sigmoid_fwd",
        "rc_sigmoid_bwd",
        "rc_tanh_fwd",
        "rc_tanh_bwd",
        "rc_elu_fwd",
        "rc_elu_bwd",
        "rc_absval_fwd",
        "rc_absval_bwd",
        "rc_bnll_fwd",
        "rc_bnll_bwd",
        "rc_power_fwd",
        "rc_power_bwd",
        "rc_exp_fwd",
        "rc_exp_bwd",
        "rc_log_fwd",
        "rc_log_bwd",
        "rc_threshold_fwd",
        "rc_threshold_bwd",
        "rc_clip_fwd",
        "rc_clip_bwd",
        "rc_swish_fwd",
        "rc_swish_bwd",
        "rc_sqrt_fwd",
        "rc_sqrt_bwd",
    ],
};

pub const CONV: Family = Family {
    name: "conv",
    file: "conv.cu",
    source: include_str!("conv.cu"),
    kernels: &["rc_im2col", "rc_col2im", "rc_im2col_nd", "rc_col2im_nd"],
};

pub const POOL: Family = Family {
    name: "pool",
    file: "pool.cu",
    source: include_str!("pool.cu"),
    kernels: &[
        "rc_max_pool_fwd",
        "rc_max_pool_bwd",
        "rc_ave_pool_fwd",
        "rc_ave_pool_bwd",
    ],
};

pub const DEPTHWISE: Family = Family {
    name: "depthwise",
    file: "depthwise.cu",
    source: include_str!("depthwise.cu"),
    kernels: &[
        "rc_dw_conv_fwd",
        "rc_dw_conv_bwd_data",
        "rc_dw_conv_bwd_filter",
    ],
};

pub const LRN: Family = Family {
    name: "lrn",
    file: "lrn.cu",
    source: include_str!("lrn.cu"),
    kernels: &[
        "rc_lrn_fill_scale",
        "rc_lrn_output",
        "rc_lrn_diff",
        "rc_lrn_within_fwd",
        "rc_lrn_within_bwd",
    ],
};

pub const SOFTMAX: Family = Family {
    name: "softmax",
    file: "softmax.cu",
    source: include_str!("softmax.cu"),
    kernels: &[
        "rc_softmax_fwd",
        "rc_softmax_bwd",
        "rc_softmax_loss_partial",
        "rc_label_count_partial",
        "rc_softmax_loss_grad",
        "rc_accuracy_fwd",
        "rc_accuracy_per_class_fwd",
    ],
};

pub const SOLVER: Family = Family {
    name: "solver",
    file: "solver.cu",
    source: include_str!("solver.cu"),
    kernels: &[
        "rc_regularize_l2",
        "rc_regularize_l1",
        "rc_sgd_update",
        "rc_nesterov_update",
        "rc_adagrad_update",
        "rc_rmsprop_update",
        "rc_adadelta_update",
        "rc_adam_update",
    ],
};

pub const ELTWISE: Family = Family {
    name: "eltwise",
    file: "eltwise.cu",
    source: include_str!("eltwise.cu"),
    kernels: &["rc_eltwise_max_fwd", "rc_eltwise_max_bwd"],
};

pub const NORM: Family = Family {
    name: "norm",
    file: "norm.cu",
    source: include_str!("norm.cu"),
    kernels: &[
        "rc_channel_sum_nci",
        "rc_channel_dot_nci",
        "rc_channel_partial",
        "rc_channel_finish",
        "rc_bcast_add",
        "rc_bcast_sub",
        "rc_bcast_mul",
        "rc_bcast_div",
        "rc_bcast_max",
        "rc_channel_affine",
        "rc_scale_by_inverse",
        "rc_prelu_fwd",
        "rc_prelu_bwd_slope",
        "rc_prelu_bwd_data",
    ],
};

pub const RECURRENT: Family = Family {
    name: "recurrent",
    file: "recurrent.cu",
    source: include_str!("recurrent.cu"),
    kernels: &["rc_lstm_unit_fwd", "rc_lstm_unit_bwd", "rc_scale_rows"],
};

pub const SHAPE: Family = Family {
    name: "shape",
    file: "shape.cu",
    source: include_str!("shape.cu"),
    kernels: &[
        "rc_copy_blocks",
        "rc_gather_rows",
        "rc_scatter_add_groups",
        "rc_crop",
        "rc_reduce_rows_thread",
        "rc_reduce_rows_block",
        "rc_reduce_rows_bwd",
        "rc_argmax",
        "rc_sigmoid_ce_loss_partial",
        "rc_sigmoid_ce_grad",
        "rc_hinge_margins",
        "rc_hinge_grad",
        "rc_mnl_loss_partial",
        "rc_mnl_grad",
        "rc_infogain_loss_partial",
        "rc_infogain_row_sums",
        "rc_infogain_grad",
        "rc_contrastive_loss_partial",
        "rc_contrastive_grad",
    ],
};

/// Every family, compiled together when a device is opened.
pub const FAMILIES: &[Family] = &[
    MATH, UNARY, CONV, DEPTHWISE, POOL, LRN, SOFTMAX, SOLVER, ELTWISE, NORM, RECURRENT, SHAPE,
];

/// The kernel names of a `Unary` variant: (forward, backward).
pub fn unary_kernels(op: crate::backend::Unary) -> (&'static str, &'static str) {
    use crate::backend::Unary as U;
    match op {
        U::ReLU { .. } => ("rc_relu_fwd", "rc_relu_bwd"),
        U::Sigmoid => ("rc_sigmoid_fwd", "rc_sigmoid_bwd"),
        U::TanH => ("rc_tanh_fwd", "rc_tanh_bwd"),
        U::ELU { .. } => ("rc_elu_fwd", "rc_elu_bwd"),
        U::AbsVal => ("rc_absval_fwd", "rc_absval_bwd"),
        U::BNLL => ("rc_bnll_fwd", "rc_bnll_bwd"),
        U::Power { .. } => ("rc_power_fwd", "rc_power_bwd"),
        U::Exp { .. } => ("rc_exp_fwd", "rc_exp_bwd"),
        U::Log { .. } => ("rc_log_fwd", "rc_log_bwd"),
        U::Threshold { .. } => ("rc_threshold_fwd", "rc_threshold_bwd"),
        U::Clip { .. } => ("rc_clip_fwd", "rc_clip_bwd"),
        U::Swish { .. } => ("rc_swish_fwd", "rc_swish_bwd"),
        U::Sqrt => ("rc_sqrt_fwd", "rc_sqrt_bwd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_agree_with_the_sources() {
        assert!(COMMON.contains(&format!("#define RC_REDUCE_THREADS {REDUCE_THREADS}\n")));
        assert!(CONV
            .source
            .contains(&format!("#define RC_MAX_AXES {MAX_AXES}\n")));
    }

    /// Every listed kernel is defined in its file (by name, before NVRTC
    /// checks it properly) and names are unique across families, since all
    /// families' functions are looked up by name.
    #[test]
    fn listed_kernels_exist_and_are_unique() {
        let mut all = std::collections::HashSet::new();
        for f in FAMILIES {
            for k in f.kernels {
                assert!(all.insert(*k), "{k} listed twice");
                let defined = f.source.contains(&format!("void {k}("))
                    || f.source.contains(&format!("({k},"));
                assert!(defined, "{k} not defined in {}", f.file);
            }
        }
        // Every Unary variant maps to listed kernels.
        use crate::backend::Unary as U;
        for op in [
            U::ReLU { slope: 0.0 },
            U::Sigmoid,
            U::TanH,
            U::ELU { alpha: 1.0 },
            U::AbsVal,
            U::BNLL,
            U::Power {
                power: 1.0,
                scale: 1.0,
                shift: 0.0,
            },
            U::Exp {
                inner: 1.0,
                outer: 1.0,
            },
            U::Log {
                scale: 1.0,
                shift: 0.0,
                base_scale: 1.0,
                back_scale: 1.0,
            },
            U::Threshold { threshold: 0.0 },
            U::Clip { min: 0.0, max: 1.0 },
            U::Swish { beta: 1.0 },
            U::Sqrt,
        ] {
            let (f, b) = unary_kernels(op);
            assert!(UNARY.kernels.contains(&f) && UNARY.kernels.contains(&b));
        }
    }
}
