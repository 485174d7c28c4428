//! The library's error type. Every variant carries enough context (file,
//! line/column, layer, blob, shapes) for a user to find the problem without a
//! debugger; the CLI prints it as one line and exits non-zero.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A text-format file that does not parse: `path:line:col: what was expected`.
    #[error("{path}:{line}:{col}: {msg}")]
    Parse {
        path: String,
        line: usize,
        col: usize,
        msg: String,
    },
    /// A binary or data file that is not what it claims to be.
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    /// An I/O failure on a named file.
    /// (The io::Error is part of the message, not a `source`, so the CLI's
    /// one-line report does not repeat it.)
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    /// A net that cannot be built (unknown bottom, duplicate top, shape mismatch ...).
    #[error("{0}")]
    Net(String),
    /// An error raised by one layer; `Net` adds the layer's name and type once.
    #[error("layer '{layer}' (type {ty}): {msg}")]
    Layer {
        layer: String,
        ty: String,
        msg: String,
    },
    /// Bad solver settings or solver state.
    #[error("{0}")]
    Solver(String),
    /// A data source problem (missing database, corrupt record ...).
    #[error("{0}")]
    Data(String),
    /// A requested device or backend is not usable.
    #[error("{0}")]
    Device(String),
    /// Training stopped on purpose (signal) or because a value went non-finite.
    #[error("{0}")]
    Stopped(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            err,
        }
    }
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().display().to_string(),
            msg: msg.into(),
        }
    }
    pub fn layer(msg: impl Into<String>) -> Self {
        // The Net fills in name and type (see `Error::in_layer`).
        Error::Layer {
            layer: String::new(),
            ty: String::new(),
            msg: msg.into(),
        }
    }
    /// Append context (e.g. where a layer's bottoms came from) to the message.
    pub fn with_context(self, ctx: &str) -> Self {
        if ctx.is_empty() {
            return self;
        }
        match self {
            Error::Layer { layer, ty, msg } => Error::Layer {
                layer,
                ty,
                msg: format!("{msg} [{ctx}]"),
            },
            Error::Net(m) => Error::Net(format!("{m} [{ctx}]")),
            other => other,
        }
    }
    /// Attach a layer's name and type to an error raised inside it.
    pub fn in_layer(self, name: &str, ty: &str) -> Self {
        match self {
            Error::Layer { layer, msg, .. } if layer.is_empty() => Error::Layer {
                layer: name.to_string(),
                ty: ty.to_string(),
                msg,
            },
            Error::Layer { .. } => self,
            other => Error::Layer {
                layer: name.to_string(),
                ty: ty.to_string(),
                msg: other.to_string(),
            },
        }
    }
}

/// Build an `Error::Layer` with `format!` syntax (the Net adds name and type).
#[macro_export]
macro_rules! layer_err {
    ($($t:tt)*) => { $crate::error::Error::layer(format!($($t)*)) };
}
