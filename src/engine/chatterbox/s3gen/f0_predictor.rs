//! The HiFT vocoder's F0 predictor: a mel spectrogram → the fundamental frequency of
//! each frame, in Hz.
//!
//! Port of `chatterbox/models/s3gen/f0_predictor.py` (chatterbox-tts 0.1.7), itself
//! taken from CosyVoice.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv1dConfig, Linear, VarBuilder};
use serde::Deserialize;

use crate::engine::nn::ops::elu;
use crate::engine::nn::{conv1d, GemmConv1d};

/// `ConvRNNF0Predictor`'s constructor arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct F0PredictorConfig {
    /// Outputs of the classifier; the reference squeezes it away, so only 1 works.
    pub num_class: usize,
    /// Mel bins.
    pub in_channels: usize,
    pub cond_channels: usize,
}

impl F0PredictorConfig {
    /// As `S3Token2Wav` builds it (the class defaults).
    pub fn s3gen() -> Self {
        Self {
            num_class: 1,
            in_channels: 80,
            cond_channels: 512,
        }
    }
}

/// Convolutions in `condnet`, each followed by an ELU.
const CONDNET_LAYERS: usize = 5;

// chatterbox/models/s3gen/f0_predictor.py `ConvRNNF0Predictor`
/// Five weight-normed kernel-3 convolutions with ELU, then a linear head; the F0 is
/// the head's absolute value.
#[derive(Debug, Clone)]
pub struct ConvRNNF0Predictor {
    /// `condnet.{0,2,4,6,8}` (the odd indices of the `nn.Sequential` are the ELUs).
    condnet: Vec<GemmConv1d>,
    classifier: Linear,
}

impl ConvRNNF0Predictor {
    pub fn load(vb: VarBuilder, cfg: &F0PredictorConfig) -> Result<Self> {
        if cfg.num_class != 1 {
            candle_core::bail!(
                "ConvRNNF0Predictor: num_class {} (only 1 is supported)",
                cfg.num_class
            );
        }
        let conv_cfg = Conv1dConfig {
            padding: 1,
            ..Default::default()
        };
        let condnet = (0..CONDNET_LAYERS)
            .map(|i| {
                let c_in = if i == 0 {
                    cfg.in_channels
                } else {
                    cfg.cond_channels
                };
                let conv = conv1d(
                    vb.pp("condnet").pp(2 * i),
                    c_in,
                    cfg.cond_channels,
                    3,
                    conv_cfg,
                    true,
                )?;
                GemmConv1d::new(conv)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            condnet,
            classifier: candle_nn::linear(cfg.cond_channels, cfg.num_class, vb.pp("classifier"))?,
        })
    }
}

impl Module for ConvRNNF0Predictor {
    /// `x` [B, in_channels, T] (mel) → F0 [B, T], ≥ 0.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for conv in &self.condnet {
            x = elu(&conv.forward(&x)?, 1.0)?;
        }
        let x = x.transpose(1, 2)?.contiguous()?;
        self.classifier.forward(&x)?.squeeze(2)?.abs()
    }
}
