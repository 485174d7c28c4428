//! `ConvOps` on the GPU: what runs where, and why.
//!
//! - `im2col`/`col2im`: the NVRTC kernels of `kernels/conv.cu` (Caffe's
//!   `im2col.cu`): `rc_im2col`/`rc_col2im` for 2 spatial axes, the N-D
//!   `rc_im2col_nd`/`rc_col2im_nd` otherwise (0 to `kernels::MAX_AXES` axes).
//!   The N-D kernels read their geometry (`nd_words`) from a small device
//!   buffer uploaded once per geometry and cached in `ConvState`.
//! - The convolution passes follow Caffe's engine choice
//!   (`layer_factory.cpp`, `GetConvolutionLayer`/`GetDeconvolutionLayer`):
//!   DEFAULT is cuDNN unless a dilation is > 1, CUDNN is cuDNN (cuDNN 9
//!   handles dilation, where Caffe 1.0 refused it), CAFFE is Caffe's own
//!   im2col + cuBLAS GEMM per image and group (the trait's `generic`
//!   passes). cuDNN serves 2 spatial axes only, as Caffe's
//!   `CuDNNConvolutionLayer`; any other convolution runs the generic passes
//!   whatever its engine. Depthwise convolutions (`DepthwiseGeometry`) run
//!   the direct kernels of `depthwise.rs` on every engine.
//! - cuDNN runs one call per pass over the whole batch, the groups in one
//!   descriptor (`cudnnSetConvolutionGroupCount`), cross-correlation (Caffe's
//!   convolution), FP32 with FMA math only (no TF32: Caffe's numerics). A
//!   plan per (geometry, batch) holds the descriptors and the three
//!   algorithms, chosen by timing them (`cudnnFind*Algorithm`, as PyTorch's
//!   `cudnn.benchmark`; `RCAFFE_CUDNN_SEARCH=heuristic` asks cuDNN's
//!   heuristics instead, `cudnnGet*Algorithm_v7`, as Caffe does): the
//!   fastest that fits `WORKSPACE_LIMIT`. The plan is built when a layer asks for
//!   `conv_workspace_len` in reshape or at first use. One cuDNN workspace
//!   per device is shared by all plans (grown, never shrunk); if growing it
//!   fails, the plan falls back to algorithms that fit the workspace there
//!   is, as Caffe's `CuDNNConvolutionLayer::Reshape` does.
//! - Bias: forward `cudnnAddTensor`, gradient `cudnnConvolutionBackwardBias`
//!   (beta = 1: accumulates) inside `conv_backward_filter_bias` on the cuDNN
//!   path. `conv_backward_bias` alone has no geometry (so no engine): it
//!   stays the generic cuBLAS GEMV (Deconvolution's bias gradient).
//! - Deconvolution calls the same passes with the roles swapped (its
//!   forward is `conv_backward_data`), so the same plans serve it.
//! - Errors (cuDNN statuses, no usable algorithm, geometry too large for
//!   the kernels' 32-bit indices) are recorded, never panicked on, and
//!   reported by `CudaBackend::check` like launch and cuBLAS errors.
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::cudnn::result::{self as dnn, CudnnError};
use cudarc::cudnn::sys as dsys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::context::CudaDevice;
use super::depthwise::Depthwise;
use super::error::{code_name, driver, guard, CudaError, CudaResult};
use super::kernels::MAX_AXES;
use super::math::{elementwise, CudaBackend, KArg};
use super::memory::CdPtr;
use crate::backend::conv::{generic, ConvGeometry, ConvOps, Engine};
use crate::backend::{View, ViewMut};

/// The most cuDNN workspace one plan's algorithms may ask for. Caffe 1.0
/// capped each layer at 8 MiB; here one workspace serves every layer of the
/// device, so a larger cap costs little memory and admits the faster
/// algorithms.
const WORKSPACE_LIMIT: usize = 256 << 20;

/// Ints of the N-D kernels' `RcNdGeom` (conv.cu): 4 scalars, 6 arrays.
const ND_WORDS: usize = 4 + 6 * MAX_AXES;

/// Device state of the convolution family: the cuDNN handle (on the
/// device's stream), the plans, the shared cuDNN workspace and the N-D
/// kernels' geometry buffers. Created once per backend by
/// `ConvState::new(&dev)`.
///
/// Determinism: with `RCAFFE_CUDNN_DETERMINISTIC=1` in the environment
/// (read once, here), only algorithms cuDNN reports as deterministic are
/// chosen (the backward passes then avoid the atomics-based ALGO_0/ALGO_3,
/// e.g. backward-filter and backward-data ALGO_1), so repeated runs give
/// bit-identical gradients. Otherwise the fastest algorithm that fits is
/// used, which may sum in a run-dependent order (as Caffe with cuDNN does).
pub(crate) struct ConvState {
    search: Search,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ConvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConvState({:?})", self.search)
    }
}

