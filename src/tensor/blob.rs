//! `Blob`: an N-d array with a `data` and a `diff` buffer, as in Caffe.
use crate::backend::{Buffer, Math};
use crate::error::{Error, Result};
use crate::proto::caffe::{BlobProto, BlobShape};

use super::shape::{count, shape_string, MAX_BLOB_AXES};

#[derive(Debug, Clone, Default)]
pub struct Blob {
    shape: Vec<usize>,
    count: usize,
    pub data: Buffer,
    pub diff: Buffer,
}

impl Blob {
    /// A zero-filled blob on `be`'s device.
    pub fn new(be: &dyn Math, shape: &[usize]) -> Self {
        let n = count(shape);
        Blob {
            shape: shape.to_vec(),
            count: n,
            data: be.alloc(n),
            diff: be.alloc(n),
        }
    }

    /// A host blob holding `values` (tests, loaders).
    pub fn from_host(shape: &[usize], values: Vec<f32>) -> Self {
        let n = count(shape);
        assert_eq!(n, values.len(), "values do not fit shape {shape:?}");
        Blob {
            shape: shape.to_vec(),
            count: n,
            data: Buffer::from_vec(values),
            diff: Buffer::host_zeros(n),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn num_axes(&self) -> usize {
        self.shape.len()
    }
    pub fn count(&self) -> usize {
        self.count
    }
    /// `shape[axis]` with Caffe's canonical (negative) axis.
    pub fn dim(&self, axis: i32) -> usize {
        let n = self.shape.len() as i32;
        self.shape[if axis < 0 { axis + n } else { axis } as usize]
    }
    /// Product of `shape[start..end]`.
    pub fn count_range(&self, start: usize, end: usize) -> usize {
        self.shape[start..end].iter().product()
    }
    /// Product of `shape[start..]`.
    pub fn count_from(&self, start: usize) -> usize {
        self.shape[start..].iter().product()
    }
    /// Caffe's LegacyShape: num/channels/height/width, 1 for missing axes.
    pub fn legacy_dim(&self, i: usize) -> usize {
        self.shape.get(i).copied().unwrap_or(1)
    }
    pub fn shape_string(&self) -> String {
        shape_string(&self.shape)
    }

    /// Change the shape; memory grows only when the new count exceeds the
    /// capacity (Caffe's rule), and stays on the same device.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        if shape.len() > MAX_BLOB_AXES {
            return Err(Error::layer(format!(
                "blob shape has {} axes; at most {MAX_BLOB_AXES} are allowed",
                shape.len()
            )));
        }
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= i32::MAX as usize)
            .ok_or_else(|| Error::layer(format!("blob size overflow for shape {shape:?}")))?;
        self.shape = shape.to_vec();
        self.count = n;
        self.data.ensure_len(n);
        self.diff.ensure_len(n);
        Ok(())
    }

    pub fn reshape_like(&mut self, other: &Blob) -> Result<()> {
        self.reshape(&other.shape.clone())
    }

    /// The data values, copied to the host.
    pub fn data_vec(&self) -> Vec<f32> {
        self.data.read(self.count)
    }
    /// The diff values, copied to the host.
    pub fn diff_vec(&self) -> Vec<f32> {
        self.diff.read(self.count)
    }
    pub fn set_data(&mut self, values: &[f32]) -> Result<()> {
        if values.len() != self.count {
            return Err(Error::layer(format!(
                "{} values given for a blob of shape {}",
                values.len(),
                self.shape_string()
            )));
        }
        self.data.write(values);
        Ok(())
    }
    pub fn set_diff(&mut self, values: &[f32]) -> Result<()> {
        if values.len() != self.count {
            return Err(Error::layer(format!(
                "{} diff values given for a blob of shape {}",
                values.len(),
                self.shape_string()
            )));
        }
        self.diff.write(values);
        Ok(())
    }

    /// Caffe's ShapeEquals: a legacy (num/channels/height/width) proto
    /// matches when this blob has ≤ 4 axes whose 1-padded legacy dims agree.
    pub fn shape_equals(&self, proto: &BlobProto) -> bool {
        if proto.num.is_some()
            || proto.channels.is_some()
            || proto.height.is_some()
            || proto.width.is_some()
        {
            let n = self.shape.len();
            let legacy = |i: usize| -> usize {
                // LegacyShape(i) counts from the end for i in -4..-1.
                let idx = n as i64 - 4 + i as i64;
                if idx < 0 {
                    1
                } else {
                    self.shape[idx as usize]
                }
            };
            return n <= 4
                && legacy(0) as i64 == proto.num() as i64
                && legacy(1) as i64 == proto.channels() as i64
                && legacy(2) as i64 == proto.height() as i64
                && legacy(3) as i64 == proto.width() as i64;
        }
        let dims = proto
            .shape
            .as_ref()
            .map(|s| s.dim.as_slice())
            .unwrap_or(&[]);
        dims.len() == self.shape.len() && dims.iter().zip(&self.shape).all(|(&a, &b)| a == b as i64)
    }

    /// The shape a `BlobProto` describes (legacy 4-D fields or `shape.dim`).
    pub fn proto_shape(proto: &BlobProto) -> Result<Vec<usize>> {
        if proto.num.is_some()
            || proto.channels.is_some()
            || proto.height.is_some()
            || proto.width.is_some()
        {
            let dims = [proto.num(), proto.channels(), proto.height(), proto.width()];
            if dims.iter().any(|&d| d < 0) {
                return Err(Error::Other(format!("negative legacy blob dims {dims:?}")));
            }
            return Ok(dims.iter().map(|&d| d as usize).collect());
        }
        let dims = proto
            .shape
            .as_ref()
            .map(|s| s.dim.as_slice())
            .unwrap_or(&[]);
        if dims.iter().any(|&d| d < 0 || d > i32::MAX as i64) {
            return Err(Error::Other(format!("invalid blob dims {dims:?}")));
        }
        Ok(dims.iter().map(|&d| d as usize).collect())
    }

    /// Blob::FromProto with `reshape`: take the proto's shape and values
    /// (double_data preferred, like Caffe; diff only if present).
    pub fn from_proto(be: &dyn Math, proto: &BlobProto) -> Result<Blob> {
        let shape = Self::proto_shape(proto)?;
        let mut b = Blob::new(be, &shape);
        b.copy_from_proto(proto)?;
        Ok(b)
    }

    /// Copy values from a proto whose shape was already checked.
    pub fn copy_from_proto(&mut self, proto: &BlobProto) -> Result<()> {
        let n = self.count;
        if !proto.double_data.is_empty() {
            if proto.double_data.len() != n {
                return Err(Error::Other(format!(
                    "blob proto holds {} values, expected {n}",
                    proto.double_data.len()
                )));
            }
            let v: Vec<f32> = proto.double_data.iter().map(|&d| d as f32).collect();
            self.data.write(&v);
        } else {
            if proto.data.len() != n {
                return Err(Error::Other(format!(
                    "blob proto holds {} values, expected {n}",
                    proto.data.len()
                )));
            }
            self.data.write(&proto.data);
        }
        if !proto.double_diff.is_empty() && proto.double_diff.len() == n {
            let v: Vec<f32> = proto.double_diff.iter().map(|&d| d as f32).collect();
            self.diff.write(&v);
        } else if proto.diff.len() == n && n > 0 {
            self.diff.write(&proto.diff);
        }
        Ok(())
    }

    /// Blob::ToProto: `shape.dim` + float data (+ diff when asked).
    pub fn to_proto(&self, write_diff: bool) -> BlobProto {
        BlobProto {
            // Caffe's ToProto adds dims one by one: a 0-axis blob has no shape.
            shape: (!self.shape.is_empty()).then(|| BlobShape {
                dim: self.shape.iter().map(|&d| d as i64).collect(),
            }),
            data: self.data_vec(),
            diff: if write_diff {
                self.diff_vec()
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }
}
