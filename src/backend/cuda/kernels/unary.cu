// Unary: one forward and one backward kernel per `Unary` variant
// (src/backend/unary.rs), each with the variant's parameters as arguments.
// The expressions follow Unary::forward/backward operation for operation,
// including where they compute in double (BNLL, Swish), so the GPU agrees
// with the CPU backend to float rounding of the math library.
//
// Forward: y = f(x). Backward: dx = f'(x, y) · dy. In-place calls pass the
// same pointer for x and y (and for dy and dx): every kernel reads an
// element's inputs before writing it.

#define RC_FWD(name, params, body)                                           \
  extern "C" __global__ void name(long long n, const float* x, float* y params) { \
    RC_LOOP(i, n) {                                                          \
      const float v = x[i];                                                  \
      body                                                                   \
    }                                                                        \
  }
#define RC_BWD(name, params, body)                                           \
  extern "C" __global__ void name(long long n, const float* x, const float* y, \
                                  const float* dy, float* dx params) {       \
    RC_LOOP(i, n) {                                                          \
      const float xv = x[i], yv = y[i], g = dy[i];                           \
      body                                                                   \
    }                                                                        \
  }
#define RC_P(...) , __VA_ARGS__
#define RC_NOP

// Caffe's CPU sigmoid evaluated in double (Swish uses it).
__device__ __forceinline__ float rc_sigmoid_f64(float z) {
  return (float)(0.5 * tanh(0.5 * (double)z) + 0.5);
}

// ReLU { slope }: x > 0 ? x : slope·x
RC_FWD(rc_relu_fwd, RC_P(float slope), y[i] = v > 0.0f ? v : slope * v;)
RC_BWD(rc_relu_bwd, RC_P(float slope), dx[i] = xv > 0.0f ? g : g * slope; (void)yv;)

// Sigmoid: 0.5·tanh(0.5·x) + 0.5 (Caffe's form)
RC_FWD(rc_sigmoid_fwd, RC_NOP, y[i] = 0.5f * tanhf(0.5f * v) + 0.5f;)
RC_BWD(rc_sigmoid_bwd, RC_NOP, dx[i] = g * yv * (1.0f - yv); (void)xv;)

// TanH
RC_FWD(rc_tanh_fwd, RC_NOP, y[i] = tanhf(v);)
RC_BWD(rc_tanh_bwd, RC_NOP, dx[i] = g * (1.0f - yv * yv); (void)xv;)

// ELU { alpha }: max(x,0) + alpha·(exp(min(x,0)) − 1)
RC_FWD(rc_elu_fwd, RC_P(float alpha),
       y[i] = rc_cmax(v, 0.0f) + alpha * (expf(rc_cmin(v, 0.0f)) - 1.0f);)
RC_BWD(rc_elu_bwd, RC_P(float alpha), dx[i] = xv > 0.0f ? g : g * (alpha + yv);)

// AbsVal: |x|; backward sign(x)·dy with sign(0) = 0
RC_FWD(rc_absval_fwd, RC_NOP, y[i] = fabsf(v);)
RC_BWD(rc_absval_bwd, RC_NOP,
       const float s = xv > 0.0f ? 1.0f : (xv < 0.0f ? -1.0f : 0.0f);
       dx[i] = s * g; (void)yv;)

// BNLL: log(1 + e^x) in the overflow-safe form, promoted as Caffe's C++
#define RC_BNLL_THRESHOLD 50.0f
RC_FWD(rc_bnll_fwd, RC_NOP,
       y[i] = v > 0.0f ? (float)((double)v + log(1.0 + (double)expf(-v)))
                       : (float)log(1.0 + (double)expf(v));)
RC_BWD(rc_bnll_bwd, RC_NOP,
       const float e = expf(rc_cmin(xv, RC_BNLL_THRESHOLD));
       dx[i] = (float)((double)(g * e) / ((double)e + 1.0)); (void)yv;)

