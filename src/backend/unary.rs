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
    /// x if x > 0 else alpha·(eˣ − 1)
    ELU {
        alpha: f32,
    },
    /// |x|
    AbsVal,
    /// log(1 + eˣ), in Caffe's overflow-safe form
    BNLL,
    /// (shift + scale·x)^power
    Power {
        power: f32,
        scale: f32,
        shift: f32,
    },
    /// outer · exp(inner · x): Caffe's ExpLayer with `inner = ln(base)·scale`
    /// and `outer = base^shift` precomputed by the layer.
    Exp {
        inner: f32,
        outer: f32,
    },
    /// base_scale · ln(shift + scale·x), with `base_scale = 1/ln(base)` and
    /// `back_scale = scale/ln(base)` precomputed by the layer.
    Log {
        scale: f32,
        shift: f32,
        base_scale: f32,
        back_scale: f32,
    },
    /// 1 if x > threshold else 0. Forward only: its layer refuses backward,
    /// as Caffe's does; the formula below gives the a.e. derivative 0.
    Threshold {
        threshold: f32,
    },
    /// max(min, min(x, max))
    Clip {
        min: f32,
        max: f32,
    },
    /// x · sigmoid(beta·x)
    Swish {
        beta: f32,
    },
    /// √x
    Sqrt,
}

/// C++'s `std::max(a, b)`: `a < b ? b : a` (NaN handling differs from `f32::max`).
#[inline]
fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// C++'s `std::min(a, b)`: `b < a ? b : a`.
#[inline]
fn cmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// Caffe's CPU sigmoid, `0.5·tanh(0.5·x) + 0.5`, evaluated in double as
/// its C++ promotes it.
#[inline]
fn sigmoid_f64(x: f32) -> f32 {
    (0.5 * (0.5 * x as f64).tanh() + 0.5) as f32
}

/// BNLL's backward clamps its input here (Caffe's kBNLL_THRESHOLD).
const BNLL_THRESHOLD: f32 = 50.0;

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
            // The expressions follow Caffe's CPU code (operation order and
            // float/double promotions) so results agree to the last bits.
            Unary::ELU { alpha } => cmax(x, 0.0) + alpha * (cmin(x, 0.0).exp() - 1.0),
            Unary::AbsVal => x.abs(),
            Unary::BNLL => {
                if x > 0.0 {
                    (x as f64 + (1.0 + (-x).exp() as f64).ln()) as f32
                } else {
                    (1.0 + x.exp() as f64).ln() as f32
                }
            }
            Unary::Power {
                power,
                scale,
                shift,
            } => {
                if power * scale == 0.0 {
                    // The input is ignored: a constant output.
                    return if power == 0.0 { 1.0 } else { shift.powf(power) };
                }
                let mut t = x;
                if scale != 1.0 {
                    t *= scale;
                }
                if shift != 0.0 {
                    t += shift;
                }
                if power != 1.0 {
                    t = t.powf(power);
                }
                t
            }
            Unary::Exp { inner, outer } => {
                let mut y = if inner == 1.0 {
                    x.exp()
                } else {
                    (inner * x).exp()
                };
                if outer != 1.0 {
                    y *= outer;
                }
                y
            }
            Unary::Log {
                scale,
                shift,
                base_scale,
                ..
            } => {
                let mut t = x;
                if scale != 1.0 {
                    t *= scale;
                }
                if shift != 0.0 {
                    t += shift;
                }
                let mut y = t.ln();
                if base_scale != 1.0 {
                    y *= base_scale;
                }
                y
            }
            Unary::Threshold { threshold } => {
                if x > threshold {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::Clip { min, max } => cmax(min, cmin(x, max)),
            Unary::Swish { beta } => x * sigmoid_f64(beta * x),
            Unary::Sqrt => x.sqrt(),
        }
    }

    /// Whether `backward` needs the true bottom value `x`. In-place layers
    /// only have `y` (the bottom was overwritten), so for these ops they keep
    /// a copy of the input; the others take `x = y` as Caffe's in-place
    /// layers do (exact for ReLU with slope ≥ 0, Sigmoid, TanH, Exp, Sqrt,
    /// and ELU with alpha ≥ 0, where x > 0 iff y > 0).
    pub fn grad_needs_input(self) -> bool {
        match self {
            Unary::ReLU { .. } | Unary::Sigmoid | Unary::TanH => false,
            Unary::ELU { alpha } => alpha < 0.0,
            Unary::Power { power, scale, .. } => !(power == 1.0 || power * scale == 0.0),
            Unary::Exp { .. } | Unary::Threshold { .. } | Unary::Sqrt => false,
            Unary::AbsVal
            | Unary::BNLL
            | Unary::Log { .. }
            | Unary::Clip { .. }
            | Unary::Swish { .. } => true,
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
            Unary::ELU { alpha } => {
                if x > 0.0 {
                    dy
                } else {
                    dy * (alpha + y)
                }
            }
            // Caffe: sign(x)·dy with sign(0) = 0.
            Unary::AbsVal => {
                let s = if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                s * dy
            }
            Unary::BNLL => {
                let e = cmin(x, BNLL_THRESHOLD).exp();
                ((dy * e) as f64 / (e as f64 + 1.0)) as f32
            }
            Unary::Power {
                power,
                scale,
                shift,
            } => {
                let diff_scale = power * scale;
                let t = if diff_scale == 0.0 || power == 1.0 {
                    diff_scale
                } else if power == 2.0 {
                    // 2·scale·(shift + scale·x), as Caffe's axpby + add_scalar.
                    let mut t = diff_scale * scale * x;
                    if shift != 0.0 {
                        t += diff_scale * shift;
                    }
                    t
                } else if shift == 0.0 {
                    // power·y/x
                    (y / x) * power
                } else {
                    let mut t = x;
                    if scale != 1.0 {
                        t *= scale;
                    }
                    t += shift;
                    t = y / t;
                    if diff_scale != 1.0 {
                        t *= diff_scale;
                    }
                    t
                };
                dy * t
            }
            Unary::Exp { inner, .. } => {
                let d = y * dy;
                if inner != 1.0 {
                    d * inner
                } else {
                    d
                }
            }
            Unary::Log {
                scale,
                shift,
                back_scale,
                ..
            } => {
                let mut t = x;
                if scale != 1.0 {
                    t *= scale;
                }
                if shift != 0.0 {
                    t += shift;
                }
                t = t.powf(-1.0);
                if back_scale != 1.0 {
                    t *= back_scale;
                }
                dy * t
            }
            Unary::Threshold { .. } => 0.0,
            // The gradient passes on the closed interval, bounds included.
            Unary::Clip { min, max } => {
                if x >= min && x <= max {
                    dy
                } else {
                    0.0
                }
            }
            Unary::Swish { beta } => {
                let by = beta * y;
                let t = by as f64 + sigmoid_f64(beta * x) as f64 * (1.0 - by as f64);
                (dy as f64 * t) as f32
            }
            Unary::Sqrt => dy * 0.5 / y,
        }
    }
}
