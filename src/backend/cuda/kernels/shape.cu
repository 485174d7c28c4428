// ShapeOps: block copies, row gathers, crops, row reductions, ArgMax and the
// losses whose per-element rules Math cannot express (Caffe's
// concat/slice/tile/crop/embed/batch_reindex/filter/reduction layers' .cu
// files, argmax_layer.cpp, and the sigmoid cross-entropy, hinge,
// multinomial logistic, infogain and contrastive losses). The formulas are
// the CPU backend's (src/backend/cpu/shape.rs), operation by operation.
//
// Host index lists (labels, row indices, keep/similar flags, crop geometry)
// arrive uploaded as `long long` arrays; the layers validated them.
// Losses are two-pass reductions: each `*_partial` kernel writes one double
// per block (grid fixed by the launcher), rc_sum_partials adds them.
//
// Where the CPU computes `a*b ± c` as two rounded operations, __fmul_rn
// keeps NVRTC from contracting it into one fma, so the bits agree.

// y[b*ys + j] (+)= x[b*xs + j] for b < blocks, j < len. Blocks run along
// the grid's y (strided), values along x: no per-value division, which
// made the flat-index version several times slower than the copy itself.
extern "C" __global__ void rc_copy_blocks(long long blocks, long long len, const float* x,
                                          long long xs, float* y, long long ys, int acc) {
  for (long long b = blockIdx.y; b < blocks; b += gridDim.y) {
    const float* xr = x + b * xs;
    float* yr = y + b * ys;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < len;
         j += (long long)blockDim.x * gridDim.x) {
      if (acc) {
        yr[j] += xr[j];
      } else {
        yr[j] = xr[j];
      }
    }
  }
}

// Row r of dst = row idx[r] of src (`rows` rows of `row` values).
extern "C" __global__ void rc_gather_rows(long long rows, long long row, const long long* idx,
                                          const float* src, float* dst) {
  RC_LOOP(t, rows * row) {
    const long long r = t / row, j = t - r * row;
    dst[t] = src[idx[r] * row + j];
  }
}

// Scatter-add grouped by destination row (host-sorted): group g adds, in
// occurrence order, rows pos[start[g] .. start[g+1]) of src to row dest[g]
// of dst. One thread per (group, column) owns its destination value, so the
// sums are the CPU's sequential ones, without atomics, bit for bit.
// `plan` = [dest (groups)][start (groups + 1)][pos].
extern "C" __global__ void rc_scatter_add_groups(long long groups, long long row,
                                                 const long long* plan, const float* src,
                                                 float* dst) {
  const long long* dest = plan;
  const long long* start = plan + groups;
  const long long* pos = plan + 2 * groups + 1;
  RC_LOOP(t, groups * row) {
    const long long g = t / row, j = t - g * row;
    float* d = dst + dest[g] * row + j;
    float acc = *d;
    for (long long p = start[g]; p < start[g + 1]; ++p) acc += src[pos[p] * row + j];
    *d = acc;
  }
}

// N-d crop, one thread per element of the window (`n` = its size). `geo` =
// [out_shape (nd)][in_strides (nd)][offsets (nd)]. Forward: dst (window
// layout) = src (input layout); backward: dst (input layout) = src.
extern "C" __global__ void rc_crop(long long n, int nd, const long long* geo, const float* src,
                                   float* dst, int backward) {
  const long long* shape = geo;
  const long long* stride = geo + nd;
  const long long* off = geo + 2 * nd;
  RC_LOOP(t, n) {
    long long rem = t, in = 0;
    for (int d = nd - 1; d >= 0; --d) {
      const long long c = rem % shape[d];
      rem /= shape[d];
      in += (c + off[d]) * stride[d];
    }
    if (backward) {
      dst[in] = src[t];
    } else {
      dst[t] = src[in];
    }
  }
}

// Reduce::{Sum, Asum, SumSq} = 0, 1, 2, accumulated in double.
__device__ __forceinline__ double rc_reduce_term(int op, float v) {
  const double x = (double)v;
  return op == 0 ? x : (op == 1 ? fabs(x) : x * x);
}

// y[r] = coeff * op(row r), one thread per row (short rows).
extern "C" __global__ void rc_reduce_rows_thread(long long rows, long long dim, int op,
                                                 float coeff, const float* x, float* y) {
  RC_LOOP(r, rows) {
    const float* p = x + r * dim;
    double s = 0.0;
    for (long long d = 0; d < dim; ++d) s += rc_reduce_term(op, p[d]);
    y[r] = coeff * (float)s;
  }
}

// The same, one block (RC_REDUCE_THREADS) per row (long rows). The row loop
// is uniform across the block, as rc_block_sum requires.
extern "C" __global__ void rc_reduce_rows_block(long long rows, long long dim, int op,
                                                float coeff, const float* x, float* y) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* p = x + r * dim;
    double s = 0.0;
    for (long long d = threadIdx.x; d < dim; d += blockDim.x) s += rc_reduce_term(op, p[d]);
    const double t = rc_block_sum(s);
    if (threadIdx.x == 0) y[r] = coeff * (float)t;
  }
}

