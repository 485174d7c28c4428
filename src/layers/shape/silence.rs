//! Silence: consumes its bottoms (so they are not net outputs); backward
//! zeroes their diffs.
use crate::error::Result;
use crate::layers::{Arity, Ctx, Io, Layer};

#[derive(Debug)]
pub struct Silence;

impl Layer for Silence {
    fn type_name(&self) -> &'static str {
        "Silence"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(1),
            max_bottoms: None,
            min_tops: Some(0),
            max_tops: Some(0),
            equal_bottom_top: false,
        }
    }
    fn reshape(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<()> {
        Ok(())
    }
    fn forward(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<()> {
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        for (i, _) in propagate_down.iter().enumerate().filter(|(_, &p)| p) {
            let b = io.bottom_mut(i);
            let n = b.count();
            cx.be.set(n, 0.0, b.diff.view_mut());
        }
        Ok(())
    }
}
