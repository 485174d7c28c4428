//! Shape helpers with Caffe's rules (canonical axes, counts, printing).
use crate::error::{Error, Result};

/// Caffe's kMaxBlobAxes.
pub const MAX_BLOB_AXES: usize = 32;

/// Number of elements of a shape (1 for a 0-axis scalar).
pub fn count(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Product of `shape[start..end]`.
pub fn count_range(shape: &[usize], start: usize, end: usize) -> usize {
    shape[start..end].iter().product()
}

/// Caffe's CanonicalAxisIndex: negative axes count from the end.
pub fn canonical_axis(axis: i32, num_axes: usize) -> Result<usize> {
    let n = num_axes as i32;
    if axis < -n || axis >= n {
        return Err(Error::layer(format!(
            "axis {axis} out of range for {num_axes}-D blob"
        )));
    }
    Ok(if axis < 0 {
        (axis + n) as usize
    } else {
        axis as usize
    })
}

/// Caffe's shape_string: `"2 3 4 5 (120)"`.
pub fn shape_string(shape: &[usize]) -> String {
    let mut s = String::new();
    for d in shape {
        s.push_str(&d.to_string());
        s.push(' ');
    }
    s.push_str(&format!("({})", count(shape)));
    s
}
