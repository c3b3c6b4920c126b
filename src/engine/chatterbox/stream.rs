//! Speech tokens → audio while T3 is still speaking: S3Gen's flow and HiFT render a
//! sentence in chunks, so its first audio leaves long before its last token exists.
//!
//! **The flow** runs once per chunk on the tokens not yet final, with the last
//! [`StreamPlan::context_tokens`] final ones before them (their frames are rendered
//! again and dropped), conditioned on the tail of the voice's prompt
//! ([`StreamPlan::prompt_tokens`] tokens and their mel; fewer for the first chunk, so
//! its audio comes sooner). Its attention sees the whole sequence, so a chunk cannot
//! equal one pass; the plan's numbers are the ones that came closest per second of
//! compute (`tests/chatterbox_stream.rs` prints the comparison: giving the context
//! tokens' mel as part of the prompt instead came out further from one pass, as did
//! the voice's whole prompt, at twice the cost). The last [`StreamPlan::lookahead`]
//! tokens of a chunk are rendered but not kept: the encoder reads three tokens
//! ahead, so their mel waits for the next chunk, which crossfades from this chunk's
//! provisional frames to its own over those frames.
//!
//! **HiFT** is convolutional, so a window of mel renders the same audio as the whole
//! mel away from the window's edges. Each window starts [`HIFT_LEFT`] frames before
//! the first frame not yet sent and ends at the last mel frame available; audio is
//! sent up to [`HIFT_RIGHT`] frames before that end, and the rendered audio past it
//! is kept to crossfade into the next window's. The harmonic source is carried across
//! windows (its phase accumulators and the source of the frames before the window),
//! so its sine waves run on without a jump.
//!
//! Random draws come from tapes indexed by position — the flow's noise per mel frame,
//! the source's per audio sample — so a frame gets the same noise whether the
//! sentence is rendered whole or in chunks. Rendered whole ([`SpeechRenderer::finish`]
//! without a chunk before it), the flow sees the voice's whole prompt, as the
//! reference does.

use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};

use super::s3gen::hifigan::{fade_in_gains, HiFTGenerator};
use super::s3gen::{PromptRef, S3Token2Mel};

/// Mel frames before the first unsent frame that each HiFT window renders again
/// (HiFT's receptive field is within this: see the vocoder test).
pub const HIFT_LEFT: usize = 16;
/// Mel frames at the end of a window whose audio waits for the next window: with 8
/// the joins came within 70 dB of one pass, with 10 within 85 dB, with 12 within
/// float rounding (91 dB; `tests/chatterbox_stream.rs`).
pub const HIFT_RIGHT: usize = 10;
/// Mel frames of audio crossfaded at each HiFT join.
const HIFT_CROSSFADE: usize = 2;

/// How a streamed sentence is cut (in speech tokens; 25 make a second).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPlan {
    /// Tokens final in the first chunk; each later chunk doubles, up to `max_tokens`.
    pub first_tokens: usize,
    pub max_tokens: usize,
    /// Tokens rendered past the final ones, for the encoder's look-ahead.
    pub lookahead: usize,
    /// Tokens of the voice's prompt that condition each chunk, and the first one (a
    /// shorter prompt makes the first audio sooner).
    pub prompt_tokens: usize,
    pub first_prompt_tokens: usize,
    /// Tokens already final rendered again before the next chunk's, for context.
    pub context_tokens: usize,
    /// Give the context tokens' final mel as part of the prompt instead.
    pub context_as_prompt: bool,
}

impl Default for StreamPlan {
    fn default() -> Self {
        Self {
            first_tokens: 8,
            max_tokens: 50,
            lookahead: 3,
            prompt_tokens: 100,
            first_prompt_tokens: 50,
            context_tokens: 10,
            context_as_prompt: false,
        }
    }
}

/// Standard normal values drawn in order from a seeded generator, `width` per row,
/// drawn as far as asked: row `i` is the same however far the tape has been read.
struct NoiseTape {
    rng: rand::rngs::StdRng,
    width: usize,
    values: Vec<f32>,
}

impl NoiseTape {
    fn new(seed: u64, width: usize) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            width,
            values: Vec::new(),
        }
    }

    /// Rows `start..end`, row-major.
    fn rows(&mut self, start: usize, end: usize) -> &[f32] {
        let needed = end * self.width;
        while self.values.len() < needed {
            let v = self.rng.sample::<f32, _>(rand_distr::StandardNormal);
            self.values.push(v);
        }
        &self.values[start * self.width..needed]
    }
}

