//! Speech-token generation: chatterbox-tts 0.1.7 `T3.inference_turbo`
//! (`chatterbox/models/t3/t3.py`) with the transformers 5.2.0 logits processors
//! it builds (`generation/logits_process.py`: `TemperatureLogitsWarper`,
//! `TopKLogitsWarper`, `TopPLogitsWarper`, `RepetitionPenaltyLogitsProcessor`).
//!
//! What the reference does, and this port with it:
//! - The processors run in this order, each only when active: temperature
//!   (`t > 0 && t != 1`), top-k (`k > 0`), top-p (`p < 1`), repetition penalty
//!   (`!= 1`). The penalty comes last, on already filtered logits. Then softmax
//!   and one multinomial draw.
//! - The penalty history at the first step is the start-of-speech token alone;
//!   afterwards it is the generated tokens (without the start token).
//! - The first token comes from the prefill; then at most `max_gen_len` more are
//!   drawn, each step feeding only the last token's embedding through the KV
//!   cache. The stop token ends the loop only when drawn inside it (one drawn at
//!   the prefill does not), and a trailing stop token is removed. The loop also
//!   ends, without drawing, when every processed logit is −∞.
//!
//! The random draws come from the caller's `rand::Rng`, so a seeded generator
//! gives reproducible tokens (not PyTorch's stream: parity is on probabilities).

use candle_core::{DType, IndexOp, Result, Tensor};
use rand::Rng;

use super::{T3Cond, T3};

/// Decode positions the KV cache is first allocated for (10 s of speech tokens).
const CACHE_HEADROOM: usize = 250;

/// Sampling settings of `ChatterboxTurboTTS.generate` / `T3.inference_turbo`.
/// Floats are `f64` because the reference holds them as Python floats (the top-p
/// threshold `1 - top_p` is computed in double before being compared in f32).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f64,
    /// 0 turns top-k off.
    pub top_k: usize,
    /// 1.0 turns top-p off.
    pub top_p: f64,
    /// 1.0 turns the penalty off.
    pub repetition_penalty: f64,
    /// Tokens drawn after the first one (`max_gen_len`).
    pub max_gen_len: usize,
}

impl Default for SamplingParams {
    /// `generate`'s defaults: temperature 0.8, top-k 1000, top-p 0.95, repetition
    /// penalty 1.2; `inference_turbo`'s `max_gen_len` 1000.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 1000,
            top_p: 0.95,
            repetition_penalty: 1.2,
            max_gen_len: 1000,
        }
    }
}

impl SamplingParams {
    /// The logits processors of `inference_turbo`, in place, in the reference's
    /// order. `history`: the token ids the repetition penalty applies to.
    pub fn process(&self, scores: &mut [f32], history: &[u32]) {
        if self.temperature > 0.0 && self.temperature != 1.0 {
            let t = self.temperature as f32;
            scores.iter_mut().for_each(|s| *s /= t);
        }
        if self.top_k > 0 {
            top_k(scores, self.top_k);
        }
        if self.top_p < 1.0 {
            top_p(scores, self.top_p);
        }
        if self.repetition_penalty != 1.0 {
            repetition_penalty(scores, history, self.repetition_penalty as f32);
        }
    }

    /// `softmax(process(logits, history))`: the distribution a token is drawn from.
    pub fn probabilities(&self, logits: &[f32], history: &[u32]) -> Vec<f32> {
        let mut scores = logits.to_vec();
        self.process(&mut scores, history);
        softmax(&scores)
    }
}

