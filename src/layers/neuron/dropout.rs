//! Dropout (inverted): in TRAIN, `y = x · mask / (1 − p)` with a Bernoulli
//! mask generated on the backend from a seed drawn from the net's random
//! stream; in TEST, the identity.
use rand::Rng;

use crate::backend::Binary;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{LayerParameter, Phase};
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Dropout {
    /// Caffe's `uint_thres_`: an element is kept iff its random u32 exceeds it.
    threshold: u32,
    /// 1 / (1 − p), computed in double and stored as float (Caffe).
    scale: f32,
    /// The last TRAIN mask, pre-multiplied by `scale` (values 0 or scale).
    mask: Option<Blob>,
}

impl Dropout {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.dropout_param.as_ref().map_or(0.5, |d| d.dropout_ratio());
        if !(0.0..1.0).contains(&p) {
            return Err(layer_err!("dropout_ratio must be in [0, 1), got {p}"));
        }
        let p = p as f64;
        Ok(Dropout {
            threshold: (u32::MAX as f64 * p) as u32,
            scale: (1.0 / (1.0 - p)) as f32,
            mask: None,
        })
    }
}

impl Layer for Dropout {
    fn type_name(&self) -> &'static str {
        "Dropout"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        if !io.in_place(0, 0) {
            io.top_mut(0).reshape(&shape)?;
        }
        if cx.phase == Phase::Train {
            match &mut self.mask {
                Some(m) => m.reshape(&shape)?,
                None => self.mask = Some(Blob::new(&*cx.be, &shape)),
            }
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = io.bottom(0).count();
        if cx.phase != Phase::Train {
            if !io.in_place(0, 0) {
                let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
                cx.be.copy(n, x.data.view(), y.data.view_mut());
            }
            return Ok(());
        }
        let mask = self
            .mask
            .as_mut()
            .ok_or_else(|| layer_err!("forward before reshape"))?;
        // One draw per forward keeps runs reproducible under random_seed;
        // the mask itself is a function of (seed, index) on the backend.
        let seed: u64 = cx.rng.gen();
        cx.be
            .dropout_mask(n, seed, self.threshold, self.scale, mask.data.view_mut());
        if io.in_place(0, 0) {
            let y = io.top_mut(0);
            cx.be
                .binary_inplace(Binary::Mul, n, mask.data.view(), y.data.view_mut());
        } else {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            cx.be.binary(
                Binary::Mul,
                n,
                x.data.view(),
                mask.data.view(),
                y.data.view_mut(),
            );
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let n = io.bottom(0).count();
        let train = cx.phase == Phase::Train;
        if io.in_place(0, 0) {
            if train {
                let mask = self
                    .mask
                    .as_ref()
                    .ok_or_else(|| layer_err!("backward before forward"))?;
                let b = io.bottom_mut(0);
                cx.be
                    .binary_inplace(Binary::Mul, n, mask.data.view(), b.diff.view_mut());
            }
            return Ok(());
        }
        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        match (&self.mask, train) {
            (Some(mask), true) => cx.be.binary(
                Binary::Mul,
                n,
                y.diff.view(),
                mask.data.view(),
                x.diff.view_mut(),
            ),
            (None, true) => return Err(layer_err!("backward before forward")),
            (_, false) => cx.be.copy(n, y.diff.view(), x.diff.view_mut()),
        }
        Ok(())
    }
}
