//! kokoro 0.9.4 `kokoro/model.py`, class `KModel`: the whole network from token
//! ids and a style vector to 24 kHz audio.

use candle_core::{DType, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::albert::CustomAlbert;
use super::config::KokoroConfig;
use super::istftnet::Decoder;
use super::modules::{duration, pred_dur, ProsodyPredictor, TextEncoder};
use crate::engine::seed::Fnv1a64;

/// Harmonics of the decoder's sine source (fundamental + 8 overtones).
pub const SINE_HARMONICS: usize = 9;
/// Audio samples per predicted frame: F0 runs at twice the frame rate, upsampled ×300.
pub const SAMPLES_PER_FRAME: usize = 600;

/// The noise seed of one call: FNV-1a over the token ids, the style vector and the
/// speed, so equal inputs draw equal noise.
fn noise_seed(ids: &[u32], ref_s: &Tensor, speed: f32) -> Result<u64> {
    let style = ref_s
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    let words = ids
        .iter()
        .copied()
        .chain(style.iter().map(|v| v.to_bits()))
        .chain(std::iter::once(speed.to_bits()));
    Ok(words.fold(Fnv1a64::new(), Fnv1a64::u32).finish())
}

/// kokoro 0.9.4 `kokoro/model.py`, class `KModel`.
pub struct KModel {
    pub bert: CustomAlbert,
    pub bert_encoder: Linear,
    pub predictor: ProsodyPredictor,
    pub text_encoder: TextEncoder,
    pub decoder: Decoder,
    style_dim: usize,
}

/// What one call produced.
#[derive(Debug, Clone)]
pub struct KOutput {
    pub audio: Vec<f32>,
    /// Frames per input token (pads included).
    pub pred_dur: Vec<u32>,
}

impl KModel {
    /// `vb` at the root of the checkpoint (groups `bert`, `bert_encoder`, ...).
    pub fn load(vb: VarBuilder, cfg: &KokoroConfig) -> Result<Self> {
        crate::engine::nn::reuse_freed_heap();
        let bert = CustomAlbert::load(vb.pp("bert"), &cfg.plbert, cfg.n_token)?;
        let bert_encoder = candle_nn::linear(
            cfg.plbert.hidden_size,
            cfg.hidden_dim,
            vb.pp("bert_encoder"),
        )?;
        Ok(Self {
            bert,
            bert_encoder,
            predictor: ProsodyPredictor::load(vb.pp("predictor"), cfg)?,
            text_encoder: TextEncoder::load_config(vb.pp("text_encoder"), cfg)?,
            decoder: Decoder::load(vb.pp("decoder"), cfg)?,
            style_dim: cfg.style_dim,
        })
    }

    /// The duration encoder's output `d` [1, T, H + S] and the frames of each token.
    fn durations(&self, input_ids: &Tensor, s: &Tensor, speed: f32) -> Result<(Tensor, Vec<u32>)> {
        let bert_dur = self.bert.forward(input_ids, None)?;
        let d_en = self.bert_encoder.forward(&bert_dur)?.transpose(1, 2)?;
        let d = self.predictor.text_encoder.forward(&d_en, s)?;
        let logits = self.predictor.duration_logits(&d)?;
        let frames = pred_dur(&duration(&logits, speed)?.flatten_all()?.to_vec1::<f32>()?);
        Ok((d, frames))
    }

    /// Frames per token (pads included) without running the decoder.
    pub fn predict_durations(
        &self,
        input_ids: &Tensor,
        ref_s: &Tensor,
        speed: f32,
    ) -> Result<Vec<u32>> {
        let input_ids = input_ids.to_dtype(DType::U32)?;
        let s = ref_s.i((.., self.style_dim..))?;
        Ok(self.durations(&input_ids, &s, speed)?.1)
    }

    /// The reference's `forward_with_tokens`: `input_ids` [1, T] (pads included),
    /// `ref_s` [1, 2·style_dim], `speed`. `sine_noise` [1, 600·F, 9] replaces the
    /// decoder's Gaussian noise draw (tests inject the reference's); `None` draws it
    /// from a generator seeded by the input, so the same request gives the same audio
    /// (whole, streamed or repeated), as the reference does after `torch.manual_seed`.
    pub fn forward_with_tokens(
        &self,
        input_ids: &Tensor,
        ref_s: &Tensor,
        speed: f32,
        sine_noise: Option<&Tensor>,
    ) -> Result<KOutput> {
        let input_ids = input_ids.to_dtype(DType::U32)?;
        let s = ref_s.i((.., self.style_dim..))?;
        let (d, frames_per_token) = self.durations(&input_ids, &s, speed)?;
        // The alignment matrix is one-hot per frame: multiplying by it repeats each
        // token's column for its frames, which index_select does without the matmul.
        let index: Vec<u32> = frames_per_token
            .iter()
            .enumerate()
            .flat_map(|(t, &n)| std::iter::repeat_n(t as u32, n as usize))
            .collect();
        let frames = index.len();
        let index = Tensor::new(index.as_slice(), input_ids.device())?;
        let en = d
            .transpose(1, 2)?
            .contiguous()?
            .index_select(&index, D::Minus1)?;
        let (f0, n) = self.predictor.f0_ntrain(&en, &s)?;
        let t_en = self.text_encoder.forward(&input_ids)?;
        let asr = t_en.contiguous()?.index_select(&index, D::Minus1)?;
        let noise = match sine_noise {
            Some(n) => n.clone(),
            None => {
                let len = frames * SAMPLES_PER_FRAME * SINE_HARMONICS;
                let seed = noise_seed(&input_ids.flatten_all()?.to_vec1::<u32>()?, ref_s, speed)?;
                let mut rng = StdRng::seed_from_u64(seed);
                let values: Vec<f32> = (0..len).map(|_| rng.sample(StandardNormal)).collect();
                Tensor::from_vec(
                    values,
                    (1, frames * SAMPLES_PER_FRAME, SINE_HARMONICS),
                    input_ids.device(),
                )?
            }
        };
        // `Decoder::forward`, with the noise (9 values per sample: 35 MB for 40 s)
        // dropped once the source spectrum is made from it, before the generator runs.
        let s_dec = ref_s.i((.., ..self.style_dim))?;
        let x = self.decoder.features(&asr, &f0, &n, &s_dec)?;
        let generator = &self.decoder.generator;
        let har = generator.source_spectrum(&f0, &noise)?;
        drop(noise);
        let audio = generator.istft(&generator.spectrogram(&x, &s_dec, &har)?)?;
        Ok(KOutput {
            audio: audio.flatten_all()?.to_vec1::<f32>()?,
            pred_dur: frames_per_token,
        })
    }
}
