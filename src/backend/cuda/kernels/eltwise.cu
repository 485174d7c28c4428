// EltwiseOps: MAX with the winner mask (Caffe's eltwise_layer.cu MaxForward
// / MaxBackward). Tie rule of the trait (and of Caffe's CPU code): bottom 1
// replaces bottom 0 unless bottom 0 is strictly greater; later bottoms
// replace only when strictly greater. (Caffe's GPU kernel lets later
// bottoms win ties; the values agree, only the mask could differ.)

extern "C" __global__ void rc_eltwise_max_fwd(long long n, int index, const float* x, float* y,
                                              float* mask) {
  RC_LOOP(i, n) {
    const float v = x[i], cur = y[i];
    const bool take = index == 1 ? !(cur > v) : v > cur;
    if (take) {
      y[i] = v;
      mask[i] = (float)index;
    }
  }
}

extern "C" __global__ void rc_eltwise_max_bwd(long long n, int index, const float* dy,
                                              const float* mask, float* dx) {
  RC_LOOP(i, n) dx[i] = mask[i] == (float)index ? dy[i] : 0.0f;
}
