// Depthwise 2-D convolution (group == in_channels == out_channels), direct:
// cuDNN's grouped convolution and the per-group im2col + GEMM are both slow
// for one filter per channel (PyTorch's conv_depthwise2d does the same).
//
// Tensors are (planes = images × channels, height, width) with plane p of
// channel p % channels; weights (channels, kernel_h, kernel_w). The Rust
// side launches whole images at a time, few enough that every index here
// fits an int. Taps run in a fixed order (kernel rows outer, columns inner)
// and no kernel uses atomics, so results depend only on the shapes.

// y = w ⋆ x (+ bias). One thread per output value; bias may be null.
extern "C" __global__ void rc_dw_conv_fwd(int n, const float* __restrict__ x,
                                          const float* __restrict__ w,
                                          const float* __restrict__ bias, int channels,
                                          int height, int width, int out_h, int out_w,
                                          int kernel_h, int kernel_w, int stride_h,
                                          int stride_w, int pad_h, int pad_w, int dilation_h,
                                          int dilation_w, float* __restrict__ y) {
  RC_LOOP32(index, n) {
    const int ow = index % out_w;
    const int oh = (index / out_w) % out_h;
    const int p = index / out_w / out_h;
    const int c = p % channels;
    const float* xp = x + p * height * width;
    const float* wc = w + c * kernel_h * kernel_w;
    const int h0 = oh * stride_h - pad_h;
    const int w0 = ow * stride_w - pad_w;
    float s = bias ? bias[c] : 0.0f;
    for (int kh = 0; kh < kernel_h; ++kh) {
      const int h = h0 + kh * dilation_h;
      // Unsigned compare: negative rows are padding too.
      if ((unsigned)h >= (unsigned)height) continue;
      for (int kw = 0; kw < kernel_w; ++kw) {
        const int v = w0 + kw * dilation_w;
        if ((unsigned)v < (unsigned)width) {
          s = fmaf(wc[kh * kernel_w + kw], xp[h * width + v], s);
        }
      }
    }
    y[index] = s;
  }
}

// dx = wᵀ ⋆ dy. One thread per input value, gathering the outputs whose
// windows read it (output row oh reads input row oh·stride_h − pad_h +
// kh·dilation_h), so every dx value is written, without atomics.
extern "C" __global__ void rc_dw_conv_bwd_data(int n, const float* __restrict__ dy,
                                               const float* __restrict__ w, int channels,
                                               int height, int width, int out_h, int out_w,
                                               int kernel_h, int kernel_w, int stride_h,
                                               int stride_w, int pad_h, int pad_w,
                                               int dilation_h, int dilation_w,
                                               float* __restrict__ dx) {
  RC_LOOP32(index, n) {
    const int iw = index % width;
    const int ih = (index / width) % height;
    const int p = index / width / height;
    const int c = p % channels;
    const float* dyp = dy + p * out_h * out_w;
    const float* wc = w + c * kernel_h * kernel_w;
    float s = 0.0f;
    for (int kh = 0; kh < kernel_h; ++kh) {
      const int th = ih + pad_h - kh * dilation_h;  // oh · stride_h
      if (th < 0) break;  // only decreases with kh
      const int oh = th / stride_h;
      if (oh * stride_h != th || oh >= out_h) continue;
      for (int kw = 0; kw < kernel_w; ++kw) {
        const int tw = iw + pad_w - kw * dilation_w;
        if (tw < 0) break;
        const int ow = tw / stride_w;
        if (ow * stride_w != tw || ow >= out_w) continue;
        s = fmaf(wc[kh * kernel_w + kw], dyp[oh * out_w + ow], s);
      }
    }
    dx[index] = s;
  }
}

// dw[c][kh][kw] += Σ_{images, oh, ow} x[..][oh·sh − ph + kh·dh][ow·sw − pw + kw·dw]
// · dy[..][oh][ow]. Grid: channels·kernel_h·kernel_w blocks of
// RC_REDUCE_THREADS, one per weight. Thread t sums j = t, t+T, ... of the
// num·out_h·out_w (image, output position) pairs in double (products of
// floats are exact there), then the block tree: a fixed order.
extern "C" __global__ void rc_dw_conv_bwd_filter(int num, const float* __restrict__ x,
                                                 const float* __restrict__ dy, int channels,
                                                 int height, int width, int out_h, int out_w,
                                                 int kernel_h, int kernel_w, int stride_h,
                                                 int stride_w, int pad_h, int pad_w,
                                                 int dilation_h, int dilation_w,
                                                 float* __restrict__ dw) {
  const int k = blockIdx.x;
  const int kw = k % kernel_w;
  const int kh = (k / kernel_w) % kernel_h;
  const int c = k / kernel_w / kernel_h;
  const unsigned op = (unsigned)(out_h * out_w);
  const unsigned m = (unsigned)num * op;
  const unsigned ow_u = (unsigned)out_w;
  const int h_off = kh * dilation_h - pad_h;
  const int w_off = kw * dilation_w - pad_w;
  const float* xc = x + c * height * width;
  const float* dyc = dy + c * (int)op;
  const int x_image = channels * height * width;
  const int dy_image = channels * (int)op;
  double s = 0.0;
  // Four values loaded before they are added (several loads in flight per
  // thread); added in j order, so the sum is the plain sequential one.
  for (unsigned j = threadIdx.x; j < m; j += 4 * blockDim.x) {
    double t[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const unsigned jj = j + u * blockDim.x;
      t[u] = 0.0;
      if (jj < m) {
        const unsigned img = jj / op;
        const unsigned q = jj - img * op;
        const unsigned oh = q / ow_u;
        const unsigned ow = q - oh * ow_u;
        const int h = (int)oh * stride_h + h_off;
        const int v = (int)ow * stride_w + w_off;
        if ((unsigned)h < (unsigned)height && (unsigned)v < (unsigned)width) {
          const float xv = xc[(int)img * x_image + h * width + v];
          const float gv = dyc[(int)img * dy_image + (int)q];
          t[u] = (double)xv * (double)gv;
        }
      }
    }
    s += t[0];
    s += t[1];
    s += t[2];
    s += t[3];
  }
  const double total = rc_block_sum(s);
  if (threadIdx.x == 0) dw[k] += (float)total;
}
