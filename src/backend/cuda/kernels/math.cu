// Math: the element-wise and reduction operations of the `Math` trait
// (GEMM/GEMV go to cuBLAS). Caffe's math_functions.cu has one kernel per
// operation; so do we. `y` may alias an input in every kernel: each element
// is read before it is written, by the same thread.

extern "C" __global__ void rc_set(long long n, float v, float* y) {
  RC_LOOP(i, n) y[i] = v;
}

extern "C" __global__ void rc_add_scalar(long long n, float v, float* y) {
  RC_LOOP(i, n) y[i] += v;
}

extern "C" __global__ void rc_axpy(long long n, float a, const float* x, float* y) {
  RC_LOOP(i, n) y[i] += a * x[i];
}

extern "C" __global__ void rc_axpby(long long n, float a, const float* x, float b, float* y) {
  RC_LOOP(i, n) y[i] = a * x[i] + b * y[i];
}

extern "C" __global__ void rc_scal(long long n, float a, float* x) {
  RC_LOOP(i, n) x[i] *= a;
}

extern "C" __global__ void rc_copy(long long n, const float* x, float* y) {
  RC_LOOP(i, n) y[i] = x[i];
}

// y = a op b (Binary::{Add, Sub, Mul, Div, Max}); binary_inplace passes y as b.
#define RC_BINARY(name, expr)                                                \
  extern "C" __global__ void name(long long n, const float* a, const float* b, \
                                  float* y) {                                \
    RC_LOOP(i, n) {                                                          \
      const float u = a[i], v = b[i];                                        \
      y[i] = (expr);                                                         \
    }                                                                        \
  }
RC_BINARY(rc_add, u + v)
RC_BINARY(rc_sub, u - v)
RC_BINARY(rc_mul, u * v)
RC_BINARY(rc_div, u / v)
// fmaxf ignores a NaN operand, as Rust's f32::max on the CPU backend.
RC_BINARY(rc_max, fmaxf(u, v))

// Math::dropout_mask: y[i] = scale if r(seed, i) > thres else 0, r = the
// high 32 bits of SplitMix64 at counter i + 1 (cpu/math.rs dropout_bits,
// bit for bit; unsigned 64-bit arithmetic wraps as Rust's wrapping_*).
extern "C" __global__ void rc_dropout_mask(long long n, unsigned long long seed,
                                           unsigned int thres, float scale, float* y) {
  RC_LOOP(i, n) {
    unsigned long long z = seed + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    y[i] = (unsigned int)(z >> 32) > thres ? scale : 0.0f;
  }
}

// Reductions in two launches with a fixed grid, so results do not depend on
// scheduling: each block writes its partial sum (double) to part[block],
// then rc_sum_partials (one block) adds the partials.
extern "C" __global__ void rc_dot_partial(long long n, const float* x, const float* y,
                                          double* part) {
  double s = 0.0;
  RC_LOOP(i, n) s += (double)x[i] * (double)y[i];
  const double t = rc_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

extern "C" __global__ void rc_asum_partial(long long n, const float* x, double* part) {
  double s = 0.0;
  RC_LOOP(i, n) s += fabs((double)x[i]);
  const double t = rc_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// Blob::sumsq_diff for gradient clipping (SolverOps::sumsq).
extern "C" __global__ void rc_sumsq_partial(long long n, const float* x, double* part) {
  double s = 0.0;
  RC_LOOP(i, n) {
    const double v = (double)x[i];
    s += v * v;
  }
  const double t = rc_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// One block: out[0] = (float) Σ part[0..m).
extern "C" __global__ void rc_sum_partials(int m, const double* part, float* out) {
  double s = 0.0;
  for (int i = threadIdx.x; i < m; i += blockDim.x) s += part[i];
  const double t = rc_block_sum(s);
  if (threadIdx.x == 0) out[0] = (float)t;
}