/// One sentence's audio from its speech tokens, whole or chunk by chunk.
pub struct SpeechRenderer<'a> {
    s3gen: &'a S3Token2Mel,
    hift: &'a HiFTGenerator,
    prompt: &'a PromptRef,
    plan: StreamPlan,
    device: Device,
    /// Prompt tokens and mel frames per token, and the prompt's tokens on the host.
    ratio: usize,
    prompt_ids: Vec<u32>,
    /// The prompt's mel, time-major [frames, 80] on the host (`None` when its frames
    /// are not `ratio` per token: such a voice renders whole only).
    prompt_mel: Option<Vec<f32>>,
    bands: usize,
    flow_noise: NoiseTape,
    /// Speech tokens whose mel is final, their mel (time-major), and the provisional
    /// frames rendered after them by the last chunk.
    tokens_final: usize,
    mel: Vec<f32>,
    provisional: Vec<f32>,
    chunks: usize,
    vocoder: VocoderState,
}

/// Where the audio stands: frames sent, the source before them, the phase after them.
struct VocoderState {
    sent: usize,
    acc: Vec<f64>,
    /// Source samples of the frames just before `sent` (at most [`HIFT_LEFT`]).
    source_tail: Vec<f32>,
    /// Audio rendered after `sent`, to crossfade into the next window.
    held: Vec<f32>,
    phase: Vec<f32>,
    noise: NoiseTape,
    /// Samples sent, for the reference's fade-in at the start.
    samples_out: usize,
    fade: Vec<f32>,
}

impl<'a> SpeechRenderer<'a> {
    /// A renderer for one sentence in `prompt`'s voice; `seed` fixes every random draw.
    pub fn new(
        s3gen: &'a S3Token2Mel,
        hift: &'a HiFTGenerator,
        prompt: &'a PromptRef,
        plan: StreamPlan,
        seed: u64,
        sample_rate: u32,
    ) -> Result<Self> {
        let device = prompt.prompt_feat.device().clone();
        let ratio = s3gen.flow().frames(1);
        let prompt_ids = prompt
            .prompt_token
            .flatten_all()?
            .to_dtype(candle_core::DType::U32)?
            .to_vec1::<u32>()?;
        let (_, frames, bands) = prompt.prompt_feat.dims3()?;
        let prompt_mel = (frames == ratio * prompt_ids.len())
            .then(|| {
                prompt
                    .prompt_feat
                    .to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()
            })
            .transpose()?;
        // Three independent streams from one seed: the flow's noise, the source's
        // start phases, its noise.
        let mut seeds = rand::rngs::StdRng::seed_from_u64(seed);
        let flow_noise = NoiseTape::new(seeds.random(), bands);
        let dim = hift.source_dim();
        let mut phase_rng = rand::rngs::StdRng::seed_from_u64(seeds.random());
        let (low, span) = (-std::f32::consts::PI, 2.0 * std::f32::consts::PI);
        let phase = (0..dim)
            .map(|_| low + phase_rng.random::<f32>() * span)
            .collect();
        let vocoder = VocoderState {
            sent: 0,
            acc: vec![0.0; dim],
            source_tail: Vec::new(),
            held: Vec::new(),
            phase,
            noise: NoiseTape::new(seeds.random(), dim),
            samples_out: 0,
            fade: fade_in_gains(sample_rate),
        };
        Ok(Self {
            s3gen,
            hift,
            prompt,
            plan,
            device,
            ratio,
            prompt_ids,
            prompt_mel,
            bands,
            flow_noise,
            tokens_final: 0,
            mel: Vec::new(),
            provisional: Vec::new(),
            chunks: 0,
            vocoder,
        })
    }

    /// Whether chunks can be rendered for this voice.
    pub fn streams(&self) -> bool {
        self.prompt_mel.is_some() && !self.prompt_ids.is_empty()
    }

    /// Chunks rendered so far.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// The final mel so far, [1, 80, frames].
    pub fn mel(&self) -> Result<Tensor> {
        let frames = self.mel.len() / self.bands;
        Tensor::from_vec(self.mel.clone(), (frames, self.bands), &self.device)?
            .t()?
            .unsqueeze(0)
    }

