//! Tile: repeats the block `[axis..]` of each outer index `tiles` times.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
pub struct Tile {
    axis: i32,
    tiles: usize,
    outer: usize,
    inner: usize,
}

impl Tile {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.tile_param.unwrap_or_default();
        let tiles = p
            .tiles
            .ok_or_else(|| layer_err!("number of tiles must be specified (tile_param.tiles)"))?;
        if tiles <= 0 {
            return Err(layer_err!("number of tiles must be positive (got {tiles})"));
        }
        Ok(Tile {
            axis: p.axis(),
            tiles: tiles as usize,
            outer: 0,
            inner: 0,
        })
    }
}

impl Layer for Tile {
    fn type_name(&self) -> &'static str {
        "Tile"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let mut shape = io.bottom(0).shape().to_vec();
        let axis = canonical_axis(self.axis, shape.len())?;
        self.outer = shape[..axis].iter().product();
        self.inner = shape[axis..].iter().product();
        shape[axis] *= self.tiles;
        io.top_mut(0).reshape(&shape)
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        let (inner, tiles) = (self.inner, self.tiles);
        for t in 0..tiles {
            cx.be.copy_blocks(
                self.outer,
                inner,
                x.data.view(),
                inner,
                y.data.at_mut(t * inner),
                tiles * inner,
                false,
            );
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        let (inner, tiles) = (self.inner, self.tiles);
        // Copy the first tile, then add the others in order (Caffe's sum order).
        for t in 0..tiles {
            cx.be.copy_blocks(
                self.outer,
                inner,
                y.diff.at(t * inner),
                tiles * inner,
                x.diff.view_mut(),
                inner,
                t > 0,
            );
        }
        Ok(())
    }
}
