// PoolOps: Caffe's pooling_layer.cu MAX and AVE kernels over `planes`
// contiguous channel planes (num × channels). The MAX mask holds the flat
// index h·W + w of each maximum as a float (−1 when nothing beat −FLT_MAX).

extern "C" __global__ void rc_max_pool_fwd(int n, const float* x, int height, int width,
                                           int pooled_h, int pooled_w, int kernel_h,
                                           int kernel_w, int stride_h, int stride_w,
                                           int pad_h, int pad_w, float* y, float* mask) {
  RC_LOOP32(index, n) {
    const int pw = index % pooled_w;
    const int ph = (index / pooled_w) % pooled_h;
    const int c = index / pooled_w / pooled_h;
    int hstart = ph * stride_h - pad_h;
    int wstart = pw * stride_w - pad_w;
    const int hend = min(hstart + kernel_h, height);
    const int wend = min(wstart + kernel_w, width);
    hstart = max(hstart, 0);
    wstart = max(wstart, 0);
    float maxval = -RC_FLT_MAX;
    int maxidx = -1;
    const float* s = x + (long long)c * height * width;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        // Strictly greater: the first maximum in row-major order wins.
        if (s[h * width + w] > maxval) {
          maxidx = h * width + w;
          maxval = s[maxidx];
        }
      }
    }
    y[index] = maxval;
    mask[index] = (float)maxidx;
  }
}

// One thread per input value gathers the diffs of the windows whose
// maximum it was.
extern "C" __global__ void rc_max_pool_bwd(int n, const float* dy, const float* mask,
                                           int height, int width, int pooled_h, int pooled_w,
                                           int kernel_h, int kernel_w, int stride_h,
                                           int stride_w, int pad_h, int pad_w, float* dx) {
  RC_LOOP32(index, n) {
    const int w = index % width;
    const int h = (index / width) % height;
    const int c = index / width / height;
    const int phstart = (h + pad_h < kernel_h) ? 0 : (h + pad_h - kernel_h) / stride_h + 1;
    const int phend = min((h + pad_h) / stride_h + 1, pooled_h);
    const int pwstart = (w + pad_w < kernel_w) ? 0 : (w + pad_w - kernel_w) / stride_w + 1;
    const int pwend = min((w + pad_w) / stride_w + 1, pooled_w);
    const long long off = (long long)c * pooled_h * pooled_w;
    const float me = (float)(h * width + w);
    float g = 0.0f;
    for (int ph = phstart; ph < phend; ++ph) {
      for (int pw = pwstart; pw < pwend; ++pw) {
        if (mask[off + ph * pooled_w + pw] == me) g += dy[off + ph * pooled_w + pw];
      }
    }
    dx[index] = g;
  }
}

// The divisor is the window clipped to the padded extent (Caffe's).
extern "C" __global__ void rc_ave_pool_fwd(int n, const float* x, int height, int width,
                                           int pooled_h, int pooled_w, int kernel_h,
                                           int kernel_w, int stride_h, int stride_w,
                                           int pad_h, int pad_w, float* y) {
  RC_LOOP32(index, n) {
    const int pw = index % pooled_w;
    const int ph = (index / pooled_w) % pooled_h;
    const int c = index / pooled_w / pooled_h;
    int hstart = ph * stride_h - pad_h;
    int wstart = pw * stride_w - pad_w;
    int hend = min(hstart + kernel_h, height + pad_h);
    int wend = min(wstart + kernel_w, width + pad_w);
    const int pool_size = (hend - hstart) * (wend - wstart);
    hstart = max(hstart, 0);
    wstart = max(wstart, 0);
    hend = min(hend, height);
    wend = min(wend, width);
    float aveval = 0.0f;
    const float* s = x + (long long)c * height * width;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) aveval += s[h * width + w];
    }
    y[index] = aveval / pool_size;
  }
}

extern "C" __global__ void rc_ave_pool_bwd(int n, const float* dy, int height, int width,
                                           int pooled_h, int pooled_w, int kernel_h,
                                           int kernel_w, int stride_h, int stride_w,
                                           int pad_h, int pad_w, float* dx) {
  RC_LOOP32(index, n) {
    // Coordinates in the padded image.
    const int w = index % width + pad_w;
    const int h = (index / width) % height + pad_h;
    const int c = index / width / height;
    const int phstart = (h < kernel_h) ? 0 : (h - kernel_h) / stride_h + 1;
    const int phend = min(h / stride_h + 1, pooled_h);
    const int pwstart = (w < kernel_w) ? 0 : (w - kernel_w) / stride_w + 1;
    const int pwend = min(w / stride_w + 1, pooled_w);
    const float* d = dy + (long long)c * pooled_h * pooled_w;
    float g = 0.0f;
    for (int ph = phstart; ph < phend; ++ph) {
      for (int pw = pwstart; pw < pwend; ++pw) {
        const int hstart = ph * stride_h - pad_h;
        const int wstart = pw * stride_w - pad_w;
        const int hend = min(hstart + kernel_h, height + pad_h);
        const int wend = min(wstart + kernel_w, width + pad_w);
        const int pool_size = (hend - hstart) * (wend - wstart);
        g += d[ph * pooled_w + pw] / pool_size;
      }
    }
    dx[index] = g;
  }
}