// dx = coeff*dy[r] * op'(x): 1, sign(x) (Caffe's caffe_sign, sign(0) = 0), 2x.
extern "C" __global__ void rc_reduce_rows_bwd(long long rows, long long dim, int op, float coeff,
                                              const float* x, const float* dy, float* dx) {
  RC_LOOP(t, rows * dim) {
    const float c = dy[t / dim] * coeff;
    const float v = x[t];
    if (op == 0) {
      dx[t] = c;
    } else if (op == 1) {
      dx[t] = c * (float)((0.0f < v) - (v < 0.0f));
    } else {
      dx[t] = 2.0f * c * v;
    }
  }
}

// Ranking of ArgMax: (a, ia) comes before (b, ib) when a > b, or the values
// are equal and ia > ib (std::greater on (value, index) pairs). NaN ranks
// above every number (the CPU's comparator has no order for NaN; this keeps
// the ranking total so k outputs are always defined).
__device__ __forceinline__ bool rc_argmax_before(float a, long long ia, float b, long long ib) {
  const bool na = isnan(a), nb = isnan(b);
  if (na != nb) return na;
  if (!na && a != b) return a > b;
  return ia > ib;
}

// Top-k along the middle axis of (outer, dim, inner), one thread per column
// (o, i): k passes, each picking the best element ranked after the previous
// winner. mode 0: indices, 1: values, 2: indices then values (inner == 1).
extern "C" __global__ void rc_argmax(long long cols, long long dim, long long inner, long long k,
                                     int mode, const float* x, float* y) {
  RC_LOOP(c, cols) {
    const long long o = c / inner, i = c - o * inner;
    const float* col = x + o * dim * inner + i;
    float pv = 0.0f;
    long long pi = -1;
    for (long long j = 0; j < k; ++j) {
      float bv = 0.0f;
      long long bi = -1;
      for (long long d = 0; d < dim; ++d) {
        const float v = col[d * inner];
        if (pi >= 0 && !rc_argmax_before(pv, pi, v, d)) continue;
        if (bi < 0 || rc_argmax_before(v, d, bv, bi)) {
          bv = v;
          bi = d;
        }
      }
      // k <= dim, so every pass finds a winner.
      if (mode == 0) {
        y[(o * k + j) * inner + i] = (float)bi;
      } else if (mode == 1) {
        y[(o * k + j) * inner + i] = bv;
      } else {
        y[2 * o * k + j] = (float)bi;
        y[2 * o * k + k + j] = bv;
      }
      pv = bv;
      pi = bi;
    }
  }
}

// Sigmoid cross-entropy, Caffe's stable form, summed over kept elements
// (keep == 0 marks an ignored one; has_keep == 0: all kept).
extern "C" __global__ void rc_sigmoid_ce_loss_partial(long long n, const float* x, const float* t,
                                                      const long long* keep, int has_keep,
                                                      double* part) {
  double s = 0.0;
  RC_LOOP(i, n) {
    if (has_keep && !keep[i]) continue;
    const float v = x[i];
    const float pos = (float)(v >= 0.0f);
    const float term = __fmul_rn(v, t[i] - pos) - logf(1.0f + expf(v - 2.0f * v * pos));
    s -= (double)term;
  }
  const double b = rc_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = b;
}

// dx = scale * (sigmoid(x) - t), 0 where ignored; sigmoid as Unary::Sigmoid.
extern "C" __global__ void rc_sigmoid_ce_grad(long long n, const float* x, const float* t,
                                              const long long* keep, int has_keep, float scale,
                                              float* dx) {
  RC_LOOP(i, n) {
    if (has_keep && !keep[i]) {
      dx[i] = 0.0f;
    } else {
      const float sig = 0.5f * tanhf(0.5f * x[i]) + 0.5f;
      dx[i] = scale * (sig - t[i]);
    }
  }
}

// v = max(0, 1 + s*x), s = -1 at the row's label, +1 elsewhere (n = rows*dim).
extern "C" __global__ void rc_hinge_margins(long long n, long long dim, const long long* labels,
                                            const float* x, float* v) {
  RC_LOOP(t, n) {
    const long long r = t / dim, j = t - r * dim;
    const float s = j == labels[r] ? -1.0f : 1.0f;
    // fmaxf returns 0 for a NaN margin, as the CPU's f32::max.
    v[t] = fmaxf(1.0f + s * x[t], 0.0f);
  }
}