    /// T3's speech tokens so far (`speech`, all of them each time): renders a chunk
    /// when enough tokens past the last one are there, and returns the audio now
    /// final (empty when none is).
    pub fn push(&mut self, speech: &[u32]) -> Result<Vec<f32>> {
        if !self.streams() {
            return Ok(Vec::new());
        }
        let hop = (self.plan.first_tokens << self.chunks.min(16)).min(self.plan.max_tokens);
        let ready = speech.len().saturating_sub(self.plan.lookahead);
        if ready < self.tokens_final + hop.max(1) {
            return Ok(Vec::new());
        }
        self.flow_chunk(speech, false)?;
        self.vocode(false)
    }

    /// All of the sentence's tokens: the rest of its audio (all of it when no chunk
    /// was rendered before).
    pub fn finish(&mut self, speech: &[u32]) -> Result<Vec<f32>> {
        if speech.len() > self.tokens_final {
            self.flow_chunk(speech, true)?;
        } else {
            self.mel.append(&mut self.provisional);
        }
        self.vocode(true)
    }

    /// HiFT alone, on mel the caller made: `frames` (time-major, 80 per frame) are
    /// final and follow the frames given before, `provisional` may change; returns
    /// the audio now final (all of it when `last`). For checking the vocoder's joins
    /// on a known mel.
    pub fn push_mel(
        &mut self,
        frames: &[f32],
        provisional: &[f32],
        last: bool,
    ) -> Result<Vec<f32>> {
        self.mel.extend_from_slice(frames);
        self.provisional = provisional.to_vec();
        if last {
            self.mel.append(&mut self.provisional);
        }
        self.vocode(last)
    }

    /// Runs the flow on the tokens from `tokens_final` to the end of `speech`,
    /// conditioned on the prompt's tail and the last final tokens; keeps all frames
    /// when `last`, else all but the look-ahead's.
    fn flow_chunk(&mut self, speech: &[u32], last: bool) -> Result<()> {
        let (ratio, bands) = (self.ratio, self.bands);
        let m = self.prompt_ids.len();
        let first = self.tokens_final;
        let (prompt_keep, context) = if self.chunks == 0 && last {
            (m, 0)
        } else {
            let prompt = if self.chunks == 0 {
                self.plan.first_prompt_tokens
            } else {
                self.plan.prompt_tokens
            };
            (prompt.min(m), self.plan.context_tokens.min(first))
        };
        let (prompt_token, prompt_feat) = match &self.prompt_mel {
            Some(prompt_mel) => {
                let mut ids = self.prompt_ids[m - prompt_keep..].to_vec();
                if self.plan.context_as_prompt {
                    ids.extend_from_slice(&speech[first - context..first]);
                }
                let mut feat = prompt_mel[(m - prompt_keep) * ratio * bands..].to_vec();
                if self.plan.context_as_prompt {
                    feat.extend_from_slice(&self.mel[(first - context) * ratio * bands..]);
                }
                let frames = feat.len() / bands;
                (
                    Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?,
                    Tensor::from_vec(feat, (1, frames, bands), &self.device)?,
                )
            }
            // A prompt whose mel is not `ratio` frames per token: as it is.
            None => (
                self.prompt.prompt_token.clone(),
                self.prompt.prompt_feat.clone(),
            ),
        };
        let regenerated = if self.plan.context_as_prompt {
            0
        } else {
            context
        };
        let token = Tensor::new(&speech[first - regenerated..], &self.device)?.unsqueeze(0)?;
        // The noise of every frame at its place in the whole sentence: the prompt's
        // frames first, the speech's after them.
        let speech_start = m * ratio;
        let mut noise = self
            .flow_noise
            .rows((m - prompt_keep) * ratio, speech_start)
            .to_vec();
        noise.extend_from_slice(self.flow_noise.rows(
            speech_start + (first - context) * ratio,
            speech_start + speech.len() * ratio,
        ));
        let total = noise.len() / bands;
        let noise = Tensor::from_vec(noise, (total, bands), &self.device)?
            .t()?
            .unsqueeze(0)?
            .contiguous()?;
        let mel = self.s3gen.flow().inference_observed(
            &token,
            &prompt_token,
            &prompt_feat,
            &self.prompt.embedding,
            &noise,
            &mut |_, _| {},
        )?;
        let mut frames = mel.squeeze(0)?.t()?.flatten_all()?.to_vec1::<f32>()?;
        frames.drain(..regenerated * ratio * bands);
        // From the last chunk's provisional frames to this chunk's over their length.
        let overlap = (self.provisional.len() / bands).min(frames.len() / bands);
        for f in 0..overlap {
            let w = crossfade_gain(f, overlap);
            for b in 0..bands {
                let i = f * bands + b;
                frames[i] = self.provisional[i] * (1.0 - w) + frames[i] * w;
            }
        }
        let keep = if last {
            speech.len()
        } else {
            speech.len() - self.plan.lookahead
        };
        let split = ((keep - first) * ratio * bands).min(frames.len());
        self.provisional = frames.split_off(split);
        self.mel.extend_from_slice(&frames);
        if last {
            self.mel.append(&mut self.provisional);
        }
        self.tokens_final = keep;
        self.chunks += 1;
        Ok(())
    }