struct Inner {
    /// Keeps the context alive until the handle is destroyed (drop order).
    stream: Arc<CudaStream>,
    handle: dsys::cudnnHandle_t,
    plans: HashMap<PlanKey, Plan>,
    /// The shared cuDNN workspace (bytes); `None` until a plan needs one.
    workspace: Option<CudaSlice<u8>>,
    nd: HashMap<[i32; ND_WORDS], CudaSlice<i32>>,
}

// SAFETY: the cuDNN handle and descriptors are plain pointers that any
// thread may use as long as no two threads use them at once; `Inner` is
// only reached through `ConvState`'s Mutex, which serialises that use.
unsafe impl Send for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // cuDNN destroys on the current context; this drop cannot report.
        let _ = self.stream.context().bind_to_thread();
        self.plans.clear();
        // SAFETY: created in `ConvState::new`, destroyed only here.
        let _ = unsafe { dnn::destroy_handle(self.handle) };
    }
}

impl ConvState {
    /// Create the cuDNN handle on `dev`'s stream (the probes of
    /// `CudaDevice::open` have found cuDNN 9).
    pub(crate) fn new(dev: &CudaDevice) -> CudaResult<Self> {
        dev.ctx
            .bind_to_thread()
            .map_err(driver("binding the context for cuDNN"))?;
        let handle = guard("creating the cuDNN handle", || {
            // cuDNN 9 is a dispatcher over sub-libraries; the convolutions
            // need libcudnn_ops and libcudnn_cnn: fail here, clearly, if
            // they cannot be loaded, rather than at the first pass.
            // SAFETY: argument-free version checks.
            unsafe {
                dsys::cudnnOpsVersionCheck()
                    .result()
                    .and_then(|_| dsys::cudnnCnnVersionCheck().result())
            }
            .map_err(|e| {
                cudnn_err(
                    "loading cuDNN's ops and cnn sub-libraries (libcudnn_ops.so.9, \
                     libcudnn_cnn.so.9, next to libcudnn.so.9)",
                    e,
                )
            })?;
            dnn::create_handle().map_err(|e| cudnn_err("creating the cuDNN handle", e))
        })?;
        // SAFETY: a live handle and the device's live stream (the driver's
        // CUstream is the runtime's cudaStream_t).
        let set = unsafe { dnn::set_stream(handle, dev.stream.cu_stream() as dsys::cudaStream_t) };
        if let Err(e) = set {
            // SAFETY: created above, not used after.
            let _ = unsafe { dnn::destroy_handle(handle) };
            return Err(cudnn_err("setting the cuDNN stream", e));
        }
        Ok(ConvState {
            search: Search::from_env(),
            inner: Mutex::new(Inner {
                stream: dev.stream.clone(),
                handle,
                plans: HashMap::new(),
                workspace: None,
                nd: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn cudnn_err(context: &str, e: CudnnError) -> CudaError {
    CudaError::Cudnn {
        context: context.to_string(),
        message: format!("{:?}", e.0),
    }
}

/// Plans are per (geometry, batch): cuDNN's tensor descriptors carry N.
type PlanKey = [usize; 16];

fn plan_key(g: &ConvGeometry, num: usize) -> PlanKey {
    [
        num,
        g.in_channels,
        g.in_shape[0],
        g.in_shape[1],
        g.out_channels,
        g.out_shape[0],
        g.out_shape[1],
        g.kernel[0],
        g.kernel[1],
        g.stride[0],
        g.stride[1],
        g.pad[0],
        g.pad[1],
        g.dilation[0],
        g.dilation[1],
        g.group,
    ]
}

struct TensorDesc(dsys::cudnnTensorDescriptor_t);
struct FilterDesc(dsys::cudnnFilterDescriptor_t);
struct ConvDesc(dsys::cudnnConvolutionDescriptor_t);

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created by `new`, destroyed once, here.
        let _ = unsafe { dnn::destroy_tensor_descriptor(self.0) };
    }
}
impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: as for TensorDesc.
        let _ = unsafe { dnn::destroy_filter_descriptor(self.0) };
    }
}
impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: as for TensorDesc.
        let _ = unsafe { dnn::destroy_convolution_descriptor(self.0) };
    }
}

impl TensorDesc {
    /// A packed NCHW float tensor.
    fn new(dims: [usize; 4]) -> Result<Self, CudaError> {
        let d = TensorDesc(
            dnn::create_tensor_descriptor().map_err(|e| cudnn_err("creating a descriptor", e))?,
        );
        // SAFETY: a descriptor created just above.
        unsafe {
            dnn::set_tensor4d_descriptor(
                d.0,
                dsys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                dsys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                ints(dims)?,
            )
        }
        .map_err(|e| cudnn_err(&format!("describing a tensor {dims:?}"), e))?;
        Ok(d)
    }
}

/// `usize`s as cuDNN's `int`s.
fn ints<const N: usize>(v: [usize; N]) -> Result<[i32; N], CudaError> {
    let mut out = [0i32; N];
    for (o, &x) in out.iter_mut().zip(&v) {
        *o = i32::try_from(x).map_err(|_| CudaError::Cudnn {
            context: "describing a convolution".into(),
            message: format!("dimension {x} of {v:?} exceeds cuDNN's int range"),
        })?;
    }
    Ok(out)
}

