// RecurrentOps: Caffe's LSTMUnit (lstm_unit_layer.cu) on `streams` streams
// of h units; gate pre-activations are streams × 4h in Caffe's order
// [i, f, o, g]. σ and tanh are computed as Caffe's LSTM code does (tanh
// through σ). Products and sums are written with explicit roundings (no
// fused multiply-add), the CPU backend's arithmetic, so the only difference
// from it is expf's last bit.

__device__ __forceinline__ float rc_lstm_sigmoid(float x) {
  return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x)));
}
__device__ __forceinline__ float rc_lstm_tanh(float x) {
  return __fsub_rn(__fmul_rn(2.0f, rc_lstm_sigmoid(__fmul_rn(2.0f, x))), 1.0f);
}

// `count` = streams · h threads, one per (stream, unit).
extern "C" __global__ void rc_lstm_unit_fwd(long long count, long long h, const float* c_prev,
                                            const float* gates, const float* cont, float* c,
                                            float* h_out) {
  RC_LOOP(index, count) {
    const long long r = index / h, d = index % h;
    const float* x = gates + r * 4 * h;
    const float i = rc_lstm_sigmoid(x[d]);
    // f is exactly 0 where the sequence restarts (cont == 0).
    const float k = cont[r];
    const float f = k == 0.0f ? 0.0f : __fmul_rn(k, rc_lstm_sigmoid(x[h + d]));
    const float o = rc_lstm_sigmoid(x[2 * h + d]);
    const float g = rc_lstm_tanh(x[3 * h + d]);
    const float cv = __fadd_rn(__fmul_rn(f, c_prev[index]), __fmul_rn(i, g));
    c[index] = cv;
    h_out[index] = __fmul_rn(o, rc_lstm_tanh(cv));
  }
}

extern "C" __global__ void rc_lstm_unit_bwd(long long count, long long h, const float* c_prev,
                                            const float* gates, const float* cont,
                                            const float* c, const float* dc, const float* dh,
                                            float* dc_prev, float* dgates) {
  RC_LOOP(index, count) {
    const long long r = index / h, d = index % h;
    const float* x = gates + r * 4 * h;
    float* dx = dgates + r * 4 * h;
    const float i = rc_lstm_sigmoid(x[d]);
    const float k = cont[r];
    const float f = k == 0.0f ? 0.0f : __fmul_rn(k, rc_lstm_sigmoid(x[h + d]));
    const float o = rc_lstm_sigmoid(x[2 * h + d]);
    const float g = rc_lstm_tanh(x[3 * h + d]);
    const float cp = c_prev[index];
    const float tanh_c = rc_lstm_tanh(c[index]);
    const float dht = dh[index];
    // c_term = dc + dh·o·(1 − tanh_c²), products left to right as written.
    const float c_term = __fadd_rn(
        dc[index], __fmul_rn(__fmul_rn(dht, o), __fsub_rn(1.0f, __fmul_rn(tanh_c, tanh_c))));
    dc_prev[index] = __fmul_rn(c_term, f);
    dx[d] = __fmul_rn(__fmul_rn(__fmul_rn(c_term, g), i), __fsub_rn(1.0f, i));
    dx[h + d] = __fmul_rn(__fmul_rn(__fmul_rn(c_term, cp), f), __fsub_rn(1.0f, f));
    dx[2 * h + d] = __fmul_rn(__fmul_rn(__fmul_rn(dht, tanh_c), o), __fsub_rn(1.0f, o));
    dx[3 * h + d] = __fmul_rn(__fmul_rn(c_term, i), __fsub_rn(1.0f, __fmul_rn(g, g)));
  }
}

// y[r, :] = s[r] · x[r, :] + beta · y[r, :] (y not read when beta == 0;
// two products and a sum, each rounded, as on the CPU).
extern "C" __global__ void rc_scale_rows(long long n, long long cols, const float* s,
                                         const float* x, float beta, float* y) {
  RC_LOOP(i, n) {
    const long long r = n <= 0xffffffffLL ? (long long)((unsigned)i / (unsigned)cols) : i / cols;
    const float v = __fmul_rn(s[r], x[i]);
    y[i] = beta == 0.0f ? v : __fadd_rn(v, __fmul_rn(beta, y[i]));
  }
}
