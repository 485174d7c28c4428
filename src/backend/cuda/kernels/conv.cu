// ConvOps: im2col / col2im (Caffe's im2col.cu), 2-D with dilation and N-D.
// Column layout as the CPU backend: row (c·kernel_size + kernel offset),
// column = output position, zero where the window reads padding.

// One thread per (input channel, output position) copies that window.
extern "C" __global__ void rc_im2col(int n, const float* im, int height, int width,
                                     int kernel_h, int kernel_w, int pad_h, int pad_w,
                                     int stride_h, int stride_w, int dilation_h,
                                     int dilation_w, int height_col, int width_col,
                                     float* col) {
  RC_LOOP32(index, n) {
    const int h_index = index / width_col;
    const int h_col = h_index % height_col;
    const int w_col = index % width_col;
    const int c_im = h_index / height_col;
    const int c_col = c_im * kernel_h * kernel_w;
    const int h_offset = h_col * stride_h - pad_h;
    const int w_offset = w_col * stride_w - pad_w;
    float* col_ptr = col + ((long long)c_col * height_col + h_col) * width_col + w_col;
    const float* im_ptr = im + (long long)c_im * height * width;
    for (int i = 0; i < kernel_h; ++i) {
      for (int j = 0; j < kernel_w; ++j) {
        const int h_im = h_offset + i * dilation_h;
        const int w_im = w_offset + j * dilation_w;
        *col_ptr = (h_im >= 0 && w_im >= 0 && h_im < height && w_im < width)
                       ? im_ptr[h_im * width + w_im]
                       : 0.0f;
        col_ptr += height_col * width_col;
      }
    }
  }
}

// One thread per image value sums the column entries that read it (no
// atomics, so the result is deterministic).
extern "C" __global__ void rc_col2im(int n, const float* col, int height, int width,
                                     int channels, int kernel_h, int kernel_w, int pad_h,
                                     int pad_w, int stride_h, int stride_w, int dilation_h,
                                     int dilation_w, int height_col, int width_col,
                                     float* im) {
  RC_LOOP32(index, n) {
    float val = 0.0f;
    const int w_im = index % width + pad_w;
    const int h_im = (index / width) % height + pad_h;
    const int c_im = index / (width * height);
    const int kernel_extent_w = (kernel_w - 1) * dilation_w + 1;
    const int kernel_extent_h = (kernel_h - 1) * dilation_h + 1;
    // The output positions whose windows can cover this value.
    const int w_col_start = (w_im < kernel_extent_w) ? 0 : (w_im - kernel_extent_w) / stride_w + 1;
    const int w_col_end = min(w_im / stride_w + 1, width_col);
    const int h_col_start = (h_im < kernel_extent_h) ? 0 : (h_im - kernel_extent_h) / stride_h + 1;
    const int h_col_end = min(h_im / stride_h + 1, height_col);
    for (int h_col = h_col_start; h_col < h_col_end; ++h_col) {
      for (int w_col = w_col_start; w_col < w_col_end; ++w_col) {
        int h_k = h_im - h_col * stride_h;
        int w_k = w_im - w_col * stride_w;
        if (h_k % dilation_h == 0 && w_k % dilation_w == 0) {
          h_k /= dilation_h;
          w_k /= dilation_w;
          const long long idx =
              ((((long long)c_im * kernel_h + h_k) * kernel_w + w_k) * height_col + h_col) *
                  width_col + w_col;
          val += col[idx];
        }
      }
    }
    (void)channels;
    im[index] = val;
  }
}

// N-D geometry, read from a device buffer of 4 + 6·RC_MAX_AXES ints that the
// Rust side (cuda/conv.rs, `nd_words`) uploads once per geometry: launches
// pass ints, floats and addresses only, not structs by value.
#define RC_MAX_AXES 10
struct RcNdGeom {
  int axes;
  int kernel_size;   // product of kernel[]
  int im_spatial;    // product of im_shape[]
  int col_spatial;   // product of col_shape[]
  int im_shape[RC_MAX_AXES];
  int col_shape[RC_MAX_AXES];
  int kernel[RC_MAX_AXES];
  int pad[RC_MAX_AXES];
  int stride[RC_MAX_AXES];
  int dilation[RC_MAX_AXES];
};

// n = channels · col_spatial; one thread per (channel, output position).
extern "C" __global__ void rc_im2col_nd(int n, const float* im, const RcNdGeom* __restrict__ gp,
                                        float* col) {
  const RcNdGeom& g = *gp;
  RC_LOOP32(index, n) {
    const int c = index / g.col_spatial;
    const int o = index % g.col_spatial;
    int out[RC_MAX_AXES], k[RC_MAX_AXES];
    int r = o;
    for (int d = g.axes - 1; d >= 0; --d) {
      out[d] = r % g.col_shape[d];
      r /= g.col_shape[d];
      k[d] = 0;
    }
    const float* im_c = im + (long long)c * g.im_spatial;
    for (int kk = 0; kk < g.kernel_size; ++kk) {
      bool inside = true;
      int off = 0;
      for (int d = 0; d < g.axes; ++d) {
        const int p = out[d] * g.stride[d] - g.pad[d] + k[d] * g.dilation[d];
        inside = inside && p >= 0 && p < g.im_shape[d];
        off = off * g.im_shape[d] + p;
      }
      col[((long long)c * g.kernel_size + kk) * g.col_spatial + o] = inside ? im_c[off] : 0.0f;
      // Next kernel offset, last axis fastest.
      for (int d = g.axes - 1; d >= 0; --d) {
        if (++k[d] < g.kernel[d]) break;
        k[d] = 0;
      }
    }
  }
}

// n = channels · im_spatial; one thread per image value.
extern "C" __global__ void rc_col2im_nd(int n, const float* col, const RcNdGeom* __restrict__ gp,
                                        float* im) {
  const RcNdGeom& g = *gp;
  RC_LOOP32(index, n) {
    const int c = index / g.im_spatial;
    int pos[RC_MAX_AXES], k[RC_MAX_AXES];
    int r = index % g.im_spatial;
    for (int d = g.axes - 1; d >= 0; --d) {
      pos[d] = r % g.im_shape[d];
      r /= g.im_shape[d];
      k[d] = 0;
    }
    float val = 0.0f;
    for (int kk = 0; kk < g.kernel_size; ++kk) {
      bool ok = true;
      int o = 0;
      for (int d = 0; d < g.axes && ok; ++d) {
        int t = pos[d] + g.pad[d] - k[d] * g.dilation[d];
        if (t < 0 || t % g.stride[d] != 0) {
          ok = false;
        } else {
          t /= g.stride[d];
          if (t >= g.col_shape[d]) ok = false;
          o = o * g.col_shape[d] + t;
        }
      }
      if (ok) val += col[((long long)c * g.kernel_size + kk) * g.col_spatial + o];
      for (int d = g.axes - 1; d >= 0; --d) {
        if (++k[d] < g.kernel[d]) break;
        k[d] = 0;
      }
    }
    im[index] = val;
  }
}
