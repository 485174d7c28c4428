// SoftmaxOps and the loss/accuracy kernels (Caffe's softmax_layer.cu,
// softmax_loss_layer.cu, accuracy_layer.cu). Blobs are (outer, channels,
// inner); a "column" is one (outer, inner) pair.

// Softmax of each column in place, one thread per column: Caffe's
// channel_max / subtract / exp / channel_sum / div sequence fused, in the
// CPU backend's order (the max starts at channel 0 and takes C++'s
// std::max, so a NaN or an all −inf column gives NaN as on the CPU; the
// sum runs over channels in order). n = outer · inner columns.
extern "C" __global__ void rc_softmax_fwd(long long n, int channels, int inner, float* x) {
  RC_LOOP(index, n) {
    const long long o = index / inner, s = index % inner;
    float* p = x + o * channels * inner + s;
    float m = p[0];
    for (int c = 1; c < channels; ++c) m = rc_cmax(m, p[(long long)c * inner]);
    for (int c = 0; c < channels; ++c) {
      float* v = p + (long long)c * inner;
      *v = expf(*v - m);
    }
    float sum = 0.0f;
    for (int c = 0; c < channels; ++c) sum += p[(long long)c * inner];
    for (int c = 0; c < channels; ++c) p[(long long)c * inner] /= sum;
  }
}

// Softmax backward in place, one thread per column: d = (d − Σ_c d·y) ⊙ y
// (Caffe's channel_dot, subtract, mul). n = outer · inner columns.
extern "C" __global__ void rc_softmax_bwd(long long n, int channels, int inner, const float* y,
                                          float* d) {
  RC_LOOP(index, n) {
    const long long o = index / inner, s = index % inner;
    const long long base = o * channels * inner + s;
    float dot = 0.0f;
    for (int c = 0; c < channels; ++c) {
      const long long j = base + (long long)c * inner;
      dot += d[j] * y[j];
    }
    for (int c = 0; c < channels; ++c) {
      const long long j = base + (long long)c * inner;
      d[j] = (d[j] - dot) * y[j];
    }
  }
}

// Block partial sums of −log(max(p[label], FLT_MIN)) over the columns whose
// label is neither ignored nor out of range (those are counted by
// rc_label_count_partial); rc_sum_partials finishes. std::max's order keeps
// a NaN probability NaN, as on the CPU. n = outer · inner columns.
extern "C" __global__ void rc_softmax_loss_partial(long long n, const float* prob,
                                                   const float* label, int channels, int inner,
                                                   int has_ignore, int ignore_label,
                                                   double* part) {
  double sum = 0.0;
  RC_LOOP(i, n) {
    const int l = (int)label[i];
    if ((has_ignore && l == ignore_label) || l < 0 || l >= channels) continue;
    const long long o = i / inner, s = i % inner;
    const float p = prob[(o * channels + l) * inner + s];
    sum += (double)(-logf(rc_cmax(p, RC_FLT_MIN)));
  }
  const double t = rc_block_sum(sum);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// Block partial counts of the valid labels: 1 per column whose label is not
// ignored, 0 for ignored ones, NaN for a label outside [0, channels) so the
// finished sum is NaN exactly when some label is invalid. Exact in double;
// the caller keeps n ≤ 2^24 so the float result is exact too.
extern "C" __global__ void rc_label_count_partial(long long n, const float* label, int channels,
                                                  int has_ignore, int ignore_label,
                                                  double* part) {
  double sum = 0.0;
  RC_LOOP(i, n) {
    const int l = (int)label[i];
    if (has_ignore && l == ignore_label) continue;
    sum += (l < 0 || l >= channels) ? __longlong_as_double(0x7ff8000000000000LL) : 1.0;
  }
  const double t = rc_block_sum(sum);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// dx = p − onehot(label) per column, zero across ignored columns (and
// across invalid ones, which the count reports as an error). One thread
// per column; n = outer · inner columns.
extern "C" __global__ void rc_softmax_loss_grad(long long n, const float* prob,
                                                const float* label, int channels, int inner,
                                                int has_ignore, int ignore_label, float* dx) {
  RC_LOOP(index, n) {
    const long long o = index / inner, s = index % inner;
    const int l = (int)label[index];
    const bool keep = !(has_ignore && l == ignore_label) && l >= 0 && l < channels;
    const long long base = o * channels * inner + s;
    for (int c = 0; c < channels; ++c) {
      const long long j = base + (long long)c * inner;
      dx[j] = keep ? (c == l ? prob[j] - 1.0f : prob[j]) : 0.0f;
    }
  }
}

// Accuracy (Caffe's AccuracyForwardGPU): a column is correct when fewer
// than top_k scores are >= the true class's score, the true class
// included (ties count against it, as on Caffe's GPU). n = outer · inner.
extern "C" __global__ void rc_accuracy_fwd(int n, const float* x, const float* label,
                                           int channels, int inner, int top_k, int has_ignore,
                                           int ignore_label, float* acc, float* counts,
                                           int* bad) {
  RC_LOOP32(index, n) {
    const int o = index / inner, s = index % inner;
    const int l = (int)label[index];
    if (has_ignore && l == ignore_label) {
      acc[index] = 0.0f;
      counts[index] = 0.0f;
    } else if (l < 0 || l >= channels) {
      acc[index] = 0.0f;
      counts[index] = 0.0f;
      atomicMin(bad, index);
    } else {
      const long long base = (long long)o * channels * inner + s;
      const float truth = x[base + (long long)l * inner];
      int better = -1;  // the true class counts itself
      for (int c = 0; c < channels && better < top_k; ++c) {
        better += (x[base + (long long)c * inner] >= truth);
      }
      acc[index] = (better < top_k) ? 1.0f : 0.0f;
      counts[index] = 1.0f;
    }
  }
}

// Per-class accuracy (AccuracyForwardWithPerClassGPU): acc and counts are
// channels × n, entry (label, column). Both must be zeroed before.
extern "C" __global__ void rc_accuracy_per_class_fwd(int n, const float* x, const float* label,
                                                     int channels, int inner, int top_k,
                                                     int has_ignore, int ignore_label,
                                                     float* acc, float* counts, int* bad) {
  RC_LOOP32(index, n) {
    const int o = index / inner, s = index % inner;
    const int l = (int)label[index];
    if (has_ignore && l == ignore_label) continue;
    if (l < 0 || l >= channels) {
      atomicMin(bad, index);
      continue;
    }
    const long long base = (long long)o * channels * inner + s;
    const float truth = x[base + (long long)l * inner];
    int better = -1;
    for (int c = 0; c < channels && better < top_k; ++c) {
      better += (x[base + (long long)c * inner] >= truth);
    }
    acc[(long long)l * n + index] = (better < top_k) ? 1.0f : 0.0f;
    counts[(long long)l * n + index] = 1.0f;
  }
}
