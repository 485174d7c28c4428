// NormOps: channel-wise kernels of BatchNorm, Scale, Bias, MVN and PReLU on
// (outer, channels, inner) tensors. Per-channel reductions use one block
// per channel (RC_REDUCE_THREADS threads) and accumulate in double.

// out[c] = alpha · Σ_{o,i} x + beta · out[c] (out not read when beta == 0).
// Grid: channels blocks.
extern "C" __global__ void rc_channel_sum_nci(int outer, int channels, int inner, float alpha,
                                              const float* x, float beta, float* out) {
  const int c = blockIdx.x;
  const long long m = (long long)outer * inner;
  double s = 0.0;
  for (long long j = threadIdx.x; j < m; j += blockDim.x) {
    const long long o = j / inner, i = j % inner;
    s += (double)x[(o * channels + c) * inner + i];
  }
  const double t = rc_block_sum(s);
  if (threadIdx.x == 0) {
    const float r = alpha * (float)t;
    out[c] = beta == 0.0f ? r : r + beta * out[c];
  }
}

// out[c] = alpha · Σ_{o,i} a·b + beta · out[c]. Grid: channels blocks.
extern "C" __global__ void rc_channel_dot_nci(int outer, int channels, int inner, float alpha,
                                              const float* a, const float* b, float beta,
                                              float* out) {
  const int c = blockIdx.x;
  const long long m = (long long)outer * inner;
  double s = 0.0;
  for (long long j = threadIdx.x; j < m; j += blockDim.x) {
    const long long o = j / inner, i = j % inner;
    const long long k = (o * channels + c) * inner + i;
    s += (double)a[k] * (double)b[k];
  }
  const double t = rc_block_sum(s);
  if (threadIdx.x == 0) {
    const float r = alpha * (float)t;
    out[c] = beta == 0.0f ? r : r + beta * out[c];
  }
}

// y = x ∘ v[c] (channel_broadcast; in place with y == x).
#define RC_BCAST(name, expr)                                                 \
  extern "C" __global__ void name(long long n, int channels, int inner,     \
                                  const float* x, const float* vc, float* y) { \
    RC_LOOP(i, n) {                                                          \
      const float u = x[i], v = vc[(i / inner) % channels];                  \
      y[i] = (expr);                                                         \
    }                                                                        \
  }
RC_BCAST(rc_bcast_add, u + v)
RC_BCAST(rc_bcast_sub, u - v)
RC_BCAST(rc_bcast_mul, u * v)
RC_BCAST(rc_bcast_div, u / v)
RC_BCAST(rc_bcast_max, fmaxf(u, v))

// y = x / s[0], or 0 when s[0] == 0 (the factor stays on the device).
extern "C" __global__ void rc_scale_by_inverse(long long n, const float* s, const float* x,
                                               float* y) {
  const float s0 = s[0];
  const float f = s0 == 0.0f ? 0.0f : 1.0f / s0;
  RC_LOOP(i, n) y[i] = f * x[i];
}

// PReLU: y = max(x, 0) + slope[c] · min(x, 0) (std::max/min as Caffe's CPU).
extern "C" __global__ void rc_prelu_fwd(long long n, int channels, int inner, const float* x,
                                        const float* slope, float* y) {
  RC_LOOP(i, n) {
    const float v = x[i];
    const float a = slope[(i / inner) % channels];
    y[i] = rc_cmax(v, 0.0f) + a * rc_cmin(v, 0.0f);
  }
}

// slope_diff[c] += Σ dy · x · [x ≤ 0]. Grid: channels blocks.
extern "C" __global__ void rc_prelu_bwd_slope(int outer, int channels, int inner,
                                              const float* x, const float* dy,
                                              float* slope_diff) {
  const int c = blockIdx.x;
  const long long m = (long long)outer * inner;
  double s = 0.0;
  for (long long j = threadIdx.x; j < m; j += blockDim.x) {
    const long long o = j / inner, i = j % inner;
    const long long k = (o * channels + c) * inner + i;
    const float v = x[k];
    if (v <= 0.0f) s += (double)(dy[k] * v);
  }
  const double t = rc_block_sum(s);
  if (threadIdx.x == 0) slope_diff[c] += (float)t;
}

// dx = dy · ([x > 0] + slope[c] · [x ≤ 0]).
extern "C" __global__ void rc_prelu_bwd_data(long long n, int channels, int inner,
                                             const float* x, const float* dy,
                                             const float* slope, float* dx) {
  RC_LOOP(i, n) {
    const float v = x[i];
    const float a = slope[(i / inner) % channels];
    dx[i] = dy[i] * ((v > 0.0f ? 1.0f : 0.0f) + a * (v <= 0.0f ? 1.0f : 0.0f));
  }
}
