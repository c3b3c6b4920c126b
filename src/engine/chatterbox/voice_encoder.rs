//! Chatterbox's voice encoder: 40-bin mel frames of a 16 kHz reference clip →
//! the 256-wide speaker embedding T3 is conditioned on (`T3Cond.speaker_emb`).
//!
//! Port of `chatterbox/models/voice_encoder/{config,voice_encoder}.py`
//! (chatterbox-tts 0.1.7, itself adapted from Real-Time-Voice-Cloning), from
//! the mel frames onward: the utterance is cut into overlapping 160-frame
//! partial windows, each goes through a 3-layer LSTM whose last hidden state
//! is projected, ReLU'd and L2-normalised; the mean of the partial embeddings,
//! L2-normalised again, is the utterance embedding. The mel front end (trim,
//! STFT, mel filterbank) is not part of this file.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::engine::nn::lstm::Lstm;

/// Layers of the LSTM (`nn.LSTM(..., num_layers=3)`, fixed in the reference).
pub const NUM_LAYERS: usize = 3;

/// Partial windows per LSTM batch (`embeds_from_mels(batch_size=32)`); the
/// windows are independent, so this bounds memory and changes no result.
const BATCH_SIZE: usize = 32;

/// `VoiceEncConfig` (`config.py`), whose class attributes are the released
/// configuration: the checkpoint `ve.safetensors` ships no config. The STFT and
/// mel fields describe the mel front end that produces this encoder's input;
/// the encoder itself reads the widths, `ve_partial_frames`, `ve_final_relu`,
/// `normalized_mels` and `sample_rate` (in the window step, see
/// [`PartialWindows::frame_step`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceEncConfig {
    pub num_mels: usize,
    pub sample_rate: usize,
    pub speaker_embed_size: usize,
    pub ve_hidden_size: usize,
    /// A cuDNN memory-layout call in the reference; no effect on results.
    pub flatten_lstm_params: bool,
    pub n_fft: usize,
    pub hop_size: usize,
    pub win_size: usize,
    pub fmax: usize,
    pub fmin: usize,
    pub preemphasis: f64,
    pub mel_power: f64,
    pub mel_type: String,
    /// The reference then refuses mels outside [0, 1] (Chatterbox: `false`).
    pub normalized_mels: bool,
    /// Frames per partial window.
    pub ve_partial_frames: usize,
    pub ve_final_relu: bool,
    pub stft_magnitude_min: f64,
}

/// A configuration this port cannot run.
#[derive(Debug, thiserror::Error)]
pub enum VoiceEncConfigError {
    #[error("unsupported voice encoder configuration: {0}")]
    Unsupported(String),
    #[error("bad voice encoder configuration: {0}")]
    Json(#[from] serde_json::Error),
}

impl VoiceEncConfig {
    /// The released voice encoder (`ve.safetensors`), as `VoiceEncConfig()`.
    pub fn chatterbox() -> Self {
        Self {
            num_mels: 40,
            sample_rate: 16000,
            speaker_embed_size: 256,
            ve_hidden_size: 256,
            flatten_lstm_params: false,
            n_fft: 400,
            hop_size: 160,
            win_size: 400,
            fmax: 8000,
            fmin: 0,
            preemphasis: 0.0,
            mel_power: 2.0,
            mel_type: "amp".to_string(),
            normalized_mels: false,
            ve_partial_frames: 160,
            ve_final_relu: true,
            stft_magnitude_min: 1e-4,
        }
    }

    /// Reads the JSON form of `VoiceEncConfig` (every field) and validates it.
    pub fn from_json(text: &str) -> std::result::Result<Self, VoiceEncConfigError> {
        let cfg: Self = serde_json::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> std::result::Result<(), VoiceEncConfigError> {
        let widths = [
            ("num_mels", self.num_mels),
            ("ve_hidden_size", self.ve_hidden_size),
            ("speaker_embed_size", self.speaker_embed_size),
            ("ve_partial_frames", self.ve_partial_frames),
            ("sample_rate", self.sample_rate),
        ];
        for (name, value) in widths {
            if value == 0 {
                return Err(VoiceEncConfigError::Unsupported(format!(
                    "{name} must be positive"
                )));
            }
        }
        Ok(())
    }
}

impl Default for VoiceEncConfig {
    fn default() -> Self {
        Self::chatterbox()
    }
}

/// How an utterance is cut into partial windows: the keyword arguments of the
/// reference `VoiceEncoder.inference` (`stride_as_partials` uses the same rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartialWindows {
    /// Fraction of a window shared with the next one, in [0, 1); used when
    /// `rate` is `None`.
    pub overlap: f64,
    /// When set, the step is `round(sample_rate / rate / ve_partial_frames)`
    /// frames (the reference's formula, unit quirk included).
    pub rate: Option<f64>,
    /// A last, partly filled window is kept (zero-padded) when its frames plus
    /// the overlap cover at least this fraction of a window; in (0, 1].
    pub min_coverage: f64,
}

impl PartialWindows {
    /// What `embeds_from_wavs` passes, and so Chatterbox's voice prompts
    /// (`prepare_conditionals`): rate 1.3, a 77-frame step for 160-frame windows.
    pub fn chatterbox() -> Self {
        Self {
            rate: Some(1.3),
            ..Self::default()
        }
    }

