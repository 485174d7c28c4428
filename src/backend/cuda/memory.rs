//! Device memory behind `Buffer`: a cudarc allocation on the device's
//! stream. Blobs grow through `DeviceStorage::grow` (Caffe's capacity rule,
//! a device-side copy of the old values), so a net never needs to know its
//! backend to reshape.
//!
//! `Buffer`'s memory API is infallible, so a failed allocation or transfer
//! here panics with the CUDA error (as an out-of-memory does in Caffe);
//! kernel launch errors are recorded in the context instead and reported by
//! the next `CudaBackend::check`/`synchronize`.
use std::any::Any;
use std::sync::Arc;

use cudarc::driver::{result, sys::CUdeviceptr, CudaSlice, CudaStream, DevicePtr};

use super::error::code_name;
use crate::backend::buffer::DeviceStorage;

pub struct CudaStorage {
    /// At least `len` values (one for an empty buffer).
    slice: CudaSlice<f32>,
    len: usize,
    stream: Arc<CudaStream>,
    ordinal: usize,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage(gpu {}, {} values)", self.ordinal, self.len)
    }
}

fn fail(what: &str, n: usize, e: cudarc::driver::DriverError) -> ! {
    panic!(
        "GPU memory error while {what} ({n} values, {} MiB): {}",
        (n * 4) >> 20,
        code_name(&e)
    )
}

impl CudaStorage {
    /// `n` zeros on `stream`'s device. An empty buffer still allocates one
    /// value so every storage has a valid base pointer.
    pub fn zeros(stream: &Arc<CudaStream>, ordinal: usize, n: usize) -> Self {
        let slice = stream
            .alloc_zeros::<f32>(n.max(1))
            .unwrap_or_else(|e| fail("allocating", n, e));
        CudaStorage {
            slice,
            len: n,
            stream: stream.clone(),
            ordinal,
        }
    }

    /// The device address of value `off`. Launches take raw addresses so a
    /// kernel can read and write the same buffer (in-place operations).
    pub fn ptr(&self, off: usize) -> CdPtr {
        let (p, _sync) = self.slice.device_ptr(&self.stream);
        debug_assert!(off <= self.len);
        p + (off * std::mem::size_of::<f32>()) as CUdeviceptr
    }

    /// The stream this memory's work is queued on (the device's one
    /// stream): collectives on the buffer (NCCL) must run on it too.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

/// A raw device address.
pub type CdPtr = CUdeviceptr;

impl DeviceStorage for CudaStorage {
    fn ordinal(&self) -> usize {
        self.ordinal
    }

    fn len(&self) -> usize {
        self.len
    }

    fn grow(&mut self, n: usize) {
        if n <= self.len {
            return;
        }
        if n <= self.slice.len() {
            // The placeholder value of an empty buffer is already zero.
            self.len = n;
            return;
        }
        let mut bigger = self
            .stream
            .alloc_zeros::<f32>(n)
            .unwrap_or_else(|e| fail("growing a buffer", n, e));
        let old = self.slice.len();
        self.stream
            .memcpy_dtod(&self.slice, &mut bigger.slice_mut(..old))
            .unwrap_or_else(|e| fail("copying a grown buffer", old, e));
        self.slice = bigger;
        self.len = n;
    }

    fn read(&self, n: usize) -> Vec<f32> {
        assert!(
            n <= self.len,
            "read of {n} values from a GPU buffer of {}",
            self.len
        );
        let mut out = vec![0f32; n];
        if n > 0 {
            let r = self
                .stream
                .memcpy_dtoh(&self.slice.slice(..n), &mut out)
                .and_then(|_| self.stream.synchronize());
            r.unwrap_or_else(|e| fail("downloading", n, e));
        }
        out
    }

    fn write(&mut self, src: &[f32]) {
        self.grow(src.len());
        if src.is_empty() {
            return;
        }
        let p = self.ptr(0);
        // SAFETY: the allocation holds at least src.len() values (grown
        // above); the host slice outlives the synchronize below, so the
        // asynchronous copy never reads freed memory.
        let r = unsafe { result::memcpy_htod_async(p, src, self.stream.cu_stream()) }
            .and_then(|_| self.stream.synchronize());
        r.unwrap_or_else(|e| fail("uploading", src.len(), e));
    }

    fn clone_storage(&self) -> Box<dyn DeviceStorage> {
        let copy = self
            .stream
            .clone_dtod(&self.slice)
            .unwrap_or_else(|e| fail("copying a buffer", self.slice.len(), e));
        Box::new(CudaStorage {
            slice: copy,
            len: self.len,
            stream: self.stream.clone(),
            ordinal: self.ordinal,
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
