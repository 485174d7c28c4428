//! Device memory for f32 values. A `Buffer` knows where it lives, so a blob
//! can grow without being told which backend owns it. Only backends look
//! inside (`host`/`host_mut`, `device`/`device_mut`); layers pass buffers to
//! backend operations.
use std::any::Any;

/// Where a buffer's memory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Host,
    /// On a GPU (its ordinal).
    Device(usize),
}

/// Memory owned by a device backend (the CUDA backend's `CudaStorage`).
/// `Buffer` routes its size, growth and transfers here; the backend
/// downcasts through `as_any` to reach its own type.
pub trait DeviceStorage: std::fmt::Debug + Send + Sync {
    fn ordinal(&self) -> usize;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Grow to at least `n` values, new ones zero, keeping the old ones.
    fn grow(&mut self, n: usize);
    /// Download the first `n` values.
    fn read(&self, n: usize) -> Vec<f32>;
    /// Upload `src` to the first `src.len()` values (grown first).
    fn write(&mut self, src: &[f32]);
    /// A device-side copy.
    fn clone_storage(&self) -> Box<dyn DeviceStorage>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

#[derive(Debug, Default)]
pub struct Buffer {
    host: Vec<f32>,
    /// Set for device memory (`host` is then empty and unused).
    device: Option<Box<dyn DeviceStorage>>,
}

impl Clone for Buffer {
    fn clone(&self) -> Self {
        Buffer {
            host: self.host.clone(),
            device: self.device.as_ref().map(|d| d.clone_storage()),
        }
    }
}

impl Buffer {
    /// A zero-filled host buffer (backends allocate through `Backend::alloc`).
    pub fn host_zeros(n: usize) -> Self {
        Buffer::from_vec(vec![0.0; n])
    }
    pub fn from_vec(v: Vec<f32>) -> Self {
        Buffer {
            host: v,
            device: None,
        }
    }
    /// A buffer in device memory (device backends' `alloc`).
    pub fn from_device(storage: Box<dyn DeviceStorage>) -> Self {
        Buffer {
            host: Vec::new(),
            device: Some(storage),
        }
    }
    pub fn location(&self) -> Location {
        match &self.device {
            Some(d) => Location::Device(d.ordinal()),
            None => Location::Host,
        }
    }
    pub fn len(&self) -> usize {
        match &self.device {
            Some(d) => d.len(),
            None => self.host.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Grow to at least `n` values (new values are zero); never shrinks,
    /// like Caffe's capacity rule, so reshapes within capacity are free.
    pub fn ensure_len(&mut self, n: usize) {
        match &mut self.device {
            Some(d) => {
                if n > d.len() {
                    d.grow(n);
                }
            }
            None => {
                if n > self.host.len() {
                    self.host.resize(n, 0.0);
                }
            }
        }
    }
    /// Copy the first `n` values to the host (a download on a device).
    pub fn read(&self, n: usize) -> Vec<f32> {
        match &self.device {
            Some(d) => d.read(n),
            None => self.host[..n].to_vec(),
        }
    }
    /// Overwrite the first `src.len()` values (an upload on a device).
    pub fn write(&mut self, src: &[f32]) {
        self.ensure_len(src.len());
        match &mut self.device {
            Some(d) => d.write(src),
            None => self.host[..src.len()].copy_from_slice(src),
        }
    }
    /// Host view; `None` when the memory is on a device.
    pub fn host(&self) -> Option<&[f32]> {
        match self.device {
            Some(_) => None,
            None => Some(&self.host),
        }
    }
    pub fn host_mut(&mut self) -> Option<&mut [f32]> {
        match self.device {
            Some(_) => None,
            None => Some(&mut self.host),
        }
    }
    /// The device memory; `None` for host buffers.
    pub fn device(&self) -> Option<&dyn DeviceStorage> {
        self.device.as_deref()
    }
    pub fn device_mut(&mut self) -> Option<&mut (dyn DeviceStorage + 'static)> {
        self.device.as_deref_mut()
    }
    /// A read view starting at `off`.
    pub fn at(&self, off: usize) -> View<'_> {
        View { buf: self, off }
    }
    /// A write view starting at `off`.
    pub fn at_mut(&mut self, off: usize) -> ViewMut<'_> {
        ViewMut { buf: self, off }
    }
    pub fn view(&self) -> View<'_> {
        self.at(0)
    }
    pub fn view_mut(&mut self) -> ViewMut<'_> {
        self.at_mut(0)
    }
}

/// `buf[off..]`, read-only: how layers address `data + n * dim` without copies.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub buf: &'a Buffer,
    pub off: usize,
}

/// `buf[off..]`, writable.
pub struct ViewMut<'a> {
    pub buf: &'a mut Buffer,
    pub off: usize,
}

impl<'a> View<'a> {
    /// The host slice `[off, off+n)`. Backend code only.
    pub fn host(&self, n: usize) -> &'a [f32] {
        let h = self.buf.host().expect("host view of a device buffer");
        &h[self.off..self.off + n]
    }
    pub fn host_rest(&self) -> &'a [f32] {
        let h = self.buf.host().expect("host view of a device buffer");
        &h[self.off..]
    }
}

impl ViewMut<'_> {
    /// The host slice `[off, off+n)`. Backend code only.
    pub fn host(&mut self, n: usize) -> &mut [f32] {
        let off = self.off;
        let h = self.buf.host_mut().expect("host view of a device buffer");
        &mut h[off..off + n]
    }
    pub fn host_rest(&mut self) -> &mut [f32] {
        let off = self.off;
        let h = self.buf.host_mut().expect("host view of a device buffer");
        &mut h[off..]
    }
    /// Reborrow, so one `ViewMut` can be passed to several calls.
    pub fn rb(&mut self) -> ViewMut<'_> {
        ViewMut {
            buf: self.buf,
            off: self.off,
        }
    }
    pub fn as_view(&self) -> View<'_> {
        View {
            buf: self.buf,
            off: self.off,
        }
    }
}
