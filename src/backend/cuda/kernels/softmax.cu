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

// Accuracy. Whether the column (o, s) with true class l is correct: at
// most top_k scores are >= the true score, that score included (ties count
// against the true class). A NaN true score compares false with all, so
// the count stays 0 and the column is correct (as on Caffe's CPU and
// rcaffe's). The loop stops once the answer is known.
__device__ __forceinline__ bool rc_accuracy_hit(const float* x, int channels, int inner,
                                                int top_k, int o, int s, int l) {
  const long long base = (long long)o * channels * inner + s;
  const float truth = x[base + (long long)l * inner];
  int better = 0;
  for (int c = 0; c < channels && better <= top_k; ++c) {
    better += (x[base + (long long)c * inner] >= truth);
  }
  return better <= top_k;
}

// Overall accuracy, launched as ONE block of RC_REDUCE_THREADS threads
// (Accuracy's inputs are small): each thread counts its columns, the
// counts are summed in double (exact for integers), and thread 0 writes
// acc[0] = correct / counted (0 when nothing is counted), each count
// rounded to float first as the CPU's float counters are. A label outside
// [0, channels) (not ignored) makes acc[0] NaN, which the host reads as
// "find the bad label". n = outer · inner columns.
extern "C" __global__ void rc_accuracy_fwd(int n, const float* x, const float* label,
                                           int channels, int inner, int top_k, int has_ignore,
                                           int ignore_label, float* acc) {
  double correct = 0.0, counted = 0.0, bad = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int l = (int)label[i];
    if (has_ignore && l == ignore_label) continue;
    if (l < 0 || l >= channels) {
      bad += 1.0;
      continue;
    }
    counted += 1.0;
    if (rc_accuracy_hit(x, channels, inner, top_k, i / inner, i % inner, l)) correct += 1.0;
  }
  correct = rc_block_sum(correct);
  counted = rc_block_sum(counted);
  bad = rc_block_sum(bad);
  if (threadIdx.x == 0) {
    float a;
    if (bad > 0.0) {
      a = __int_as_float(0x7fc00000);
    } else if (counted == 0.0) {
      a = 0.0f;
    } else {
      a = (float)correct / (float)counted;
    }
    acc[0] = a;
  }
}

// Per-class accuracy, one thread per class c: it scans every column in
// order and writes out[c] = correct / seen over the columns labelled c (0
// when none). Integer counts, so the result is the CPU's bit for bit; no
// scratch. Run only after rc_accuracy_fwd found every label valid.
extern "C" __global__ void rc_accuracy_per_class_fwd(int n, const float* x, const float* label,
                                                     int channels, int inner, int top_k,
                                                     int has_ignore, int ignore_label,
                                                     float* out) {
  RC_LOOP32(c, channels) {
    int seen = 0, correct = 0;
    for (int i = 0; i < n; ++i) {
      const int l = (int)label[i];
      if (l != c || (has_ignore && l == ignore_label)) continue;
      ++seen;
      correct += rc_accuracy_hit(x, channels, inner, top_k, i / inner, i % inner, l);
    }
    out[c] = seen == 0 ? 0.0f : (float)correct / (float)seen;
  }
}