// Power { power, scale, shift }: (shift + scale·x)^power
RC_FWD(rc_power_fwd, RC_P(float power, float scale, float shift),
       if (power * scale == 0.0f) {
         y[i] = power == 0.0f ? 1.0f : powf(shift, power);
       } else {
         float t = v;
         if (scale != 1.0f) t *= scale;
         if (shift != 0.0f) t += shift;
         if (power != 1.0f) t = powf(t, power);
         y[i] = t;
       })
RC_BWD(rc_power_bwd, RC_P(float power, float scale, float shift),
       const float diff_scale = power * scale;
       float t;
       if (diff_scale == 0.0f || power == 1.0f) {
         t = diff_scale;
       } else if (power == 2.0f) {
         t = diff_scale * scale * xv;
         if (shift != 0.0f) t += diff_scale * shift;
       } else if (shift == 0.0f) {
         t = (yv / xv) * power;
       } else {
         t = xv;
         if (scale != 1.0f) t *= scale;
         t += shift;
         t = yv / t;
         if (diff_scale != 1.0f) t *= diff_scale;
       }
       dx[i] = g * t;)

// Exp { inner, outer }: outer · exp(inner · x)
RC_FWD(rc_exp_fwd, RC_P(float inner, float outer),
       float t = inner == 1.0f ? expf(v) : expf(inner * v);
       if (outer != 1.0f) t *= outer;
       y[i] = t;)
RC_BWD(rc_exp_bwd, RC_P(float inner, float outer),
       float d = yv * g;
       if (inner != 1.0f) d *= inner;
       dx[i] = d; (void)xv; (void)outer;)

// Log { scale, shift, base_scale, back_scale }: base_scale · ln(shift + scale·x)
RC_FWD(rc_log_fwd, RC_P(float scale, float shift, float base_scale, float back_scale),
       float t = v;
       if (scale != 1.0f) t *= scale;
       if (shift != 0.0f) t += shift;
       float r = logf(t);
       if (base_scale != 1.0f) r *= base_scale;
       y[i] = r; (void)back_scale;)
RC_BWD(rc_log_bwd, RC_P(float scale, float shift, float base_scale, float back_scale),
       float t = xv;
       if (scale != 1.0f) t *= scale;
       if (shift != 0.0f) t += shift;
       t = powf(t, -1.0f);
       if (back_scale != 1.0f) t *= back_scale;
       dx[i] = g * t; (void)yv; (void)base_scale;)

// Threshold { threshold }: x > threshold ? 1 : 0 (its layer has no backward;
// the a.e. derivative 0 keeps the table complete)
RC_FWD(rc_threshold_fwd, RC_P(float threshold), y[i] = v > threshold ? 1.0f : 0.0f;)
RC_BWD(rc_threshold_bwd, RC_P(float threshold),
       dx[i] = 0.0f; (void)xv; (void)yv; (void)g; (void)threshold;)

// Clip { min, max }: the gradient passes on the closed interval
RC_FWD(rc_clip_fwd, RC_P(float lo, float hi), y[i] = rc_cmax(lo, rc_cmin(v, hi));)
RC_BWD(rc_clip_bwd, RC_P(float lo, float hi),
       dx[i] = (xv >= lo && xv <= hi) ? g : 0.0f; (void)yv;)

// Swish { beta }: x · sigmoid(beta·x)
RC_FWD(rc_swish_fwd, RC_P(float beta), y[i] = v * rc_sigmoid_f64(beta * v);)
RC_BWD(rc_swish_bwd, RC_P(float beta),
       const float by = beta * yv;
       const double t = (double)by + (double)rc_sigmoid_f64(beta * xv) * (1.0 - (double)by);
       dx[i] = (float)((double)g * t);)

// Sqrt
RC_FWD(rc_sqrt_fwd, RC_NOP, y[i] = sqrtf(v);)
RC_BWD(rc_sqrt_bwd, RC_NOP, dx[i] = g * 0.5f / yv; (void)xv;)
