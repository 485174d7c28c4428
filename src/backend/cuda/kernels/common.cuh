// Prepended to every kernel family by kernels/mod.rs. NVRTC compiles
// without system headers, so the limits are spelled out here.
#define RC_FLT_MAX 3.402823466e+38F
#define RC_FLT_MIN 1.175494351e-38F
#define RC_INT_MAX 2147483647

// Grid-stride loop over [0, n): any grid covers any n (64-bit indices for
// whole-tensor kernels).
#define RC_LOOP(i, n)                                                        \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;      \
       i < (long long)(n); i += (long long)blockDim.x * gridDim.x)

// 32-bit variant for the geometry kernels (one image or plane set at a
// time, far below 2^31 values), where 64-bit division would cost.
#define RC_LOOP32(i, n)                                                      \
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n);              \
       i += blockDim.x * gridDim.x)

// Reduction kernels run with exactly this many threads per block (the
// Rust launcher uses the same constant; a test checks they agree).
#define RC_REDUCE_THREADS 256

// Sum of `v` over the block, in double (the CPU backend's reductions
// accumulate in double too). Every thread of the block must call it.
__device__ __forceinline__ double rc_block_sum(double v) {
  __shared__ double s[RC_REDUCE_THREADS];
  __syncthreads();  // a previous call's readers are done with s[0]
  s[threadIdx.x] = v;
  __syncthreads();
  for (int k = RC_REDUCE_THREADS / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  return s[0];
}

// C++'s std::max / std::min (NaN handling of the CPU backend's cmax/cmin).
__device__ __forceinline__ float rc_cmax(float a, float b) { return a < b ? b : a; }
__device__ __forceinline__ float rc_cmin(float a, float b) { return b < a ? b : a; }
