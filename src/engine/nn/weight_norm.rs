//! Convolutions whose checkpoints may store PyTorch's legacy weight norm
//! (`weight_g`, `weight_v`): folded once at load into a plain weight.

use candle_core::{Result, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, VarBuilder};

/// `w = g * v / ‖v‖`, the norm taken over every dimension but the first (as
/// `torch.nn.utils.weight_norm(dim=0)`; for a transposed convolution the first
/// dimension is the input channel). No epsilon, as in PyTorch.
pub fn fold_weight_norm(g: &Tensor, v: &Tensor) -> Result<Tensor> {
    let rank = v.rank();
    let flat = v.flatten_from(1)?;
    let norm = flat.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let mut shape = vec![v.dim(0)?];
    shape.extend(std::iter::repeat_n(1, rank - 1));
    let scale = g
        .reshape(shape.as_slice())?
        .broadcast_div(&norm.reshape(shape.as_slice())?)?;
    v.broadcast_mul(&scale)
}

/// A weight of `shape`, from `weight` or from the `weight_g`/`weight_v` pair.
fn weight(vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    if vb.contains_tensor("weight_v") {
        let v = vb.get(shape, "weight_v")?;
        let g = vb.get((shape.0, 1, 1), "weight_g")?;
        fold_weight_norm(&g, &v)
    } else {
        vb.get(shape, "weight")
    }
}

/// `nn.Conv1d` (possibly weight-normed) with `in_c` → `out_c` channels.
pub fn conv1d(
    vb: VarBuilder,
    in_c: usize,
    out_c: usize,
    kernel: usize,
    cfg: Conv1dConfig,
    bias: bool,
) -> Result<Conv1d> {
    let w = weight(&vb, (out_c, in_c / cfg.groups, kernel))?;
    let b = if bias {
        Some(vb.get(out_c, "bias")?)
    } else {
        None
    };
    Ok(Conv1d::new(w, b, cfg))
}

/// `nn.ConvTranspose1d` (possibly weight-normed) with `in_c` → `out_c` channels.
pub fn conv_transpose1d(
    vb: VarBuilder,
    in_c: usize,
    out_c: usize,
    kernel: usize,
    cfg: ConvTranspose1dConfig,
    bias: bool,
) -> Result<ConvTranspose1d> {
    let w = weight(&vb, (in_c, out_c / cfg.groups, kernel))?;
    let b = if bias {
        Some(vb.get(out_c, "bias")?)
    } else {
        None
    };
    Ok(ConvTranspose1d::new(w, b, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn folding_scales_each_output_row_to_g() -> Result<()> {
        let dev = Device::Cpu;
        let v = Tensor::new(&[[[3f32, 4.0]], [[0.0, 2.0]]], &dev)?; // [2,1,2]
        let g = Tensor::new(&[[[10f32]], [[3.0]]], &dev)?;
        let w = fold_weight_norm(&g, &v)?;
        assert_eq!(w.i(0)?.flatten_all()?.to_vec1::<f32>()?, vec![6.0, 8.0]);
        assert_eq!(w.i(1)?.flatten_all()?.to_vec1::<f32>()?, vec![0.0, 3.0]);
        Ok(())
    }
}