// dx = scale*sign(s*v) (L1) or scale*2*s*v (L2).
extern "C" __global__ void rc_hinge_grad(long long n, long long dim, const long long* labels,
                                         int l2, float scale, const float* v, float* dx) {
  RC_LOOP(t, n) {
    const long long r = t / dim, j = t - r * dim;
    const float sv = j == labels[r] ? -v[t] : v[t];
    dx[t] = l2 ? scale * 2.0f * sv : scale * (float)((0.0f < sv) - (sv < 0.0f));
  }
}

// Caffe's kLOG_THRESHOLD.
#define RC_LOG_THRESHOLD 1e-20f

// Σ_r -log(max(p[r, label_r], 1e-20)) over `rows` rows of `dim`.
extern "C" __global__ void rc_mnl_loss_partial(long long rows, long long dim,
                                               const long long* labels, const float* p,
                                               double* part) {
  double s = 0.0;
  RC_LOOP(r, rows) s -= (double)logf(rc_cmax(p[r * dim + labels[r]], RC_LOG_THRESHOLD));
  const double b = rc_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = b;
}

// dx = scale / max(p, 1e-20) at each row's label, 0 elsewhere.
extern "C" __global__ void rc_mnl_grad(long long n, long long dim, const long long* labels,
                                       float scale, const float* p, float* dx) {
  RC_LOOP(t, n) {
    const long long r = t / dim, j = t - r * dim;
    dx[t] = j == labels[r] ? scale / rc_cmax(p[t], RC_LOG_THRESHOLD) : 0.0f;
  }
}

// Infogain: p is (outer, ch, inner), one label per column o*inner + i
// (-1: ignored). Element e of the sum is (column e / ch, channel e % ch).
extern "C" __global__ void rc_infogain_loss_partial(long long n, long long ch, long long inner,
                                                    const long long* labels, const float* p,
                                                    const float* h, double* part) {
  double s = 0.0;
  RC_LOOP(e, n) {
    const long long col = e / ch, c = e - col * ch;
    const long long l = labels[col];
    if (l < 0) continue;
    const long long o = col / inner, i = col - o * inner;
    const float prob = rc_cmax(p[(o * ch + c) * inner + i], RC_LOG_THRESHOLD);
    s -= (double)(h[l * ch + c] * logf(prob));
  }
  const double b = rc_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = b;
}

// hsum[l] = Σ_m H[l, m], sequentially in float (the CPU's order).
extern "C" __global__ void rc_infogain_row_sums(long long ch, const float* h, float* hsum) {
  RC_LOOP(l, ch) {
    float s = 0.0f;
    for (long long m = 0; m < ch; ++m) s += h[l * ch + m];
    hsum[l] = s;
  }
}

// dx (p's layout) = scale * (p * hsum[label] - H[label, c]), 0 across
// ignored columns.
extern "C" __global__ void rc_infogain_grad(long long n, long long ch, long long inner,
                                            const long long* labels, float scale, const float* p,
                                            const float* h, const float* hsum, float* dx) {
  RC_LOOP(e, n) {
    const long long o = e / (ch * inner), rest = e - o * ch * inner;
    const long long c = rest / inner, i = rest - c * inner;
    const long long l = labels[o * inner + i];
    dx[e] = l < 0 ? 0.0f : scale * (__fmul_rn(p[e], hsum[l]) - h[l * ch + c]);
  }
}

// Contrastive loss sum from each row's squared distance: similar rows add
// d², dissimilar ones max(margin - d, 0)² or, legacy, max(margin - d², 0).
extern "C" __global__ void rc_contrastive_loss_partial(long long rows, const float* dist_sq,
                                                       const long long* similar, float margin,
                                                       int legacy, double* part) {
  double s = 0.0;
  RC_LOOP(r, rows) {
    const float d2 = dist_sq[r];
    float term;
    if (similar[r]) {
      term = d2;
    } else if (legacy) {
      term = rc_cmax(margin - d2, 0.0f);
    } else {
      const float m = rc_cmax(margin - sqrtf(d2), 0.0f);
      term = m * m;
    }
    s += (double)term;
  }
  const double b = rc_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = b;
}

// dx = beta_r * diff: beta = alpha (similar); dissimilar inside the margin:
// -alpha (legacy) or -alpha*(margin - d)/(d + 1e-4); else 0.
extern "C" __global__ void rc_contrastive_grad(long long n, long long ch, const long long* similar,
                                               float margin, int legacy, float alpha,
                                               const float* diff, const float* dist_sq,
                                               float* dx) {
  RC_LOOP(t, n) {
    const long long r = t / ch;
    float beta;
    if (similar[r]) {
      beta = alpha;
    } else {
      float mdist;
      if (legacy) {
        mdist = margin - dist_sq[r];
        beta = -alpha;
      } else {
        const float dist = sqrtf(dist_sq[r]);
        mdist = margin - dist;
        beta = -alpha * mdist / (dist + 1e-4f);
      }
      if (!(mdist > 0.0f)) beta = 0.0f;
    }
    dx[t] = beta * diff[t];
  }
}
