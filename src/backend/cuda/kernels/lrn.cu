// LrnOps: Caffe's lrn_layer.cu for ACROSS_CHANNELS (running window over
// channels, one thread per pixel of an image), and WITHIN_CHANNEL as the
// CPU backend computes Caffe's Power/Pooling/Eltwise composition.
// Images are `channels × spatial` (spatial = height·width).

// scale = k + α/n · Σ_window x²; n threads = num · spatial.
extern "C" __global__ void rc_lrn_fill_scale(int n, const float* x, int channels, int spatial,
                                             int size, float alpha_over_size, float k,
                                             float* scale) {
  RC_LOOP32(index, n) {
    const int s = index % spatial;
    const int img = index / spatial;
    const long long offset = (long long)img * channels * spatial + s;
    const float* in = x + offset;
    float* sc = scale + offset;
    const int step = spatial;
    int head = 0;
    const int pre_pad = (size - 1) / 2;
    const int post_pad = size - pre_pad - 1;
    float accum = 0.0f;
    // Fill the window's leading channels.
    while (head < post_pad && head < channels) {
      accum += in[head * step] * in[head * step];
      ++head;
    }
    // Add the head, drop the tail.
    while (head < channels) {
      accum += in[head * step] * in[head * step];
      if (head - size >= 0) accum -= in[(head - size) * step] * in[(head - size) * step];
      sc[(head - post_pad) * step] = k + accum * alpha_over_size;
      ++head;
    }
    // Drop the tail only. With fewer channels than post_pad the first loop
    // stopped short of post_pad: those heads have no output channel (Caffe's
    // kernel wrote before the image there).
    while (head < channels + post_pad) {
      if (head - size >= 0) accum -= in[(head - size) * step] * in[(head - size) * step];
      if (head >= post_pad) sc[(head - post_pad) * step] = k + accum * alpha_over_size;
      ++head;
    }
  }
}

// y = x · scale^−β
extern "C" __global__ void rc_lrn_output(long long n, const float* x, const float* scale,
                                         float negative_beta, float* y) {
  RC_LOOP(i, n) y[i] = x[i] * powf(scale[i], negative_beta);
}

// dx = dy·scale^−β − cache_ratio · x · Σ_window dy·y/scale,
// cache_ratio = 2αβ/n; n threads = num · spatial.
extern "C" __global__ void rc_lrn_diff(int n, const float* x, const float* y,
                                       const float* scale, const float* dy, int channels,
                                       int spatial, int size, float negative_beta,
                                       float cache_ratio, float* dx) {
  RC_LOOP32(index, n) {
    const int s = index % spatial;
    const int img = index / spatial;
    const long long offset = (long long)img * channels * spatial + s;
    const float* bx = x + offset;
    const float* ty = y + offset;
    const float* sc = scale + offset;
    const float* td = dy + offset;
    float* bd = dx + offset;
    const int step = spatial;
    int head = 0;
    const int pre_pad = size - (size + 1) / 2;
    const int post_pad = size - pre_pad - 1;
    float accum = 0.0f;
    while (head < post_pad && head < channels) {
      accum += td[head * step] * ty[head * step] / sc[head * step];
      ++head;
    }
    while (head < channels) {
      accum += td[head * step] * ty[head * step] / sc[head * step];
      if (head - size >= 0) {
        accum -= td[(head - size) * step] * ty[(head - size) * step] / sc[(head - size) * step];
      }
      const int c = (head - post_pad) * step;
      bd[c] = td[c] * powf(sc[c], negative_beta) - cache_ratio * bx[c] * accum;
      ++head;
    }
    while (head < channels + post_pad) {
      if (head - size >= 0) {
        accum -= td[(head - size) * step] * ty[(head - size) * step] / sc[(head - size) * step];
      }
      if (head < post_pad) {  // fewer channels than post_pad, as in fill_scale
        ++head;
        continue;
      }
      const int c = (head - post_pad) * step;
      bd[c] = td[c] * powf(sc[c], negative_beta) - cache_ratio * bx[c] * accum;
      ++head;
    }
  }
}

// The AVE-pooling window of output o (kernel `size`, pad (size−1)/2,
// stride 1) clipped to the plane, and Caffe's divisor extent.
__device__ __forceinline__ void rc_lrn_window(int o, int pad, int size, int len, int* start,
                                              int* end, int* extent) {
  const int s = o - pad;
  *extent = min(s + size, len + pad) - s;
  *end = min(s + size, len);
  *start = max(s, 0);
}

// WITHIN_CHANNEL forward: avg = AVE pool of x², scale = (1 + α·avg)^−β,
// y = x·scale; n threads = planes · height · width.
extern "C" __global__ void rc_lrn_within_fwd(int n, const float* x, int height, int width,
                                             int size, float alpha, float beta, float* avg,
                                             float* scale, float* y) {
  RC_LOOP32(index, n) {
    const int pw = index % width;
    const int ph = (index / width) % height;
    const float* p = x + (long long)(index / (width * height)) * height * width;
    const int pad = (size - 1) / 2;
    int hs, he, eh, ws, we, ew;
    rc_lrn_window(ph, pad, size, height, &hs, &he, &eh);
    rc_lrn_window(pw, pad, size, width, &ws, &we, &ew);
    float s = 0.0f;
    for (int r = hs; r < he; ++r) {
      for (int c = ws; c < we; ++c) s += p[r * width + c] * p[r * width + c];
    }
    const float a = s / (float)(eh * ew);
    const float sc = powf(a * alpha + 1.0f, -beta);
    avg[index] = a;
    scale[index] = sc;
    y[index] = x[index] * sc;
  }
}

// WITHIN_CHANNEL backward (the composition's chain rule, as the CPU
// backend): each input value gathers d_avg/extent from the windows that
// cover it, then dx = dy·scale + gathered·2x.
extern "C" __global__ void rc_lrn_within_bwd(int n, const float* x, const float* avg,
                                             const float* scale, const float* dy, int height,
                                             int width, int size, float alpha, float beta,
                                             float* dx) {
  RC_LOOP32(index, n) {
    const int col = index % width;
    const int row = (index / width) % height;
    const long long base = (long long)(index / (width * height)) * height * width;
    const int pad = (size - 1) / 2;
    const float diff_scale = -beta * alpha;
    // Outputs o whose window [o − pad, o − pad + size) holds this value.
    const int oh0 = max(row + pad - size + 1, 0), oh1 = min(row + pad, height - 1);
    const int ow0 = max(col + pad - size + 1, 0), ow1 = min(col + pad, width - 1);
    float acc = 0.0f;
    for (int oh = oh0; oh <= oh1; ++oh) {
      int hs, he, eh;
      rc_lrn_window(oh, pad, size, height, &hs, &he, &eh);
      for (int ow = ow0; ow <= ow1; ++ow) {
        int ws, we, ew;
        rc_lrn_window(ow, pad, size, width, &ws, &we, &ew);
        const long long o = base + oh * width + ow;
        const float d_scale = dy[o] * x[o];
        const float d_avg = d_scale * ((scale[o] / (avg[o] * alpha + 1.0f)) * diff_scale);
        acc += d_avg / (float)(eh * ew);
      }
    }
    dx[index] = dy[index] * scale[index] + acc * (2.0f * x[index]);
  }
}
