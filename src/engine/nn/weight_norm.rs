//! Convolutions whose checkpoints may store weight norm, either PyTorch's legacy
//! `weight_g`/`weight_v` pair or the `parametrizations.weight.original0`/`original1`
//! pair of `torch.nn.utils.parametrizations.weight_norm`: folded once at load into a
//! plain weight.

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

/// Key of the parametrised weight norm's direction `v`; its gain `g` is `original0`.
const PARAMETRIZED_V: &str = "parametrizations.weight.original1";
const PARAMETRIZED_G: &str = "parametrizations.weight.original0";

/// A weight of `shape`, from `weight` or from a weight-norm pair (`weight_g`/`weight_v`
/// or `parametrizations.weight.original0`/`original1`).
fn weight(vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    if vb.contains_tensor("weight_v") {
        let v = vb.get(shape, "weight_v")?;
        let g = vb.get((shape.0, 1, 1), "weight_g")?;
        fold_weight_norm(&g, &v)
    } else if vb.contains_tensor(PARAMETRIZED_V) {
        let v = vb.get(shape, PARAMETRIZED_V)?;
        let g = vb.get((shape.0, 1, 1), PARAMETRIZED_G)?;
        fold_weight_norm(&g, &v)
    } else {
        vb.get(shape, "weight")
    }
}

/// A one-group `Conv1dConfig`.
pub fn conv_cfg(padding: usize, stride: usize, dilation: usize) -> Conv1dConfig {
    Conv1dConfig {
        padding,
        stride,
        dilation,
        ..Default::default()
    }
}

/// `get_padding(kernel_size, dilation)` of the HiFi-GAN family: the padding that
/// keeps the length.
pub fn same_padding(kernel: usize, dilation: usize) -> usize {
    (kernel * dilation - dilation) / 2
}

/// Step `i` of a HiFi-GAN residual block (Kokoro's `AdaINResBlock1`, HiFT's
/// `ResBlock`): `convs1[i]`, dilated by `dilation`, and `convs2[i]`, both
/// weight-normed, `channels` wide, length-preserving, on the fast convolution path.
pub fn resblock_convs(
    vb: &VarBuilder,
    i: usize,
    channels: usize,
    kernel: usize,
    dilation: usize,
) -> Result<(super::GemmConv1d, super::GemmConv1d)> {
    let c = channels;
    let cfg1 = conv_cfg(same_padding(kernel, dilation), 1, dilation);
    let cfg2 = conv_cfg(same_padding(kernel, 1), 1, 1);
    Ok((
        super::GemmConv1d::new(conv1d(vb.pp("convs1").pp(i), c, c, kernel, cfg1, true)?)?,
        super::GemmConv1d::new(conv1d(vb.pp("convs2").pp(i), c, c, kernel, cfg2, true)?)?,
    ))
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

    #[test]
    fn both_weight_norm_layouts_load_the_same_conv() -> Result<()> {
        use std::collections::HashMap;
        let dev = Device::Cpu;
        let v = Tensor::new(&[[[3f32, 4.0]], [[0.0, 2.0]]], &dev)?;
        let g = Tensor::new(&[[[10f32]], [[3.0]]], &dev)?;
        let b = Tensor::new(&[0.5f32, -1.0], &dev)?;
        let load = |names: [&str; 2]| -> Result<Tensor> {
            let map = HashMap::from([
                (names[0].to_string(), g.clone()),
                (names[1].to_string(), v.clone()),
                ("bias".to_string(), b.clone()),
            ]);
            let vb = VarBuilder::from_tensors(map, candle_core::DType::F32, &dev);
            Ok(conv1d(vb, 1, 2, 2, Conv1dConfig::default(), true)?
                .weight()
                .clone())
        };
        let legacy = load(["weight_g", "weight_v"])?;
        let parametrized = load([PARAMETRIZED_G, PARAMETRIZED_V])?;
        let diff = (legacy - &parametrized)?
            .abs()?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        assert_eq!(
            parametrized.flatten_all()?.to_vec1::<f32>()?,
            vec![6.0, 8.0, 0.0, 3.0]
        );
        Ok(())
    }
}
