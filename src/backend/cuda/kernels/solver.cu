// SolverOps: the solvers' fused update kernels (Caffe's
// src/caffe/solvers/*.cu), each followed in the same pass by Net::Update's
// `data -= diff`. `g` is the gradient in `diff` on entry and the step on
// exit; `lr` is the local rate.
//
// The arithmetic is the CPU backend's (Caffe's CPU sequence with
// OpenBLAS), written with explicit roundings so NVRTC's default
// multiply-add contraction cannot change it:
// - caffe_cpu_axpby / caffe_axpy are y = fma(a, x, b·y), and b·y alone
//   when a == 0 (saxpy returns early): rc_axpby below.
// - Where Caffe's CPU calls powf(x, 2) and powf(x, 0.5) these kernels take
//   the correctly rounded x·x and sqrt(x) (as Caffe's own GPU kernels do);
//   glibc's powf differs from them in the last bit for about 1 input in
//   2000, the one place the GPU and CPU backends may disagree.

__device__ __forceinline__ float rc_axpby(float a, float x, float b, float y) {
  return a == 0.0f ? __fmul_rn(b, y) : __fmaf_rn(a, x, __fmul_rn(b, y));
}

// Regularize: diff += decay · data (L2) or decay · sign(data) (L1), one
// caffe_axpy each.
extern "C" __global__ void rc_regularize_l2(long long n, float decay, const float* w, float* g) {
  RC_LOOP(i, n) g[i] = __fmaf_rn(decay, w[i], g[i]);
}

extern "C" __global__ void rc_regularize_l1(long long n, float decay, const float* w, float* g) {
  RC_LOOP(i, n) {
    const float v = w[i];
    // caffe_sign: -1, 0 or 1 (0 for NaN).
    const float s = (float)((0.0f < v) - (v < 0.0f));
    g[i] = __fmaf_rn(decay, s, g[i]);
  }
}

// SGD: h = axpby(lr, g, μ, h); g = h; w -= h.
extern "C" __global__ void rc_sgd_update(long long n, float momentum, float lr, float* g,
                                         float* h, float* w) {
  RC_LOOP(i, n) {
    const float hi = rc_axpby(lr, g[i], momentum, h[i]);
    h[i] = hi;
    g[i] = hi;
    w[i] = __fsub_rn(w[i], hi);
  }
}

// Nesterov: h' = axpby(lr, g, μ, h); g = axpby(1+μ, h', −μ, h); w -= g.
extern "C" __global__ void rc_nesterov_update(long long n, float momentum, float lr, float* g,
                                              float* h, float* w) {
  const float a = __fadd_rn(1.0f, momentum);
  RC_LOOP(i, n) {
    const float old = h[i];
    const float hi = rc_axpby(lr, g[i], momentum, old);
    h[i] = hi;
    const float step = rc_axpby(a, hi, -momentum, old);
    g[i] = step;
    w[i] = __fsub_rn(w[i], step);
  }
}

// The adaptive rules' last step: caffe_cpu_axpby(lr, update, 0, diff).
__device__ __forceinline__ float rc_scaled_step(float lr, float u) {
  return rc_axpby(lr, u, 0.0f, 0.0f);
}

// AdaGrad: h += g²; g = lr · (g / (sqrt(h) + δ)); w -= g.
extern "C" __global__ void rc_adagrad_update(long long n, float delta, float lr, float* g,
                                             float* h, float* w) {
  RC_LOOP(i, n) {
    const float gi = g[i];
    const float hi = __fadd_rn(h[i], __fmul_rn(gi, gi));
    h[i] = hi;
    const float step = rc_scaled_step(lr, __fdiv_rn(gi, __fadd_rn(__fsqrt_rn(hi), delta)));
    g[i] = step;
    w[i] = __fsub_rn(w[i], step);
  }
}

// RMSProp: h = axpby(1−ρ, g², ρ, h); g = lr · (g / (sqrt(h) + δ)); w -= g.
extern "C" __global__ void rc_rmsprop_update(long long n, float rms_decay, float delta,
                                             float lr, float* g, float* h, float* w) {
  const float a = __fsub_rn(1.0f, rms_decay);
  RC_LOOP(i, n) {
    const float gi = g[i];
    const float hi = rc_axpby(a, __fmul_rn(gi, gi), rms_decay, h[i]);
    h[i] = hi;
    const float step = rc_scaled_step(lr, __fdiv_rn(gi, __fadd_rn(__fsqrt_rn(hi), delta)));
    g[i] = step;
    w[i] = __fsub_rn(w[i], step);
  }
}

// AdaDelta: h = axpby(1−μ, g², μ, h); Δ = g · sqrt((δ + h2) / (δ + h));
// h2 = axpby(1−μ, Δ², μ, h2); g = lr · Δ (caffe_cpu_scale: a plain
// product); w -= g.
extern "C" __global__ void rc_adadelta_update(long long n, float momentum, float delta,
                                              float lr, float* g, float* h, float* h2,
                                              float* w) {
  const float a = __fsub_rn(1.0f, momentum);
  RC_LOOP(i, n) {
    const float gi = g[i];
    const float hi = rc_axpby(a, __fmul_rn(gi, gi), momentum, h[i]);
    h[i] = hi;
    const float h2i = h2[i];
    const float d = __fmul_rn(gi, __fsqrt_rn(__fdiv_rn(__fadd_rn(delta, h2i), __fadd_rn(delta, hi))));
    h2[i] = rc_axpby(a, __fmul_rn(d, d), momentum, h2i);
    const float step = __fmul_rn(lr, d);
    g[i] = step;
    w[i] = __fsub_rn(w[i], step);
  }
}

// Adam: m = axpby(1−β1, g, β1, m); v = axpby(1−β2, g·g, β2, v);
// g = corrected_lr · (m / (sqrt(v) + ε̂)) (caffe_div, then
// caffe_cpu_scale); w -= g.
extern "C" __global__ void rc_adam_update(long long n, float beta1, float beta2, float eps_hat,
                                          float corrected_lr, float* g, float* m, float* v,
                                          float* w) {
  const float a1 = __fsub_rn(1.0f, beta1), a2 = __fsub_rn(1.0f, beta2);
  RC_LOOP(i, n) {
    const float gi = g[i];
    const float mi = rc_axpby(a1, gi, beta1, m[i]);
    const float vi = rc_axpby(a2, __fmul_rn(gi, gi), beta2, v[i]);
    m[i] = mi;
    v[i] = vi;
    const float step = __fmul_rn(corrected_lr, __fdiv_rn(mi, __fadd_rn(__fsqrt_rn(vi), eps_hat)));
    g[i] = step;
    w[i] = __fsub_rn(w[i], step);
  }
}
