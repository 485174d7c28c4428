//! Element-wise activations as data: each variant carries its parameters and
//! its scalar formula, used by the CPU backend and by test oracles (and, in the
//! CUDA backend, mapped to one kernel each). Adding an activation is one
//! variant here.

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    /// max(x,0) + slope·min(x,0)
    ReLU {
        slope: f32,
    },
    Sigmoid,
    TanH,
}

impl Unary {
    #[inline]
    pub fn forward(self, x: f32) -> f32 {
        match self {
            Unary::ReLU { slope } => {
                if x > 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Unary::Sigmoid => 0.5 * (0.5 * x).tanh() + 0.5,
            Unary::TanH => x.tanh(),
        }
    }

    /// dx from the bottom value `x`, the top value `y` and the top diff `dy`.
    /// In-place layers pass `x == y`; only variants whose gradient can be
    /// computed from `y` (see `inplace_ok`) may run in place.
    #[inline]
    pub fn backward(self, x: f32, y: f32, dy: f32) -> f32 {
        match self {
            // Caffe: dy * ((x > 0) + slope * (x <= 0)); with slope >= 0,
            // x > 0 iff y > 0, which is what makes in-place ReLU exact.
            Unary::ReLU { slope } => {
                if x > 0.0 {
                    dy
                } else {
                    dy * slope
                }
            }
            Unary::Sigmoid => dy * y * (1.0 - y),
            Unary::TanH => dy * (1.0 - y * y),
        }
    }
}