/// `TopKLogitsWarper`: every score below the k-th largest becomes −∞ (ties with
/// the k-th largest stay).
fn top_k(scores: &mut [f32], k: usize) {
    let k = k.min(scores.len());
    if k == 0 {
        return;
    }
    let mut sorted = scores.to_vec();
    let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *kth;
    for s in scores.iter_mut() {
        if *s < threshold {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper` (min_tokens_to_keep 1): ascending sort, softmax,
/// cumulative sum; entries whose cumulative probability is ≤ 1 − p become −∞,
/// the largest always stays. PyTorch's CPU `cumsum` accumulates float32 in
/// float64 and rounds each output, and compares with `1 - p` rounded to f32.
fn top_p(scores: &mut [f32], p: f64) {
    let n = scores.len();
    if n == 0 {
        return;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let sorted: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
    let probs = softmax(&sorted);
    let threshold = (1.0 - p) as f32;
    let mut cumulative = 0f64;
    for (rank, &i) in order.iter().enumerate().take(n - 1) {
        cumulative += f64::from(probs[rank]);
        if (cumulative as f32) > threshold {
            break;
        }
        scores[i] = f32::NEG_INFINITY;
    }
}

/// `RepetitionPenaltyLogitsProcessor`: once per distinct history token,
/// `s < 0 ? s · r : s / r`.
fn repetition_penalty(scores: &mut [f32], history: &[u32], penalty: f32) {
    let mut ids: Vec<usize> = history
        .iter()
        .map(|&t| t as usize)
        .filter(|&t| t < scores.len())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for i in ids {
        let s = scores[i];
        scores[i] = if s < 0.0 { s * penalty } else { s / penalty };
    }
}

/// Softmax over a slice (−∞ entries get probability 0).
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![f32::NAN; scores.len()];
    }
    let exps: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().map(|&e| f64::from(e)).sum();
    let inv = (1.0 / sum) as f32;
    exps.iter().map(|&e| e * inv).collect()
}

/// One draw from `probs` (`torch.multinomial(probs, 1)`); zero-probability
/// entries are never drawn.
pub fn sample<R: Rng + ?Sized>(probs: &[f32], rng: &mut R) -> Result<u32> {
    let total: f64 = probs
        .iter()
        .filter(|p| p.is_finite() && **p > 0.0)
        .map(|&p| f64::from(p))
        .sum();
    if total <= 0.0 {
        candle_core::bail!("no token has a positive probability");
    }
    let u = rng.random::<f64>() * total;
    let mut acc = 0f64;
    let mut last = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p.is_finite() && p > 0.0 {
            acc += f64::from(p);
            last = i;
            if u < acc {
                return Ok(i as u32);
            }
        }
    }
    Ok(last as u32)
}

impl T3 {
    /// `T3.inference_turbo` for one text: `text_tokens` (the tokenizer's ids; Turbo
    /// adds no start/stop text tokens) and a voice's conditioning → speech tokens,
    /// without the trailing stop token. Ids ≥ 6561 other than a trailing stop can
    /// still occur; `ChatterboxTurboTTS.generate` drops every id ≥ 6561 before S3Gen.
    ///
    /// The KV cache is made here and dropped on return, so concurrent calls on
    /// one `T3` are independent.
    pub fn inference<R: Rng + ?Sized>(
        &self,
        text_tokens: &[u32],
        cond: &T3Cond,
        params: &SamplingParams,
        rng: &mut R,
    ) -> Result<Vec<u32>> {
        self.inference_with(text_tokens, cond, params, rng, &mut |_| Ok(true))
    }

    /// [`T3::inference`], handing the tokens generated so far to `on_token` after
    /// each one but the stop token; generation ends early, with the tokens so far,
    /// when `on_token` answers `false`.
    pub fn inference_with<R: Rng + ?Sized>(
        &self,
        text_tokens: &[u32],
        cond: &T3Cond,
        params: &SamplingParams,
        rng: &mut R,
        on_token: &mut dyn FnMut(&[u32]) -> Result<bool>,
    ) -> Result<Vec<u32>> {
        let _span = tracing::trace_span!("t3_inference", text_tokens = text_tokens.len()).entered();
        let device = self.device();
        let (start, stop) = (self.hp().start_speech_token, self.hp().stop_speech_token);
        let text = Tensor::new(text_tokens, device)?.unsqueeze(0)?;
        let start_tokens = Tensor::new(&[[start]], device)?;
        // Most utterances stop long before the limit: start with room for a few
        // seconds of speech and let the cache grow (by the same amount) if needed.
        let headroom = params.max_gen_len.min(CACHE_HEADROOM) + 1;
        let (hidden, mut cache) = self.prefill(cond, &text, &start_tokens, headroom)?;
        let logits = self.last_speech_logits(&hidden)?;
        let probs = params.probabilities(&logits, &[start]);
        let mut token = sample(&probs, rng)?;
        let mut generated = vec![token];
        let mut going = on_token(&generated)?;

        for _ in 0..params.max_gen_len {
            if !going {
                break;
            }
            let embed = self.embed_speech(&Tensor::new(&[[token]], device)?)?;
            let hidden = self.forward_hidden(&embed, &mut cache)?;
            let mut scores = self.last_speech_logits(&hidden)?;
            params.process(&mut scores, &generated);
            if scores.iter().all(|&s| s == f32::NEG_INFINITY) {
                tracing::warn!("all speech logits are -inf; stopping generation");
                break;
            }
            token = sample(&softmax(&scores), rng)?;
            generated.push(token);
            if token == stop {
                break;
            }
            going = on_token(&generated)?;
        }
        if generated.last() == Some(&stop) {
            generated.pop();
        }
        Ok(generated)
    }

    /// Speech logits at the last position of `hidden` [1, L, D], as f32 on the host.
    fn last_speech_logits(&self, hidden: &Tensor) -> Result<Vec<f32>> {
        let last = hidden.i((0..1, hidden.dim(1)? - 1..))?;
        self.speech_logits(&last)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn top_k_keeps_ties() {
        let mut s = vec![1.0, 3.0, 2.0, 3.0, 2.0];
        top_k(&mut s, 2);
        assert_eq!(
            s,
            [
                f32::NEG_INFINITY,
                3.0,
                f32::NEG_INFINITY,
                3.0,
                f32::NEG_INFINITY
            ]
        );
        let mut s = vec![1.0, 3.0, 2.0, 2.0];
        top_k(&mut s, 3);
        assert_eq!(s, [f32::NEG_INFINITY, 3.0, 2.0, 2.0]);
    }

    #[test]
    fn top_p_always_keeps_the_largest() {
        let mut s = vec![0.0, 10.0, 0.0];
        top_p(&mut s, 0.5);
        assert_eq!(s, [f32::NEG_INFINITY, 10.0, f32::NEG_INFINITY]);
        let mut s = vec![0.0, 0.0];
        top_p(&mut s, 0.9);
        // cumulative [0.5, 1.0]: 0.5 > 0.1 so both stay.
        assert_eq!(s, [0.0, 0.0]);
    }

    #[test]
    fn penalty_once_per_token_by_sign() {
        let mut s = vec![2.4, -2.0, 0.5];
        repetition_penalty(&mut s, &[0, 1, 0, 1, 9], 1.2);
        assert_eq!(s, [2.4 / 1.2, -2.0 * 1.2, 0.5]);
    }

    #[test]
    fn sampling_is_seeded_and_skips_zeros() {
        let probs = [0.0, 0.25, 0.0, 0.75];
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..64)
                .map(|_| sample(&probs, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert!(draw(3).iter().all(|&t| t == 1 || t == 3));
        assert!(draw(3).contains(&1) && draw(3).contains(&3));
        assert!(sample(&[0.0, 0.0], &mut rand::rngs::StdRng::seed_from_u64(0)).is_err());
    }
}
