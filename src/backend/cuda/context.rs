//! One GPU: the probed libraries, cudarc's context (the device's primary
//! context) and the stream all work of this device is queued on.
use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute as A;
use cudarc::driver::{CudaContext, CudaStream};

use super::error::{code_name, driver, guard, CudaError, CudaResult};
use super::probe::{self, Found, Lib};

/// Parse Caffe's `--gpu` flag: comma-separated ids or `all` (every device
/// the driver sees). Like Caffe's lexical_cast, `0, 1` (with a space) is
/// an error. Does not touch the GPU unless the flag is `all`.
pub fn parse_gpu_flag(flag: &str) -> CudaResult<Vec<usize>> {
    if flag == "all" {
        let n = device_count()?;
        return Ok((0..n).collect());
    }
    flag.split(',')
        .map(|s| {
            s.parse::<usize>().map_err(|_| {
                CudaError::Unusable(format!(
                    "invalid --gpu {flag:?}: expected comma-separated device ids (e.g. 0 or \
                     0,1) or `all`"
                ))
            })
        })
        .collect()
}

/// How many GPUs the driver sees (after CUDA_VISIBLE_DEVICES). Probes the
/// driver library first; no GPU at all is an error that says so.
pub fn device_count() -> CudaResult<usize> {
    probe::require(&[Lib::Driver])?;
    let n = guard("counting the GPUs", || {
        CudaContext::device_count().map_err(|e| {
            CudaError::Unusable(format!(
                "the NVIDIA driver loads but cuInit failed with {} (no GPU visible, or \
                 the driver library and kernel module disagree); check `nvidia-smi` and \
                 CUDA_VISIBLE_DEVICES{}",
                code_name(&e),
                visible_devices_note()
            ))
        })
    })?;
    if n <= 0 {
        return Err(CudaError::Unusable(format!(
            "the NVIDIA driver sees no GPU{}",
            visible_devices_note()
        )));
    }
    Ok(n as usize)
}

fn visible_devices_note() -> String {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => format!(" (CUDA_VISIBLE_DEVICES={v:?})"),
        Err(_) => String::new(),
    }
}

/// Caffe's `DeviceQuery` properties (cudaDeviceProp fields it logs).
#[derive(Debug, Clone)]
pub struct DeviceProperties {
    pub ordinal: usize,
    pub major: i32,
    pub minor: i32,
    pub name: String,
    pub total_global_mem: usize,
    pub shared_mem_per_block: i32,
    pub regs_per_block: i32,
    pub warp_size: i32,
    pub mem_pitch: i32,
    pub max_threads_per_block: i32,
    pub max_block_dim: [i32; 3],
    pub max_grid_dim: [i32; 3],
    /// kHz, as cudaDeviceProp::clockRate.
    pub clock_rate: i32,
    pub total_const_mem: i32,
    pub texture_alignment: i32,
    pub concurrent_copy: bool,
    pub multiprocessors: i32,
    pub kernel_timeout: bool,
}

impl DeviceProperties {
    /// Caffe's lines (`Caffe::DeviceQuery`), each label padded to column 31.
    pub fn caffe_lines(&self) -> Vec<String> {
        let yn = |b: bool| if b { "Yes" } else { "No" }.to_string();
        let d3 = |d: [i32; 3]| format!("{}, {}, {}", d[0], d[1], d[2]);
        [
            ("Device id:", self.ordinal.to_string()),
            ("Major revision number:", self.major.to_string()),
            ("Minor revision number:", self.minor.to_string()),
            ("Name:", self.name.clone()),
            ("Total global memory:", self.total_global_mem.to_string()),
            (
                "Total shared memory per block:",
                self.shared_mem_per_block.to_string(),
            ),
            (
                "Total registers per block:",
                self.regs_per_block.to_string(),
            ),
            ("Warp size:", self.warp_size.to_string()),
            ("Maximum memory pitch:", self.mem_pitch.to_string()),
            (
                "Maximum threads per block:",
                self.max_threads_per_block.to_string(),
            ),
            ("Maximum dimension of block:", d3(self.max_block_dim)),
            ("Maximum dimension of grid:", d3(self.max_grid_dim)),
            ("Clock rate:", self.clock_rate.to_string()),
            ("Total constant memory:", self.total_const_mem.to_string()),
            ("Texture alignment:", self.texture_alignment.to_string()),
            ("Concurrent copy and execution:", yn(self.concurrent_copy)),
            (
                "Number of multiprocessors:",
                self.multiprocessors.to_string(),
            ),
            ("Kernel execution timeout:", yn(self.kernel_timeout)),
        ]
        .into_iter()
        .map(|(l, v)| format!("{l:<31}{v}"))
        .collect()
    }
}

/// An opened GPU.
pub struct CudaDevice {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    /// The stream every operation of this device runs on, in order.
    pub stream: Arc<CudaStream>,
    /// The libraries found for it (for logs and `device_query`).
    pub libs: Vec<Found>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .finish()
    }
}