    /// HiFT over the mel from [`HIFT_LEFT`] frames before the first unsent frame to
    /// the last frame there is; returns the audio now final.
    fn vocode(&mut self, last: bool) -> Result<Vec<f32>> {
        let bands = self.bands;
        let scale = self.hift.upsample_scale();
        let final_frames = self.mel.len() / bands;
        let mut avail = self.mel.clone();
        avail.extend_from_slice(&self.provisional);
        let avail_frames = avail.len() / bands;
        let voc = &mut self.vocoder;
        let end = if last {
            avail_frames
        } else {
            final_frames.min(avail_frames.saturating_sub(HIFT_RIGHT))
        };
        if end <= voc.sent {
            return Ok(Vec::new());
        }
        let tail_frames = voc.source_tail.len() / scale;
        let w0 = voc.sent - tail_frames;
        let window = avail_frames - w0;
        let mel = Tensor::from_vec(avail[w0 * bands..].to_vec(), (window, bands), &self.device)?
            .t()?
            .unsqueeze(0)?
            .contiguous()?;
        let f0 = self.hift.f0(&mel)?.flatten_all()?.to_vec1::<f32>()?;
        let (sent, dim) = (voc.sent, voc.acc.len());
        // The source: kept for the frames before `sent`, carried on after them; its
        // phase after `end` is provisional.
        let mut acc = voc.acc.clone();
        let noise = voc.noise.rows(sent * scale, avail_frames * scale).to_vec();
        let split = (end - sent) * scale * dim;
        let now = self.hift.source_continued(
            &f0[sent - w0..end - w0],
            &voc.phase,
            &noise[..split],
            &mut acc,
            &self.device,
        )?;
        let mut later_acc = acc.clone();
        let mut parts = vec![
            Tensor::from_vec(
                voc.source_tail.clone(),
                (1, 1, tail_frames * scale),
                &self.device,
            )?,
            now.clone(),
        ];
        if avail_frames > end {
            parts.push(self.hift.source_continued(
                &f0[end - w0..],
                &voc.phase,
                &noise[split..],
                &mut later_acc,
                &self.device,
            )?);
        }
        let source = Tensor::cat(&parts, 2)?;
        let audio = self
            .hift
            .decode(&mel, &source)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let from = (sent - w0) * scale;
        let to = ((end - w0) * scale).min(audio.len());
        let mut out = audio[from..to].to_vec();
        let held = std::mem::take(&mut voc.held);
        let overlap = held.len().min(out.len());
        for (i, (o, h)) in out.iter_mut().zip(&held).enumerate() {
            let w = crossfade_gain(i, overlap);
            *o = h * (1.0 - w) + *o * w;
        }
        if !last {
            let hold = (HIFT_CROSSFADE * scale).min(audio.len() - to);
            voc.held = audio[to..to + hold].to_vec();
        }
        // The source of the last frames sent, for the next window's left context.
        let mut tail = std::mem::take(&mut voc.source_tail);
        tail.extend(now.flatten_all()?.to_vec1::<f32>()?);
        let keep = HIFT_LEFT.min(end) * scale;
        voc.source_tail = tail.split_off(tail.len() - keep);
        voc.acc = acc;
        voc.sent = end;
        // The reference's fade-in over the sentence's first 40 ms.
        for (i, o) in out.iter_mut().enumerate() {
            match voc.fade.get(voc.samples_out + i) {
                Some(g) => *o *= g,
                None => break,
            }
        }
        voc.samples_out += out.len();
        Ok(out)
    }
}

/// Raised-cosine gain of sample `i` of an `n`-sample crossfade, from 0 towards 1.
fn crossfade_gain(i: usize, n: usize) -> f32 {
    let x = (i as f32 + 0.5) / n.max(1) as f32;
    0.5 - 0.5 * (std::f32::consts::PI * x).cos()
}