    /// `get_frame_step`: frames between the starts of two windows.
    pub fn frame_step(&self, cfg: &VoiceEncConfig) -> Result<usize> {
        if !(0.0..1.0).contains(&self.overlap) {
            candle_core::bail!("voice encoder: overlap {} outside [0, 1)", self.overlap);
        }
        let window = cfg.ve_partial_frames as f64;
        // `int(np.round(...))`: NumPy rounds halves to even.
        let step = match self.rate {
            None => (window * (1.0 - self.overlap)).round_ties_even(),
            Some(rate) => (cfg.sample_rate as f64 / rate / window).round_ties_even(),
        };
        if !(1.0..=window).contains(&step) {
            candle_core::bail!(
                "voice encoder: a step of {step} frames for {window}-frame windows (overlap {}, rate {:?})",
                self.overlap,
                self.rate
            );
        }
        Ok(step as usize)
    }
}

impl Default for PartialWindows {
    /// `VoiceEncoder.inference`'s own defaults: overlap 0.5, no rate, coverage 0.8.
    fn default() -> Self {
        Self {
            overlap: 0.5,
            rate: None,
            min_coverage: 0.8,
        }
    }
}

/// `get_num_wins`: (windows, frames they span) for `n_frames` mel frames, with
/// windows of `window` frames every `step` frames. The utterance is zero-padded
/// or trimmed to the span. Always at least one window.
pub fn num_wins(n_frames: usize, step: usize, min_coverage: f64, window: usize) -> (usize, usize) {
    let (mut n_wins, remainder) = {
        let n = (n_frames + step).saturating_sub(window);
        (n / step, n % step)
    };
    // The same float expression as Python's, so ties decide the same way.
    if n_wins == 0 || (remainder + window - step) as f64 / window as f64 >= min_coverage {
        n_wins += 1;
    }
    (n_wins, window + step * (n_wins - 1))
}

// chatterbox/models/voice_encoder/voice_encoder.py `VoiceEncoder`
/// The 3-layer LSTM and the projection. `similarity_weight`/`similarity_bias`
/// of the checkpoint only serve training and are not read.
#[derive(Debug, Clone)]
pub struct VoiceEncoder {
    /// `lstm.{weight,bias}_{ih,hh}_l{0,1,2}`, one [`Lstm`] per layer.
    lstm: Vec<Lstm>,
    proj: Linear,
    cfg: VoiceEncConfig,
}

impl VoiceEncoder {
    pub fn load(vb: VarBuilder, cfg: &VoiceEncConfig) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let hidden = cfg.ve_hidden_size;
        let lstm = (0..NUM_LAYERS)
            .map(|layer| {
                let input = if layer == 0 { cfg.num_mels } else { hidden };
                Lstm::load_layer(vb.pp("lstm"), input, hidden, layer, false)
            })
            .collect::<Result<_>>()?;
        let proj = candle_nn::linear(hidden, cfg.speaker_embed_size, vb.pp("proj"))?;
        Ok(Self {
            lstm,
            proj,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VoiceEncConfig {
        &self.cfg
    }

    /// The top layer's final hidden state (`hidden[-1]` of `nn.LSTM`):
    /// `partials` [B, T, num_mels] → [B, ve_hidden_size].
    pub fn last_hidden(&self, partials: &Tensor) -> Result<Tensor> {
        if self.cfg.normalized_mels {
            let (lo, hi) = (
                partials
                    .min_all()?
                    .to_dtype(DType::F32)?
                    .to_scalar::<f32>()?,
                partials
                    .max_all()?
                    .to_dtype(DType::F32)?
                    .to_scalar::<f32>()?,
            );
            if lo < 0.0 || hi > 1.0 {
                candle_core::bail!("voice encoder: mels outside [0, 1] (min {lo}, max {hi})");
            }
        }
        let t = partials.dim(1)?;
        if t == 0 {
            candle_core::bail!("voice encoder: empty partial windows");
        }
        let mut x = partials.clone();
        for layer in &self.lstm {
            x = layer.forward(&x)?;
        }
        // Every sequence has full length, so the last output is the final state.
        x.narrow(1, t - 1, 1)?.squeeze(1)
    }

    /// Cuts one utterance's mel `[T, num_mels]` (T > 0) into its partial
    /// windows `[N, ve_partial_frames, num_mels]`: zero-padded or trimmed to
    /// the frames the windows span, a window every `frame_step` frames.
    pub fn partials(&self, mel: &Tensor, windows: &PartialWindows) -> Result<Tensor> {
        let (t, m) = mel.dims2()?;
        if t == 0 {
            candle_core::bail!("voice encoder: empty mel");
        }
        if m != self.cfg.num_mels {
            candle_core::bail!(
                "voice encoder: mel has {m} bins, expected {}",
                self.cfg.num_mels
            );
        }
        if !(windows.min_coverage > 0.0 && windows.min_coverage <= 1.0) {
            candle_core::bail!(
                "voice encoder: min_coverage {} outside (0, 1]",
                windows.min_coverage
            );
        }
        let window = self.cfg.ve_partial_frames;
        let step = windows.frame_step(&self.cfg)?;
        let (n, target) = num_wins(t, step, windows.min_coverage, window);
        let mel = if target > t {
            let pad = Tensor::zeros((target - t, m), mel.dtype(), mel.device())?;
            Tensor::cat(&[mel, &pad], 0)?
        } else {
            mel.narrow(0, 0, target)?
        };
        let parts = (0..n)
            .map(|i| mel.narrow(0, i * step, window))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&parts, 0)
    }

    /// `embeds_from_mels` (as_spk=False): one L2-normalised embedding per
    /// utterance, `[B, speaker_embed_size]`, from mels `[T_i, num_mels]` of any
    /// lengths (the reference pads them to a common length, which changes
    /// nothing: each utterance only reads its own windows).
    pub fn embeds_from_mels(&self, mels: &[Tensor], windows: &PartialWindows) -> Result<Tensor> {
        if mels.is_empty() {
            candle_core::bail!("voice encoder: no utterance");
        }
        let (dtype, device) = (self.proj.weight().dtype(), self.proj.weight().device());
        let mut per_utt = Vec::with_capacity(mels.len());
        let mut parts = Vec::with_capacity(mels.len());
        for mel in mels {
            let p = self.partials(&mel.to_device(device)?.to_dtype(dtype)?, windows)?;
            per_utt.push(p.dim(0)?);
            parts.push(p);
        }
        let partial_embeds = self.forward(&Tensor::cat(&parts, 0)?)?;
        let mut start = 0;
        let mut embeds = Vec::with_capacity(mels.len());
        for n in per_utt {
            embeds.push(l2_normalize(
                &partial_embeds.narrow(0, start, n)?.mean_keepdim(0)?,
            )?);
            start += n;
        }
        Tensor::cat(&embeds, 0)
    }

    /// Chatterbox's speaker embedding of a voice prompt (`prepare_conditionals`
    /// in `tts_turbo.py`): the embedding of one utterance with rate-1.3 windows,
    /// `[1, speaker_embed_size]`. `mel` is `[T, num_mels]`: the reference's
    /// `melspectrogram(wav, hp).T` of the 16 kHz prompt after
    /// `librosa.effects.trim(top_db=20)` (power mel, unnormalised).
    pub fn speaker_emb(&self, mel: &Tensor) -> Result<Tensor> {
        // The reference then averages over utterances without renormalising;
        // with one utterance that is the embedding itself.
        self.embeds_from_mels(std::slice::from_ref(mel), &PartialWindows::chatterbox())
    }
}

impl Module for VoiceEncoder {
    /// `VoiceEncoder.forward`: partial windows `[B, T, num_mels]` → their
    /// L2-normalised embeddings `[B, speaker_embed_size]`, `BATCH_SIZE`
    /// windows at a time.
    fn forward(&self, partials: &Tensor) -> Result<Tensor> {
        let b = partials.dim(0)?;
        let mut out = Vec::with_capacity(b.div_ceil(BATCH_SIZE));
        for start in (0..b).step_by(BATCH_SIZE) {
            let batch = partials.narrow(0, start, BATCH_SIZE.min(b - start))?;
            let mut raw = self.proj.forward(&self.last_hidden(&batch)?)?;
            if self.cfg.ve_final_relu {
                raw = raw.relu()?;
            }
            out.push(l2_normalize(&raw)?);
        }
        Tensor::cat(&out, 0)
    }
}

/// `x / torch.linalg.norm(x, dim=1, keepdim=True)` for `x` [B, E].
fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatterbox_windows_step_77_frames() {
        let cfg = VoiceEncConfig::chatterbox();
        assert_eq!(PartialWindows::chatterbox().frame_step(&cfg).ok(), Some(77));
        assert_eq!(PartialWindows::default().frame_step(&cfg).ok(), Some(80));
    }

    #[test]
    fn a_step_longer_than_a_window_is_refused() {
        let cfg = VoiceEncConfig::chatterbox();
        let w = PartialWindows {
            rate: Some(0.5),
            ..PartialWindows::default()
        };
        assert!(w.frame_step(&cfg).is_err());
        let w = PartialWindows {
            overlap: 1.0,
            ..PartialWindows::default()
        };
        assert!(w.frame_step(&cfg).is_err());
    }

    #[test]
    fn short_utterances_get_one_padded_window() {
        assert_eq!(num_wins(1, 77, 0.8, 160), (1, 160));
        assert_eq!(num_wins(159, 77, 0.8, 160), (1, 160));
    }
}
