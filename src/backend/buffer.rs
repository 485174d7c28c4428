//! Device memory for f32 values. A `Buffer` knows where it lives, so a blob
//! can grow without being told which backend owns it. Only backends look
//! inside (`host`/`host_mut`); layers pass buffers to backend operations.

/// Where a buffer's memory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Host,
}

#[derive(Debug, Clone, Default)]
pub struct Buffer {
    host: Vec<f32>,
}

impl Buffer {
    /// A zero-filled host buffer (backends allocate through `Backend::alloc`).
    pub fn host_zeros(n: usize) -> Self {
        Buffer { host: vec![0.0; n] }
    }
    pub fn from_vec(v: Vec<f32>) -> Self {
        Buffer { host: v }
    }
    pub fn location(&self) -> Location {
        Location::Host
    }
    pub fn len(&self) -> usize {
        self.host.len()
    }
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }
    /// Grow to at least `n` values (new values are zero); never shrinks,
    /// like Caffe's capacity rule, so reshapes within capacity are free.
    pub fn ensure_len(&mut self, n: usize) {
        if n > self.host.len() {
            self.host.resize(n, 0.0);
        }
    }
    /// Copy the first `n` values to the host (a download on a device).
    pub fn read(&self, n: usize) -> Vec<f32> {
        self.host[..n].to_vec()
    }
    /// Overwrite the first `src.len()` values (an upload on a device).
    pub fn write(&mut self, src: &[f32]) {
        self.ensure_len(src.len());
        self.host[..src.len()].copy_from_slice(src);
    }
    /// Host view; `None` when the memory is on a device.
    pub fn host(&self) -> Option<&[f32]> {
        Some(&self.host)
    }
    pub fn host_mut(&mut self) -> Option<&mut [f32]> {
        Some(&mut self.host)
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
