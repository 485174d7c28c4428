// NormOps: channel-wise kernels of BatchNorm, Scale, Bias, MVN and PReLU on
// (outer, channels, inner) tensors.
//
// Per-channel reductions run one block per channel (RC_REDUCE_THREADS
// threads), accumulate in double like the CPU backend, and have a fixed
// order (thread t sums j = t, t+T, ... of the channel's outer·inner values
// in turn, then the block tree), so results depend only on the shape.

// Channel of flat index i: (i / inner) % channels. 32-bit division when the
// tensor allows it (64-bit division is emulated and costs more than the
// memory traffic of these kernels); the branch is uniform.
__device__ __forceinline__ long long rc_chan_of(long long i, long long n, long long inner,
                                                long long channels) {
  if (n <= 0xffffffffLL) {
    return (long long)(((unsigned)i / (unsigned)inner) % (unsigned)channels);
  }
  return (i / inner) % channels;
}

// What a reduction sums per value: a, a·b, or PReLU's dy·x·[x ≤ 0] (a = x,
// b = dy; the product in float, as the CPU backend forms it).
#define RC_SUM 0
#define RC_DOT 1
#define RC_PRELU 2

template <int MODE>
__device__ __forceinline__ double rc_term(const float* a, const float* b, long long k) {
  if (MODE == RC_SUM) return (double)a[k];
  if (MODE == RC_DOT) return (double)a[k] * (double)b[k];
  const float v = a[k];
  return v <= 0.0f ? (double)(b[k] * v) : 0.0;
}

// Σ over channel c's outer·inner values of the MODE term; every thread of
// the block must call it (it ends in the block tree). The (o, i) position
// advances by the block stride without a division per value, and four
// values are loaded before they are added, so each thread keeps several
// loads in flight (a channel is one block).
template <int MODE>
__device__ double rc_channel_reduce_range(long long c, long long channels, long long inner,
                                          long long j0, long long m, const float* a,
                                          const float* b) {
  const long long T = blockDim.x;
  double s = 0.0;
  if (j0 < m) {
    const long long dq = T / inner, dr = T % inner;
    long long j = j0 + threadIdx.x;
    long long o = j / inner, i = j % inner;
    while (j < m) {
      double t[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        t[u] = j < m ? rc_term<MODE>(a, b, (o * channels + c) * inner + i) : 0.0;
        j += T;
        o += dq;
        i += dr;
        if (i >= inner) {
          i -= inner;
          ++o;
        }
      }
      // In j order, so the per-thread sum is the plain sequential one.
      s += t[0];
      s += t[1];
      s += t[2];
      s += t[3];
    }
  }
  return rc_block_sum(s);
}

template <int MODE>
__device__ double rc_channel_reduce(long long outer, long long channels, long long inner,
                                    const float* a, const float* b) {
  return rc_channel_reduce_range<MODE>(blockIdx.x, channels, inner, 0, outer * inner, a, b);
}

// out[c] = alpha · t + beta · out[c] in double, rounded once (the CPU
// backend's formula); out not read when beta == 0.
__device__ __forceinline__ void rc_channel_store(double t, float alpha, float beta, float* out) {
  if (threadIdx.x != 0) return;
  const double v = __dmul_rn((double)alpha, t);
  const int c = blockIdx.x;
  out[c] = beta == 0.0f ? (float)v : (float)__dadd_rn(v, __dmul_rn((double)beta, (double)out[c]));
}

// out[c] = alpha · Σ_{o,i} x + beta · out[c]. Grid: channels blocks of
// RC_REDUCE_THREADS.
extern "C" __global__ void rc_channel_sum_nci(long long outer, long long channels,
                                              long long inner, float alpha, const float* x,
                                              float beta, float* out) {
  const double t = rc_channel_reduce<RC_SUM>(outer, channels, inner, x, x);
  rc_channel_store(t, alpha, beta, out);
}

// out[c] = alpha · Σ_{o,i} a·b + beta · out[c]. Grid: channels blocks.
extern "C" __global__ void rc_channel_dot_nci(long long outer, long long channels,
                                              long long inner, float alpha, const float* a,
                                              const float* b, float beta, float* out) {
  const double t = rc_channel_reduce<RC_DOT>(outer, channels, inner, a, b);
  rc_channel_store(t, alpha, beta, out);
}

// slope_diff[c] += Σ dy · x · [x ≤ 0] (the sum rounded once, then added).
// Grid: channels blocks.
extern "C" __global__ void rc_prelu_bwd_slope(long long outer, long long channels,
                                              long long inner, const float* x, const float* dy,
                                              float* slope_diff) {
  const double t = rc_channel_reduce<RC_PRELU>(outer, channels, inner, x, dy);
  if (threadIdx.x == 0) slope_diff[blockIdx.x] += (float)t;
}

