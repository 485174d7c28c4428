// SoftmaxOps and the loss/accuracy kernels (Caffe's softmax_layer.cu,
// softmax_loss_layer.cu, accuracy_layer.cu). Blobs are (outer, channels,
// inner); a "column" is one (outer, inner) pair.

// out[col] = max over channels; n = outer · inner.
extern "C" __global__ void rc_channel_max(int n, int channels, int inner, const float* x,
                                          float* out) {
  RC_LOOP32(index, n) {
    const int o = index / inner, s = index % inner;
    float m = -RC_FLT_MAX;
    for (int c = 0; c < channels; ++c) m = fmaxf(x[((long long)o * channels + c) * inner + s], m);
    out[index] = m;
  }
}

// x[o, c, s] -= v[o, s]; n = outer · channels · inner.
extern "C" __global__ void rc_channel_subtract(long long n, int channels, int inner,
                                               const float* v, float* x) {
  RC_LOOP(i, n) {
    const long long o = i / channels / inner;
    const long long s = i % inner;
    x[i] -= v[o * inner + s];
  }
}

extern "C" __global__ void rc_exp(long long n, const float* x, float* y) {
  RC_LOOP(i, n) y[i] = expf(x[i]);
}

// out[col] = Σ_c x; n = outer · inner.
extern "C" __global__ void rc_channel_sum(int n, int channels, int inner, const float* x,
                                          float* out) {
  RC_LOOP32(index, n) {
    const int o = index / inner, s = index % inner;
    float sum = 0.0f;
    for (int c = 0; c < channels; ++c) sum += x[((long long)o * channels + c) * inner + s];
    out[index] = sum;
  }
}

// x[o, c, s] /= v[o, s]; n = outer · channels · inner.
extern "C" __global__ void rc_channel_div(long long n, int channels, int inner, const float* v,
                                          float* x) {
  RC_LOOP(i, n) {
    const long long o = i / channels / inner;
    const long long s = i % inner;
    x[i] /= v[o * inner + s];
  }
}

// out[col] = Σ_c a·b; n = outer · inner.
extern "C" __global__ void rc_channel_dot(int n, int channels, int inner, const float* a,
                                          const float* b, float* out) {
  RC_LOOP32(index, n) {
    const int o = index / inner, s = index % inner;
    float dot = 0.0f;
    for (int c = 0; c < channels; ++c) {
      const long long j = ((long long)o * channels + c) * inner + s;
      dot += a[j] * b[j];
    }
    out[index] = dot;
  }
}

// Per column: loss = −log(max(p[label], FLT_MIN)), count = 1; ignored
// columns 0 and 0. A label outside [0, channels) also gives 0 and 0 and
// records the smallest such column in *bad (initialised to INT_MAX) so the
// host can report it. n = outer · inner.
extern "C" __global__ void rc_softmax_loss_fwd(int n, const float* prob, const float* label,
                                               int channels, int inner, int has_ignore,
                                               int ignore_label, float* loss, float* counts,
                                               int* bad) {
  RC_LOOP32(index, n) {
    const int o = index / inner, s = index % inner;
    const int l = (int)label[index];
    if (has_ignore && l == ignore_label) {
      loss[index] = 0.0f;
      counts[index] = 0.0f;
    } else if (l < 0 || l >= channels) {
      loss[index] = 0.0f;
      counts[index] = 0.0f;
      atomicMin(bad, index);
    } else {
      const float p = prob[((long long)o * channels + l) * inner + s];
      loss[index] = -logf(fmaxf(p, RC_FLT_MIN));
      counts[index] = 1.0f;
    }
  }
}

// dx = p − onehot(label) per column; 0 across ignored (and bad) columns.
extern "C" __global__ void rc_softmax_loss_bwd(int n, const float* prob, const float* label,
                                               int channels, int inner, int has_ignore,
                                               int ignore_label, float* dx, float* counts,
                                               int* bad) {
  RC_LOOP32(index, n) {
    const int o = index / inner, s = index % inner;
    const int l = (int)label[index];
    const bool ignored = has_ignore && l == ignore_label;
    const bool invalid = !ignored && (l < 0 || l >= channels);
    if (invalid) atomicMin(bad, index);
    for (int c = 0; c < channels; ++c) {
      const long long j = ((long long)o * channels + c) * inner + s;
      dx[j] = (ignored || invalid) ? 0.0f : prob[j] - (c == l ? 1.0f : 0.0f);
    }
    counts[index] = (ignored || invalid) ? 0.0f : 1.0f;
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
