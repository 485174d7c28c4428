// RecurrentOps: Caffe's LSTMUnit (lstm_unit_layer.cu) on n streams of h
// units; gate pre-activations are n × 4h in Caffe's order [i, f, o, g].
// σ and tanh are computed as Caffe's LSTM code does (tanh through σ).

__device__ __forceinline__ float rc_lstm_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float rc_lstm_tanh(float x) {
  return 2.0f * rc_lstm_sigmoid(2.0f * x) - 1.0f;
}

// n threads = streams · h.
extern "C" __global__ void rc_lstm_unit_fwd(int n, int h, const float* c_prev,
                                            const float* gates, const float* cont, float* c,
                                            float* h_out) {
  RC_LOOP32(index, n) {
    const int r = index / h, d = index % h;
    const float* x = gates + (long long)r * 4 * h;
    const float i = rc_lstm_sigmoid(x[d]);
    // f is exactly 0 where the sequence restarts (cont == 0).
    const float f = cont[r] == 0.0f ? 0.0f : cont[r] * rc_lstm_sigmoid(x[h + d]);
    const float o = rc_lstm_sigmoid(x[2 * h + d]);
    const float g = rc_lstm_tanh(x[3 * h + d]);
    const float cv = f * c_prev[index] + i * g;
    c[index] = cv;
    h_out[index] = o * rc_lstm_tanh(cv);
  }
}

extern "C" __global__ void rc_lstm_unit_bwd(int n, int h, const float* c_prev,
                                            const float* gates, const float* cont,
                                            const float* c, const float* dc, const float* dh,
                                            float* dc_prev, float* dgates) {
  RC_LOOP32(index, n) {
    const int r = index / h, d = index % h;
    const float* x = gates + (long long)r * 4 * h;
    float* dx = dgates + (long long)r * 4 * h;
    const float i = rc_lstm_sigmoid(x[d]);
    const float f = cont[r] == 0.0f ? 0.0f : cont[r] * rc_lstm_sigmoid(x[h + d]);
    const float o = rc_lstm_sigmoid(x[2 * h + d]);
    const float g = rc_lstm_tanh(x[3 * h + d]);
    const float cp = c_prev[index];
    const float tanh_c = rc_lstm_tanh(c[index]);
    const float dht = dh[index];
    const float c_term = dc[index] + dht * o * (1.0f - tanh_c * tanh_c);
    dc_prev[index] = c_term * f;
    dx[d] = c_term * g * i * (1.0f - i);
    dx[h + d] = c_term * cp * f * (1.0f - f);
    dx[2 * h + d] = dht * tanh_c * o * (1.0f - o);
    dx[3 * h + d] = c_term * i * (1.0f - g * g);
  }
}

// y[r, :] = s[r] · x[r, :] + beta · y[r, :] (y not read when beta == 0).
extern "C" __global__ void rc_scale_rows(long long n, int cols, const float* s, const float* x,
                                         float beta, float* y) {
  RC_LOOP(i, n) {
    const float v = s[i / cols] * x[i];
    y[i] = beta == 0.0f ? v : v + beta * y[i];
  }
}
