// SolverOps: Caffe's fused update kernels (src/caffe/solvers/*.cu), each
// followed in the same pass by Net::Update's `data -= diff`. `g` is the
// gradient in `diff` on entry and the step on exit; `lr` is the local rate.

// Regularize: diff += decay · data (L2) or decay · sign(data) (L1).
extern "C" __global__ void rc_regularize_l2(long long n, float decay, const float* w, float* g) {
  RC_LOOP(i, n) g[i] += decay * w[i];
}

extern "C" __global__ void rc_regularize_l1(long long n, float decay, const float* w, float* g) {
  RC_LOOP(i, n) {
    const float v = w[i];
    const float s = (float)((0.0f < v) - (v < 0.0f));
    g[i] += decay * s;
  }
}

// SGDUpdate: h = μ·h + lr·g; g = h.
extern "C" __global__ void rc_sgd_update(long long n, float momentum, float lr, float* g,
                                         float* h, float* w) {
  RC_LOOP(i, n) {
    const float hi = h[i] = momentum * h[i] + lr * g[i];
    g[i] = hi;
    w[i] -= hi;
  }
}

// NesterovUpdate: h' = μ·h + lr·g; g = (1+μ)·h' − μ·h.
extern "C" __global__ void rc_nesterov_update(long long n, float momentum, float lr, float* g,
                                              float* h, float* w) {
  RC_LOOP(i, n) {
    const float hi = h[i];
    const float hi_new = h[i] = momentum * hi + lr * g[i];
    const float step = (1.0f + momentum) * hi_new - momentum * hi;
    g[i] = step;
    w[i] -= step;
  }
}

// AdaGradUpdate: h += g²; g = lr·g / (sqrt(h) + δ).
extern "C" __global__ void rc_adagrad_update(long long n, float delta, float lr, float* g,
                                             float* h, float* w) {
  RC_LOOP(i, n) {
    const float gi = g[i];
    const float hi = h[i] = h[i] + gi * gi;
    const float step = lr * gi / (sqrtf(hi) + delta);
    g[i] = step;
    w[i] -= step;
  }
}

// RMSPropUpdate: h = ρ·h + (1−ρ)·g²; g = lr·g / (sqrt(h) + δ).
extern "C" __global__ void rc_rmsprop_update(long long n, float rms_decay, float delta,
                                             float lr, float* g, float* h, float* w) {
  RC_LOOP(i, n) {
    const float gi = g[i];
    const float hi = h[i] = rms_decay * h[i] + (1.0f - rms_decay) * gi * gi;
    const float step = lr * gi / (sqrtf(hi) + delta);
    g[i] = step;
    w[i] -= step;
  }
}

// AdaDeltaUpdate: h = μ·h + (1−μ)·g²; Δ = g·sqrt((h2+δ)/(h+δ));
// h2 = μ·h2 + (1−μ)·Δ²; g = lr·Δ.
extern "C" __global__ void rc_adadelta_update(long long n, float momentum, float delta,
                                              float lr, float* g, float* h, float* h2,
                                              float* w) {
  RC_LOOP(i, n) {
    float gi = g[i];
    const float hi = h[i] = momentum * h[i] + (1.0f - momentum) * gi * gi;
    gi = gi * sqrtf((h2[i] + delta) / (hi + delta));
    h2[i] = momentum * h2[i] + (1.0f - momentum) * gi * gi;
    const float step = lr * gi;
    g[i] = step;
    w[i] -= step;
  }
}

// AdamUpdate: m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
// g = corrected_lr · m / (sqrt(v) + ε̂).
extern "C" __global__ void rc_adam_update(long long n, float beta1, float beta2, float eps_hat,
                                          float corrected_lr, float* g, float* m, float* v,
                                          float* w) {
  RC_LOOP(i, n) {
    const float gi = g[i];
    const float mi = m[i] = m[i] * beta1 + gi * (1.0f - beta1);
    const float vi = v[i] = v[i] * beta2 + gi * gi * (1.0f - beta2);
    const float step = corrected_lr * mi / (sqrtf(vi) + eps_hat);
    g[i] = step;
    w[i] -= step;
  }
}