/// One pass's algorithm (cuDNN's enum value) and workspace bytes.
#[derive(Debug, Clone, Copy)]
struct Choice<A> {
    algo: A,
    bytes: usize,
}

/// A (geometry, batch)'s descriptors and algorithms.
struct Plan {
    x: TensorDesc,
    y: TensorDesc,
    bias: TensorDesc,
    w: FilterDesc,
    conv: ConvDesc,
    fwd: Choice<dsys::cudnnConvolutionFwdAlgo_t>,
    bwd_data: Choice<dsys::cudnnConvolutionBwdDataAlgo_t>,
    bwd_filter: Choice<dsys::cudnnConvolutionBwdFilterAlgo_t>,
}

impl Plan {
    fn bytes(&self) -> usize {
        self.fwd
            .bytes
            .max(self.bwd_data.bytes)
            .max(self.bwd_filter.bytes)
    }
}

/// cuDNN's `cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t` with the
/// enums read as plain `u32`s (all three structs share this layout), so a
/// value this binding does not know cannot become an invalid Rust enum.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct AlgoPerf {
    algo: u32,
    status: u32,
    time: f32,
    memory: usize,
    determinism: u32,
    math_type: u32,
    reserved: [i32; 3],
}

const _: () = {
    use std::mem::{align_of, size_of};
    assert!(size_of::<AlgoPerf>() == size_of::<dsys::cudnnConvolutionFwdAlgoPerf_t>());
    assert!(size_of::<AlgoPerf>() == size_of::<dsys::cudnnConvolutionBwdDataAlgoPerf_t>());
    assert!(size_of::<AlgoPerf>() == size_of::<dsys::cudnnConvolutionBwdFilterAlgoPerf_t>());
    assert!(align_of::<AlgoPerf>() == align_of::<dsys::cudnnConvolutionFwdAlgoPerf_t>());
};

/// The first (cuDNN lists them fastest first) usable algorithm that fits
/// `limit` bytes: supported, FP32 FMA math (no tensor-op / TF32 entries),
/// deterministic when asked, and known to `known`. Its workspace size is
/// then asked of cuDNN for the plan (`cudnnGet*WorkspaceSize`).
fn pick<A>(
    perf: &[AlgoPerf],
    limit: usize,
    deterministic: bool,
    known: impl Fn(u32) -> Option<A>,
) -> Option<A> {
    const SUCCESS: u32 = dsys::cudnnStatus_t::CUDNN_STATUS_SUCCESS as u32;
    const DETERMINISTIC: u32 = dsys::cudnnDeterminism_t::CUDNN_DETERMINISTIC as u32;
    const DEFAULT_MATH: u32 = dsys::cudnnMathType_t::CUDNN_DEFAULT_MATH as u32;
    const FMA_MATH: u32 = dsys::cudnnMathType_t::CUDNN_FMA_MATH as u32;
    perf.iter()
        .filter(|p| p.status == SUCCESS && p.memory <= limit)
        .filter(|p| !deterministic || p.determinism == DETERMINISTIC)
        .filter(|p| p.math_type == DEFAULT_MATH || p.math_type == FMA_MATH)
        .find_map(|p| known(p.algo))
}