// Channels too few to fill the GPU with one block each: block (k, c) sums
// the k-th of `splits` equal runs (whole multiples of the block) of channel
// c's outer·inner values into part[c·splits + k]; rc_channel_finish adds
// each channel's partials in k order. The grid depends only on the shape,
// so the sums are as deterministic as the one-block kernels'.
extern "C" __global__ void rc_channel_partial(long long outer, long long channels,
                                              long long inner, int mode, int splits,
                                              const float* a, const float* b, double* part) {
  const long long c = blockIdx.y, m = outer * inner, T = blockDim.x;
  const long long chunk = ((m + splits - 1) / splits + T - 1) / T * T;
  const long long j0 = blockIdx.x * chunk, j1 = j0 + chunk < m ? j0 + chunk : m;
  double t;
  if (mode == RC_SUM) {
    t = rc_channel_reduce_range<RC_SUM>(c, channels, inner, j0, j1, a, b);
  } else if (mode == RC_DOT) {
    t = rc_channel_reduce_range<RC_DOT>(c, channels, inner, j0, j1, a, b);
  } else {
    t = rc_channel_reduce_range<RC_PRELU>(c, channels, inner, j0, j1, a, b);
  }
  if (threadIdx.x == 0) part[c * splits + blockIdx.x] = t;
}

// One thread per channel: t = Σ_k part[c·splits + k]; then RC_SUM/RC_DOT
// store alpha · t + beta · out[c] as rc_channel_store does, RC_PRELU adds
// (float)t to out[c] as rc_prelu_bwd_slope does.
extern "C" __global__ void rc_channel_finish(long long channels, int mode, int splits,
                                             float alpha, float beta, const double* part,
                                             float* out) {
  RC_LOOP(c, channels) {
    double t = 0.0;
    for (int k = 0; k < splits; ++k) t += part[c * splits + k];
    if (mode == RC_PRELU) {
      out[c] += (float)t;
    } else {
      const double v = __dmul_rn((double)alpha, t);
      out[c] = beta == 0.0f ? (float)v
                            : (float)__dadd_rn(v, __dmul_rn((double)beta, (double)out[c]));
    }
  }
}

// y = x ∘ v[c] (channel_broadcast; in place with y == x). One rounding per
// value, so there is nothing to contract.
#define RC_BCAST(name, expr)                                                   \
  extern "C" __global__ void name(long long n, long long channels, long long inner, \
                                  const float* x, const float* vc, float* y) {   \
    RC_LOOP(i, n) {                                                            \
      const float u = x[i], v = vc[rc_chan_of(i, n, inner, channels)];         \
      y[i] = (expr);                                                           \
    }                                                                          \
  }
RC_BCAST(rc_bcast_add, u + v)
RC_BCAST(rc_bcast_sub, u - v)
RC_BCAST(rc_bcast_mul, u * v)
RC_BCAST(rc_bcast_div, u / v)
// IEEE maxNum like Rust's f32::max (a NaN operand loses).
RC_BCAST(rc_bcast_max, fmaxf(u, v))

// y = y·s[c] + b[c] in place: the product rounded before the sum (no fused
// multiply-add), the same two roundings as Mul then Add.
extern "C" __global__ void rc_channel_affine(long long n, long long channels, long long inner,
                                             const float* s, const float* b, float* y) {
  RC_LOOP(i, n) {
    const long long c = rc_chan_of(i, n, inner, channels);
    y[i] = __fadd_rn(__fmul_rn(y[i], s[c]), b[c]);
  }
}

// y = f · x with f = 1/s[0], or 0 when s[0] == 0 (the factor stays on the
// device).
extern "C" __global__ void rc_scale_by_inverse(long long n, const float* s, const float* x,
                                               float* y) {
  const float s0 = s[0];
  const float f = s0 == 0.0f ? 0.0f : __fdiv_rn(1.0f, s0);
  RC_LOOP(i, n) y[i] = __fmul_rn(f, x[i]);
}

// PReLU: y = max(x, 0) + slope[c] · min(x, 0) (std::max/min as Caffe's CPU;
// one of the two terms is 0, so the sum is exact either way).
extern "C" __global__ void rc_prelu_fwd(long long n, long long channels, long long inner,
                                        const float* x, const float* slope, float* y) {
  RC_LOOP(i, n) {
    const float v = x[i];
    const float a = slope[rc_chan_of(i, n, inner, channels)];
    y[i] = __fadd_rn(rc_cmax(v, 0.0f), __fmul_rn(a, rc_cmin(v, 0.0f)));
  }
}

// dx = dy · ([x > 0] + slope[c] · [x ≤ 0]).
extern "C" __global__ void rc_prelu_bwd_data(long long n, long long channels, long long inner,
                                             const float* x, const float* dy,
                                             const float* slope, float* dx) {
  RC_LOOP(i, n) {
    const float v = x[i];
    const float a = slope[rc_chan_of(i, n, inner, channels)];
    const float pos = v > 0.0f ? 1.0f : 0.0f;
    const float neg = v <= 0.0f ? 1.0f : 0.0f;
    dx[i] = __fmul_rn(dy[i], __fadd_rn(pos, __fmul_rn(a, neg)));
  }
}
