//! `s3tokenizer` 0.3.0 `utils.py`: padding masks and the merging of window tokens.

use candle_core::{Result, Tensor};

/// Additive attention bias of `mask_to_bias` for keys past `len`: 0 for a frame,
/// −1e10 for padding, so that `softmax` gives padding exactly zero weight.
const PAD_BIAS: f32 = -1.0e10;

/// `x * make_non_pad_mask(len)` along `dim`: the frames from `len` on set to zero
/// (`x` unchanged when it has no such frames).
pub fn zero_tail(x: &Tensor, dim: usize, len: usize) -> Result<Tensor> {
    let total = x.dim(dim)?;
    if len >= total {
        return Ok(x.clone());
    }
    x.narrow(dim, 0, len)?.pad_with_zeros(dim, 0, total - len)
}

/// `mask_to_bias(make_non_pad_mask(len, total))` as [1, 1, 1, total], to add to
/// attention scores [1, heads, total, total].
pub fn mask_to_bias(len: usize, total: usize, x: &Tensor) -> Result<Tensor> {
    let bias: Vec<f32> = (0..total)
        .map(|i| if i < len { 0.0 } else { PAD_BIAS })
        .collect();
    Tensor::from_vec(bias, (1, 1, 1, total), x.device())?.to_dtype(x.dtype())
}

/// `merge_tokenized_segments`: joins the tokens of overlapping windows, dropping
/// `overlap_tokens` (half the overlap) at each inner window edge, with Python's
/// slicing rules for windows shorter than that.
pub fn merge_tokenized_segments(segments: &[Vec<u32>], overlap_tokens: usize) -> Vec<u32> {
    let mut merged = Vec::new();
    for (i, tokens) in segments.iter().enumerate() {
        let n = tokens.len();
        let l = if i == 0 { 0 } else { overlap_tokens.min(n) };
        let r = if i + 1 < segments.len() {
            n.saturating_sub(overlap_tokens)
        } else {
            n
        };
        if l < r {
            merged.extend_from_slice(&tokens[l..r]);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn merge_drops_half_the_overlap_on_inner_edges() {
        let a: Vec<u32> = (0..10).collect();
        let b: Vec<u32> = (100..110).collect();
        let c: Vec<u32> = (200..205).collect();
        let merged = merge_tokenized_segments(&[a, b, c], 2);
        let want: Vec<u32> = (0..8).chain(102..108).chain(202..205).collect();
        assert_eq!(merged, want);
    }

    #[test]
    fn merge_follows_python_slicing_for_short_windows() {
        // tokens[2:-2] of 3 tokens is empty; the last window's tokens[2:] of 1 too.
        let merged = merge_tokenized_segments(&[vec![1, 2, 3], vec![4, 5, 6], vec![7]], 2);
        assert_eq!(merged, vec![1]);
    }

    #[test]
    fn zero_tail_clears_the_padding_only() -> Result<()> {
        let x = Tensor::ones((1, 2, 5), candle_core::DType::F32, &Device::Cpu)?;
        let y = zero_tail(&x, 2, 3)?.to_vec3::<f32>()?;
        assert_eq!(y[0][1], vec![1.0, 1.0, 1.0, 0.0, 0.0]);
        let bias = mask_to_bias(3, 5, &x)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(bias, vec![0.0, 0.0, 0.0, PAD_BIAS, PAD_BIAS]);
        Ok(())
    }
}