fn fwd_algo(v: u32) -> Option<dsys::cudnnConvolutionFwdAlgo_t> {
    use dsys::cudnnConvolutionFwdAlgo_t::*;
    Some(match v {
        0 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        1 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        2 => CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        3 => CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        4 => CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        5 => CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        6 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        7 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

fn bwd_data_algo(v: u32) -> Option<dsys::cudnnConvolutionBwdDataAlgo_t> {
    use dsys::cudnnConvolutionBwdDataAlgo_t::*;
    Some(match v {
        0 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        1 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        2 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        3 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        4 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        5 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

fn bwd_filter_algo(v: u32) -> Option<dsys::cudnnConvolutionBwdFilterAlgo_t> {
    use dsys::cudnnConvolutionBwdFilterAlgo_t::*;
    Some(match v {
        0 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
        1 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        2 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        3 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        4 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
        5 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        6 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
        _ => return None,
    })
}

/// Room for every algorithm cuDNN 9 lists (8 forward, 6 and 7 backward).
const MAX_PERF: usize = 16;

/// `cudnnFind*Algorithm` (timed) or `cudnnGet*Algorithm_v7` (heuristics),
/// which take the same arguments, as `search` says.
macro_rules! list_algos {
    ($search:expr, $find:path, $heuristic:path, $($arg:expr),*) => {
        if $search.find {
            $find($($arg),*)
        } else {
            $heuristic($($arg),*)
        }
    };
}

/// How a plan's algorithms are chosen.
///
/// - `find` (the default): cuDNN runs every algorithm once on scratch
///   buffers it allocates (`cudnnFind*Algorithm`) and lists them fastest
///   first, as PyTorch's `cudnn.benchmark`: a one-off cost per (geometry,
///   batch) for the fastest algorithm rather than the heuristics' guess
///   (BENCHMARKS.md has both). `RCAFFE_CUDNN_SEARCH=heuristic` uses cuDNN's heuristics
///   (`cudnnGet*Algorithm_v7`, Caffe's way: no trial runs, no extra memory).
/// - `deterministic` (`RCAFFE_CUDNN_DETERMINISTIC=1`): only algorithms cuDNN
///   reports as deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Search {
    pub(crate) find: bool,
    pub(crate) deterministic: bool,
}

impl Search {
    /// Read once per backend from the environment.
    fn from_env() -> Self {
        Search {
            find: std::env::var("RCAFFE_CUDNN_SEARCH").as_deref() != Ok("heuristic"),
            deterministic: std::env::var("RCAFFE_CUDNN_DETERMINISTIC").as_deref() == Ok("1"),
        }
    }
}

/// Descriptors for `g` over `num` images and the algorithms for a
/// workspace of at most `limit` bytes (`search`; if none fits, the
/// deterministic small-workspace algorithms IMPLICIT_GEMM / ALGO_1, like
/// Caffe's fallback; the caller checks what they need).
fn build_plan(
    handle: dsys::cudnnHandle_t,
    g: &ConvGeometry,
    num: usize,
    search: Search,
    limit: usize,
) -> Result<Plan, CudaError> {
    let deterministic = search.deterministic;
    let what = |s: &str| format!("planning the cuDNN convolution {g:?} ×{num}: {s}");
    let x = TensorDesc::new([num, g.in_channels, g.in_shape[0], g.in_shape[1]])?;
    let y = TensorDesc::new([num, g.out_channels, g.out_shape[0], g.out_shape[1]])?;
    let bias = TensorDesc::new([1, g.out_channels, 1, 1])?;
    let w = FilterDesc(dnn::create_filter_descriptor().map_err(|e| cudnn_err(&what("filter"), e))?);
    let fdims = ints([
        g.out_channels,
        g.in_channels / g.group,
        g.kernel[0],
        g.kernel[1],
    ])?;
    // SAFETY: a descriptor created just above.
    unsafe {
        dnn::set_filter4d_descriptor(
            w.0,
            dsys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            dsys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
            fdims,
        )
    }
    .map_err(|e| cudnn_err(&what("filter"), e))?;
    let conv = ConvDesc(
        dnn::create_convolution_descriptor().map_err(|e| cudnn_err(&what("convolution"), e))?,
    );
    let [ph, pw, sh, sw, dh, dw] = ints([
        g.pad[0],
        g.pad[1],
        g.stride[0],
        g.stride[1],
        g.dilation[0],
        g.dilation[1],
    ])?;
    let group = i32::try_from(g.group).unwrap_or(i32::MAX);
    // SAFETY: a descriptor created just above.
    unsafe {
        dnn::set_convolution2d_descriptor(
            conv.0,
            ph,
            pw,
            sh,
            sw,
            dh,
            dw,
            // Caffe's convolution does not flip the kernel.
            dsys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            dsys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        )
        .and_then(|_| dnn::set_convolution_group_count(conv.0, group))
        // FP32 arithmetic only: the default would allow TF32 tensor cores
        // (10-bit mantissas) on Ampere and later.
        .and_then(|_| dnn::set_convolution_math_type(conv.0, dsys::cudnnMathType_t::CUDNN_FMA_MATH))
    }
    .map_err(|e| cudnn_err(&what("convolution"), e))?;

    // cuDNN's output size must be the geometry's (Caffe's rule): a
    // mismatch would make every pass read or write out of bounds.
    let mut o = [0i32; 4];
    // SAFETY: live descriptors; four out-pointers to local ints.
    unsafe {
        dsys::cudnnGetConvolution2dForwardOutputDim(
            conv.0, x.0, w.0, &mut o[0], &mut o[1], &mut o[2], &mut o[3],
        )
        .result()
    }
    .map_err(|e| cudnn_err(&what("output size"), e))?;
    let want = ints([num, g.out_channels, g.out_shape[0], g.out_shape[1]])?;
    if o != want {
        return Err(CudaError::Cudnn {
            context: what("output size"),
            message: format!("cuDNN computes {o:?}, the geometry says {want:?}"),
        });
    }

    let mut perf = [AlgoPerf::default(); MAX_PERF];
    let mut n = 0i32;
    // SAFETY: live handle and descriptors; `perf` holds MAX_PERF entries of
    // the perf structs' layout (checked above) and cuDNN writes at most
    // the requested count, reported in `n`.
    unsafe {
        let out = perf.as_mut_ptr() as *mut dsys::cudnnConvolutionFwdAlgoPerf_t;
        list_algos!(
            search,
            dsys::cudnnFindConvolutionForwardAlgorithm,
            dsys::cudnnGetConvolutionForwardAlgorithm_v7,
            handle,
            x.0,
            w.0,
            conv.0,
            y.0,
            MAX_PERF as i32,
            &mut n,
            out
        )
        .result()
    }
    .map_err(|e| cudnn_err(&what("forward algorithm"), e))?;
    let listed = &perf[..(n.clamp(0, MAX_PERF as i32) as usize)];
    let algo = pick(listed, limit, deterministic, fwd_algo)
        .unwrap_or(dsys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
    // SAFETY: live handle and descriptors.
    let bytes =
        unsafe { dnn::get_convolution_forward_workspace_size(handle, x.0, w.0, conv.0, y.0, algo) }
            .map_err(|e| cudnn_err(&what("forward workspace"), e))?;
    let fwd = Choice { algo, bytes };

    let mut perf = [AlgoPerf::default(); MAX_PERF];
    let mut n = 0i32;
    // SAFETY: as for the forward heuristics.
    unsafe {
        let out = perf.as_mut_ptr() as *mut dsys::cudnnConvolutionBwdDataAlgoPerf_t;
        list_algos!(
            search,
            dsys::cudnnFindConvolutionBackwardDataAlgorithm,
            dsys::cudnnGetConvolutionBackwardDataAlgorithm_v7,
            handle,
            w.0,
            y.0,
            conv.0,
            x.0,
            MAX_PERF as i32,
            &mut n,
            out
        )
        .result()
    }
    .map_err(|e| cudnn_err(&what("backward-data algorithm"), e))?;
    let listed = &perf[..(n.clamp(0, MAX_PERF as i32) as usize)];
    let algo = pick(listed, limit, deterministic, bwd_data_algo)
        .unwrap_or(dsys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
    // SAFETY: live handle and descriptors.
    let bytes = unsafe {
        dnn::get_convolution_backward_data_workspace_size(handle, w.0, y.0, conv.0, x.0, algo)
    }
    .map_err(|e| cudnn_err(&what("backward-data workspace"), e))?;
    let bwd_data = Choice { algo, bytes };

    let mut perf = [AlgoPerf::default(); MAX_PERF];
    let mut n = 0i32;
    // SAFETY: as for the forward heuristics.
    unsafe {
        let out = perf.as_mut_ptr() as *mut dsys::cudnnConvolutionBwdFilterAlgoPerf_t;
        list_algos!(
            search,
            dsys::cudnnFindConvolutionBackwardFilterAlgorithm,
            dsys::cudnnGetConvolutionBackwardFilterAlgorithm_v7,
            handle,
            x.0,
            y.0,
            conv.0,
            w.0,
            MAX_PERF as i32,
            &mut n,
            out
        )
        .result()
    }
    .map_err(|e| cudnn_err(&what("backward-filter algorithm"), e))?;
    let listed = &perf[..(n.clamp(0, MAX_PERF as i32) as usize)];
    let algo = pick(listed, limit, deterministic, bwd_filter_algo)
        .unwrap_or(dsys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
    // SAFETY: live handle and descriptors.
    let bytes = unsafe {
        dnn::get_convolution_backward_filter_workspace_size(handle, x.0, y.0, conv.0, w.0, algo)
    }
    .map_err(|e| cudnn_err(&what("backward-filter workspace"), e))?;
    let bwd_filter = Choice { algo, bytes };

    Ok(Plan {
        x,
        y,
        bias,
        w,
        conv,
        fwd,
        bwd_data,
        bwd_filter,
    })
}

impl Inner {
    fn workspace_len(&self) -> usize {
        self.workspace.as_ref().map_or(0, |w| w.len())
    }

    /// Grow the shared workspace to at least `bytes`; false when the device
    /// is out of memory, the workspace then being as large as it was (or,
    /// if even that cannot be had again, absent: `with_plan` checks each
    /// plan's need against what there is).
    fn grow_workspace(&mut self, bytes: usize) -> bool {
        let old = self.workspace_len();
        if bytes <= old {
            return true;
        }
        // Rounded up to 1 MiB so that slightly larger plans do not each
        // regrow it. Frees are stream-ordered (after the queued passes that
        // use the old block).
        let bytes = bytes.div_ceil(1 << 20) << 20;
        if let Ok(w) = self.stream.alloc_zeros::<u8>(bytes) {
            self.workspace = Some(w);
            return true;
        }
        // Out of memory: retry with the old block released, else restore it.
        self.workspace = None;
        if let Ok(w) = self.stream.alloc_zeros::<u8>(bytes) {
            self.workspace = Some(w);
            return true;
        }
        if old > 0 {
            self.workspace = self.stream.alloc_zeros::<u8>(old).ok();
        }
        false
    }

    /// The plan for `g` over `num` images, built and its workspace
    /// provided if new.
    fn plan(&mut self, g: &ConvGeometry, num: usize, search: Search) -> CudaResult<&Plan> {
        let key = plan_key(g, num);
        if !self.plans.contains_key(&key) {
            let mut plan = build_plan(self.handle, g, num, search, WORKSPACE_LIMIT)?;
            if !self.grow_workspace(plan.bytes()) {
                // Out of memory: algorithms that fit what is left (Caffe's
                // fallback to workspace-free algorithms).
                let have = self.workspace_len();
                plan = build_plan(self.handle, g, num, search, have)?;
                if plan.bytes() > have {
                    return Err(CudaError::Cudnn {
                        context: format!("planning the cuDNN convolution {g:?} ×{num}"),
                        message: format!(
                            "out of GPU memory for a {} byte workspace, and no algorithm \
                             runs without one",
                            plan.bytes()
                        ),
                    });
                }
            }
            self.plans.insert(key, plan);
        }
        Ok(&self.plans[&key])
    }

    /// The device address of `g`'s N-D kernel geometry, uploaded once.
    fn nd_geometry(&mut self, words: [i32; ND_WORDS]) -> CudaResult<CdPtr> {
        if !self.nd.contains_key(&words) {
            // A one-time upload per geometry (256 bytes): the kernels read
            // it from device memory since launches cannot pass structs.
            let buf = self
                .stream
                .clone_htod(&words[..])
                .map_err(driver("uploading an N-D convolution geometry"))?;
            self.nd.insert(words, buf);
        }
        let (p, _sync) = self.nd[&words].device_ptr(&self.stream);
        Ok(p)
    }
}

/// `g` as the N-D kernels' `RcNdGeom` (conv.cu): axes, kernel_size,
/// im_spatial, col_spatial, then im_shape, col_shape, kernel, pad, stride,
/// dilation, `MAX_AXES` ints each; `None` if it does not fit (too many
/// axes, or a value beyond `int`).
fn nd_words(g: &ConvGeometry) -> Option<[i32; ND_WORDS]> {
    let axes = g.num_spatial_axes();
    if axes > MAX_AXES {
        return None;
    }
    let mut w = [0i32; ND_WORDS];
    let head = [axes, g.kernel_size(), g.in_spatial(), g.out_spatial()];
    for (o, &v) in w.iter_mut().zip(&head) {
        *o = i32::try_from(v).ok()?;
    }
    let arrays = [
        &g.in_shape,
        &g.out_shape,
        &g.kernel,
        &g.pad,
        &g.stride,
        &g.dilation,
    ];
    for (a, arr) in arrays.iter().enumerate() {
        for (d, &v) in arr.iter().take(axes).enumerate() {
            w[4 + a * MAX_AXES + d] = i32::try_from(v).ok()?;
        }
    }
    Some(w)
}

/// Pointers and scalars of one cuDNN call.
fn vp(p: CdPtr) -> *const c_void {
    p as usize as *const c_void
}
fn vp_mut(p: CdPtr) -> *mut c_void {
    p as usize as *mut c_void
}
const ONE: f32 = 1.0;
const ZERO: f32 = 0.0;
fn scalar(v: &f32) -> *const c_void {
    v as *const f32 as *const c_void
}

impl CudaBackend {
    fn conv_state(&self) -> &ConvState {
        &self.conv
    }

    /// Whether Caffe would run `g` on cuDNN (see the module comment).
    fn conv_uses_cudnn(g: &ConvGeometry) -> bool {
        g.num_spatial_axes() == 2
            && match g.engine {
                Engine::Caffe => false,
                Engine::Cudnn => true,
                Engine::Default => g.dilation.iter().all(|&d| d <= 1),
            }
    }

    /// Run `f` with the cuDNN handle, `g`'s plan over `num` images and the
    /// shared workspace (null when there is none); failures are recorded.
    fn with_plan(
        &self,
        g: &ConvGeometry,
        num: usize,
        what: &str,
        f: impl FnOnce(dsys::cudnnHandle_t, &Plan, *mut c_void) -> Result<(), CudnnError>,
    ) {
        let st = self.conv_state();
        let mut inner = st.lock();
        // cuDNN works on the calling thread's current context.
        if let Err(e) = self.dev.ctx.bind_to_thread() {
            self.record_error(CudaError::Driver {
                context: format!("binding the context for {what}"),
                message: code_name(&e),
            });
            return;
        }
        if let Err(e) = inner.plan(g, num, st.search) {
            self.record_error(e);
            return;
        }
        let inner = &*inner;
        let plan = &inner.plans[&plan_key(g, num)];
        if plan.bytes() > inner.workspace_len() {
            // Only after an out-of-memory lost the workspace (grow_workspace).
            self.record_error(CudaError::Cudnn {
                context: format!("{what} of {g:?} ×{num}"),
                message: format!(
                    "the plan needs {} bytes of workspace, {} are allocated (out of GPU memory)",
                    plan.bytes(),
                    inner.workspace_len()
                ),
            });
            return;
        }
        let ws = match &inner.workspace {
            Some(w) => vp_mut(w.device_ptr(&inner.stream).0),
            None => std::ptr::null_mut(),
        };
        if let Err(e) = f(inner.handle, plan, ws) {
            self.record_error(cudnn_err(&format!("{what} of {g:?} ×{num}"), e));
        }
    }

    /// `n` as a kernel's `int`, or a recorded error.
    fn conv_int(&self, v: usize, what: &str) -> Option<i32> {
        let r = i32::try_from(v).ok();
        if r.is_none() {
            self.record_error(CudaError::Unusable(format!(
                "{what}: {v} exceeds the 32-bit indices of the im2col kernels"
            )));
        }
        r
    }

    /// The 2-D kernels' geometry ints: height, width, kernel_h, kernel_w,
    /// pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w,
    /// height_col, width_col.
    fn conv_2d_args(&self, g: &ConvGeometry) -> Option<[KArg; 12]> {
        let v = [
            g.in_shape[0],
            g.in_shape[1],
            g.kernel[0],
            g.kernel[1],
            g.pad[0],
            g.pad[1],
            g.stride[0],
            g.stride[1],
            g.dilation[0],
            g.dilation[1],
            g.out_shape[0],
            g.out_shape[1],
        ];
        let mut out = [KArg::I32(0); 12];
        for (o, &x) in out.iter_mut().zip(&v) {
            *o = KArg::I32(self.conv_int(x, "a 2-D im2col geometry")?);
        }
        Some(out)
    }

    /// The N-D kernels' geometry buffer for `g`, or a recorded error.
    fn conv_nd_geometry(&self, g: &ConvGeometry) -> Option<KArg> {
        let Some(words) = nd_words(g) else {
            self.record_error(CudaError::Unusable(format!(
                "an N-D im2col geometry with {} spatial axes (at most {MAX_AXES}) or values \
                 beyond 32 bits: {g:?}",
                g.num_spatial_axes()
            )));
            return None;
        };
        match self.conv_state().lock().nd_geometry(words) {
            Ok(p) => Some(KArg::Ptr(p)),
            Err(e) => {
                self.record_error(e);
                None
            }
        }
    }
}

impl ConvOps for CudaBackend {
    fn im2col(&self, g: &ConvGeometry, x: View, col: ViewMut) {
        // One thread per (channel, output position).
        let Some(n) = self.conv_int(g.in_channels * g.out_spatial(), "im2col") else {
            return;
        };
        if n == 0 || self.conv_int(g.in_dim(), "im2col").is_none() {
            return;
        }
        let (xp, cp) = (self.ptr(&x), self.ptr_mut(&col));
        if g.num_spatial_axes() == 2 {
            let Some(geo) = self.conv_2d_args(g) else {
                return;
            };
            let mut args = vec![KArg::I32(n), xp];
            args.extend_from_slice(&geo);
            args.push(cp);
            self.launch("rc_im2col", elementwise(n as usize), &args);
        } else if let Some(gp) = self.conv_nd_geometry(g) {
            let args = [KArg::I32(n), xp, gp, cp];
            self.launch("rc_im2col_nd", elementwise(n as usize), &args);
        }
    }

    fn col2im(&self, g: &ConvGeometry, col: View, x: ViewMut) {
        // One thread per image value (no atomics: deterministic sums).
        let Some(n) = self.conv_int(g.in_dim(), "col2im") else {
            return;
        };
        if n == 0
            || self
                .conv_int(g.in_channels * g.out_spatial(), "col2im")
                .is_none()
        {
            return;
        }
        let (cp, xp) = (self.ptr(&col), self.ptr_mut(&x));
        if g.num_spatial_axes() == 2 {
            let Some(geo) = self.conv_2d_args(g) else {
                return;
            };
            let Some(channels) = self.conv_int(g.in_channels, "col2im") else {
                return;
            };
            // rc_col2im: n, col, height, width, channels, then kernel_h...
            let mut args = vec![KArg::I32(n), cp, geo[0], geo[1], KArg::I32(channels)];
            args.extend_from_slice(&geo[2..]);
            args.push(xp);
            self.launch("rc_col2im", elementwise(n as usize), &args);
        } else if let Some(gp) = self.conv_nd_geometry(g) {
            let args = [KArg::I32(n), cp, gp, xp];
            self.launch("rc_col2im_nd", elementwise(n as usize), &args);
        }
    }

    /// The generic passes' column buffer and ones vector; on the cuDNN path
    /// the passes need no layer scratch (the workspace is the device's, and
    /// the plan is built here, in the layer's reshape), but Deconvolution's
    /// bias gradient (`conv_backward_bias`, generic) still needs a ones
    /// vector of the im2col side's spatial size, so at least that.
    fn conv_workspace_len(&self, g: &ConvGeometry, num: usize) -> usize {
        if Depthwise::new(g).is_some() {
            // The direct depthwise passes need none; the bias gradient's
            // ones vector, as below.
            return g.in_spatial().max(g.out_spatial());
        }
        if Self::conv_uses_cudnn(g) {
            if num > 0 {
                self.with_plan(g, num, "planning", |_, _, _| Ok(()));
            }
            g.in_spatial().max(g.out_spatial())
        } else {
            (g.col_len() + g.out_spatial()).max(g.in_spatial())
        }
    }

    fn conv_forward(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        w: View,
        bias: Option<View>,
        y: ViewMut,
        ws: ViewMut,
    ) {
        if let Some(k) = Depthwise::new(g) {
            return self.depthwise_forward(&k, num, x, w, bias, y);
        }
        if !Self::conv_uses_cudnn(g) {
            return generic::conv_forward(self, g, num, x, w, bias, y, ws);
        }
        if num == 0 || g.out_dim() == 0 {
            return;
        }
        let (xp, wp, yp) = (self.raw(&x), self.raw(&w), self.raw_mut(&y));
        let bp = bias.map(|b| self.raw(&b));
        self.with_plan(g, num, "the cuDNN convolution forward", |h, p, wsp| {
            // SAFETY: the views hold the geometry's num·in_dim, weight_len
            // and num·out_dim values (the ConvOps contract), which the
            // plan's descriptors describe; the workspace holds at least
            // the chosen algorithm's bytes; scalars are host f32s.
            unsafe {
                dnn::convolution_forward(
                    h,
                    scalar(&ONE),
                    p.x.0,
                    vp(xp),
                    p.w.0,
                    vp(wp),
                    p.conv.0,
                    p.fwd.algo,
                    wsp,
                    p.fwd.bytes,
                    scalar(&ZERO),
                    p.y.0,
                    vp_mut(yp),
                )?;
                if let Some(bp) = bp {
                    // y += bias broadcast over images and positions.
                    dsys::cudnnAddTensor(
                        h,
                        scalar(&ONE),
                        p.bias.0,
                        vp(bp),
                        scalar(&ONE),
                        p.y.0,
                        vp_mut(yp),
                    )
                    .result()?;
                }
            }
            Ok(())
        });
    }

    fn conv_backward_data(
        &self,
        g: &ConvGeometry,
        num: usize,
        dy: View,
        w: View,
        dx: ViewMut,
        ws: ViewMut,
    ) {
        if let Some(k) = Depthwise::new(g) {
            return self.depthwise_backward_data(&k, num, dy, w, dx);
        }
        if !Self::conv_uses_cudnn(g) {
            return generic::conv_backward_data(self, g, num, dy, w, dx, ws);
        }
        if num == 0 || g.in_dim() == 0 {
            return;
        }
        let (dyp, wp, dxp) = (self.raw(&dy), self.raw(&w), self.raw_mut(&dx));
        self.with_plan(
            g,
            num,
            "the cuDNN convolution backward-data",
            |h, p, wsp| {
                // SAFETY: as in conv_forward; beta = 0 overwrites dx without
                // reading it.
                unsafe {
                    dnn::convolution_backward_data(
                        h,
                        scalar(&ONE),
                        p.w.0,
                        vp(wp),
                        p.y.0,
                        vp(dyp),
                        p.conv.0,
                        p.bwd_data.algo,
                        wsp,
                        p.bwd_data.bytes,
                        scalar(&ZERO),
                        p.x.0,
                        vp_mut(dxp),
                    )
                }
            },
        );
    }

    fn conv_backward_filter(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        dy: View,
        dw: ViewMut,
        ws: ViewMut,
    ) {
        if let Some(k) = Depthwise::new(g) {
            return self.depthwise_backward_filter(&k, num, x, dy, dw);
        }
        if !Self::conv_uses_cudnn(g) {
            return generic::conv_backward_filter(self, g, num, x, dy, dw, ws);
        }
        if num == 0 || g.weight_len() == 0 {
            return;
        }
        let (xp, dyp, dwp) = (self.raw(&x), self.raw(&dy), self.raw_mut(&dw));
        self.with_plan(
            g,
            num,
            "the cuDNN convolution backward-filter",
            |h, p, wsp| {
                // SAFETY: as in conv_forward; beta = 1 accumulates into dw.
                unsafe {
                    dnn::convolution_backward_filter(
                        h,
                        scalar(&ONE),
                        p.x.0,
                        vp(xp),
                        p.y.0,
                        vp(dyp),
                        p.conv.0,
                        p.bwd_filter.algo,
                        wsp,
                        p.bwd_filter.bytes,
                        scalar(&ONE),
                        p.w.0,
                        vp_mut(dwp),
                    )
                }
            },
        );
    }

    fn conv_backward_filter_bias(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        dy: View,
        dw: ViewMut,
        mut db: ViewMut,
        mut ws: ViewMut,
    ) {
        if Depthwise::new(g).is_some() || !Self::conv_uses_cudnn(g) {
            // Generic or depthwise: conv_backward_filter dispatches.
            let (c, s) = (g.out_channels, g.out_spatial());
            self.conv_backward_bias(num, c, s, dy, db.rb(), ws.rb());
            return self.conv_backward_filter(g, num, x, dy, dw, ws);
        }
        if num > 0 && g.out_channels > 0 {
            let (dyp, dbp) = (self.raw(&dy), self.raw_mut(&db));
            self.with_plan(g, num, "the cuDNN convolution backward-bias", |h, p, _| {
                // SAFETY: dy holds num·out_dim values (the plan's y), db
                // out_channels (its bias descriptor); beta = 1 accumulates.
                unsafe {
                    dsys::cudnnConvolutionBackwardBias(
                        h,
                        scalar(&ONE),
                        p.y.0,
                        vp(dyp),
                        scalar(&ONE),
                        p.bias.0,
                        vp_mut(dbp),
                    )
                    .result()
                }
            });
        }
        self.conv_backward_filter(g, num, x, dy, dw, ws);
    }
}