impl CudaDevice {
    /// Open GPU `ordinal`: probe every library one GPU needs (so a missing
    /// one is a clear error, not a panic in cudarc), check the device
    /// exists, then create the context and a stream.
    pub fn open(ordinal: usize) -> CudaResult<Self> {
        Self::open_with(ordinal, probe::SINGLE_DEVICE)
    }

    /// `open` requiring only `libs` (the driver always): `device_query`
    /// reads the properties with the driver alone, then reports the rest.
    pub fn open_with(ordinal: usize, libs: &[Lib]) -> CudaResult<Self> {
        let mut libs = libs.to_vec();
        if !libs.contains(&Lib::Driver) {
            libs.insert(0, Lib::Driver);
        }
        let libs = probe::require(&libs)?;
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::Unusable(format!(
                "GPU {ordinal} does not exist: the driver sees {count} GPU(s), ids 0..{}{}",
                count - 1,
                visible_devices_note()
            )));
        }
        let ctx = guard("creating the CUDA context", || {
            CudaContext::new(ordinal).map_err(driver("creating the CUDA context"))
        })?;
        let stream = guard("creating a CUDA stream", || {
            ctx.new_stream().map_err(driver("creating a CUDA stream"))
        })?;
        Ok(CudaDevice {
            ordinal,
            ctx,
            stream,
            libs,
        })
    }

    pub fn name(&self) -> CudaResult<String> {
        self.ctx.name().map_err(driver("reading the device name"))
    }

    /// `--gpu-architecture` for NVRTC: the device's own compute capability.
    pub fn nvrtc_arch(&self) -> CudaResult<String> {
        let (a, b) = self
            .ctx
            .compute_capability()
            .map_err(driver("reading the compute capability"))?;
        Ok(format!("compute_{a}{b}"))
    }

    pub fn properties(&self) -> CudaResult<DeviceProperties> {
        let at = |a: A| {
            self.ctx
                .attribute(a)
                .map_err(driver("reading a device attribute"))
        };
        Ok(DeviceProperties {
            ordinal: self.ordinal,
            major: at(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            minor: at(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
            name: self.name()?,
            total_global_mem: self
                .ctx
                .total_mem()
                .map_err(driver("reading the memory size"))?,
            shared_mem_per_block: at(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?,
            regs_per_block: at(A::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK)?,
            warp_size: at(A::CU_DEVICE_ATTRIBUTE_WARP_SIZE)?,
            mem_pitch: at(A::CU_DEVICE_ATTRIBUTE_MAX_PITCH)?,
            max_threads_per_block: at(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
            max_block_dim: [
                at(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X)?,
                at(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y)?,
                at(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z)?,
            ],
            max_grid_dim: [
                at(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?,
                at(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y)?,
                at(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z)?,
            ],
            clock_rate: at(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?,
            total_const_mem: at(A::CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY)?,
            texture_alignment: at(A::CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT)?,
            concurrent_copy: at(A::CU_DEVICE_ATTRIBUTE_GPU_OVERLAP)? != 0,
            multiprocessors: at(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            kernel_timeout: at(A::CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT)? != 0,
        })
    }

    /// Wait for all queued work.
    pub fn synchronize(&self) -> CudaResult<()> {
        self.stream
            .synchronize()
            .map_err(driver("waiting for the GPU"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_flag_parsing() {
        assert_eq!(parse_gpu_flag("0").unwrap(), vec![0]);
        assert_eq!(parse_gpu_flag("0,1").unwrap(), vec![0, 1]);
        // Caffe's lexical_cast rejects spaces.
        assert!(parse_gpu_flag("0, 1").is_err());
        assert!(parse_gpu_flag("x").is_err());
        assert!(parse_gpu_flag("").is_err());
    }

    #[test]
    fn caffe_property_lines() {
        let p = DeviceProperties {
            ordinal: 0,
            major: 9,
            minor: 0,
            name: "NVIDIA H200".into(),
            total_global_mem: 150_000_000_000,
            shared_mem_per_block: 49152,
            regs_per_block: 65536,
            warp_size: 32,
            mem_pitch: 2147483647,
            max_threads_per_block: 1024,
            max_block_dim: [1024, 1024, 64],
            max_grid_dim: [2147483647, 65535, 65535],
            clock_rate: 1980000,
            total_const_mem: 65536,
            texture_alignment: 512,
            concurrent_copy: true,
            multiprocessors: 132,
            kernel_timeout: false,
        };
        let l = p.caffe_lines();
        assert_eq!(l.len(), 18);
        // Caffe: LOG(INFO) << "Device id:                     " << device;
        assert_eq!(l[0], "Device id:                     0");
        assert_eq!(l[5], "Total shared memory per block: 49152");
        assert_eq!(l[10], "Maximum dimension of block:    1024, 1024, 64");
        assert_eq!(l[15], "Concurrent copy and execution: Yes");
        assert_eq!(l[17], "Kernel execution timeout:      No");
    }
}
