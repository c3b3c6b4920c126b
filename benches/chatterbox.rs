//! Chatterbox Turbo speed: voxpool's Candle port against the PyTorch reference on the
//! same full-size random weights and inputs, in one command.
//!
//! 1. The full-size random weights of the three fixture scripts (see tools/README.md):
//!    `python tools/chatterbox_t3_fixtures.py --full /tmp/t3-full` (1.9 GB),
//!    `python tools/chatterbox_s3gen_fixtures.py --full /tmp/s3gen-full` (480 MB),
//!    `python tools/chatterbox_hift_fixtures.py --full /tmp/hift-full` (94 MB);
//! 2. `cargo bench --bench chatterbox` (reads `CHATTERBOX_T3_FULL`, `S3GEN_FULL_DIR` and
//!    `VOXPOOL_HIFT_FULL`, defaults the folders above; runs the reference with
//!    `CHATTERBOX_REF_PYTHON`, default `/tmp/cbvenv/bin/python`, when it exists;
//!    `CHATTERBOX_BENCH_RUNS` timed runs after one warm-up, default 3, medians reported;
//!    `CHATTERBOX_BENCH_GEN` T3 decode steps, default 75 (with the first token and three
//!    silence tokens, a 3.16 s sentence); `CHATTERBOX_BENCH_QUANT` the
//!    quantised T3 variants also timed, default `q8_0,q4k`, `none` for none;
//!    `CHATTERBOX_BENCH_S3GEN=int8` runs every voxpool row with the flow's products in
//!    8-bit integers, as `CHATTERBOX_S3GEN_QUANT=int8` does).
//!
//! Both sides do the same work (`tools/chatterbox_bench_reference.py` is the other
//! half): T3 prefills [speaker, 375 voice-prompt tokens, 40 text tokens, start] and then
//! runs a fixed number of cached decode steps, each with Turbo's default logits
//! processors but taking the arg-max among the 6561 audio tokens (no sampling, no
//! stop); S3Gen (flow + HiFT) turns the 100 speech tokens of the S3Gen fixture into
//! 4 s of audio with its 250-token prompt; end to end chains the two (T3's tokens
//! plus three silence tokens through S3Gen with that prompt), as the engine does.
//! voxpool runs end to end twice per run: as a voice's first request (the conditioning
//! and the text through T3), then as a later request in that voice, whose conditioning
//! keys and values the engine keeps (`T3::prefill`: only the 42 text and start
//! positions run); the reference runs all 417 positions every time, so both voxpool
//! rows compare with its one figure.
//!
//! Each run also speaks the sentence as a streamed response does, in a voice T3 keeps:
//! S3Gen and HiFT render T3's tokens in parts while T3 goes on (the engine's
//! `StreamPlan`), timing its first audio and its end; the reference sends nothing
//! before its whole sentence, so its first audio is its end to end. The streamed mel is
//! compared with the same tokens rendered whole (SNR).
//!
//! Prints T3 prefill time and decode tokens/s, S3Gen and end-to-end speed in seconds
//! of audio per second of compute (×RT), for both and their ratio; then voxpool's T3
//! quantised at load (`CHATTERBOX_T3_QUANT`), prefill, decode and end to end with the
//! same S3Gen, against the f32 reference; cold load time (T3's apart, and for each
//! quantised T3 the first load, which quantises and writes the cache of its weights,
//! and the next, which reads them from there), the first (warm-up) synthesis and peak
//! RSS.
//!
//! Timings depend on what else the machine runs. So the reference is loaded once in a
//! child process (`--serve`, after voxpool's load, each load timed alone) and the two
//! sides take turns run by run, the order swapped every run, including with each
//! quantised T3 against the f32 reference's end to end: a change of load on the machine
//! falls on both sides of each ratio.

mod common;

use common::{cpu_model, peak_rss_mib};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use voxpool::engine::chatterbox::config::T3Config;
use voxpool::engine::chatterbox::s3gen::hifigan::{trim_fade, HiFTConfig, HiFTGenerator};
use voxpool::engine::chatterbox::s3gen::{PromptRef, S3GenConfig, S3Token2Mel};
use voxpool::engine::chatterbox::stream::{SpeechRenderer, StreamPlan};
use voxpool::engine::chatterbox::t3::{QuantCache, SamplingParams, T3Cond, T3Quant, T3};
use voxpool::engine::nn::safetensors_file::var_builder;

const SAMPLE_RATE: f64 = 24_000.0;
/// Speech ids at or above this are start/stop tokens, not audio.
const SPEECH_VOCAB: u32 = 6561;
/// `S3GEN_SIL`, appended three times after T3's tokens.
const SILENCE_TOKEN: u32 = 4299;
const TEXT_TOKENS: usize = 40;
const PROMPT_TOKENS: usize = 375;

/// Deterministic text ids (same formula as the reference script).
fn text_ids(n: usize) -> Vec<u32> {
    (0..n).map(|i| 1000 + ((i * 37) % 40_000) as u32).collect()
}

/// Deterministic voice-prompt speech tokens (same formula as the reference script).
fn prompt_ids(n: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + 11) % 6561) as u32).collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var(var).map_or_else(|_| PathBuf::from(default), PathBuf::from)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// One streamed request: seconds to its first audio and to its end, seconds of audio
/// (first part and all), parts, and its mel against the same tokens rendered whole.
#[derive(Clone, Copy)]
struct Streamed {
    first: f64,
    first_audio: f64,
    total: f64,
    audio: f64,
    parts: usize,
    mel_snr: f64,
}

impl Streamed {
    fn median_of(runs: &[Streamed]) -> Streamed {
        let med = |f: fn(&Streamed) -> f64| median(runs.iter().map(f).collect());
        Streamed {
            first: med(|s| s.first),
            first_audio: med(|s| s.first_audio),
            total: med(|s| s.total),
            audio: med(|s| s.audio),
            parts: runs.first().map_or(0, |s| s.parts),
            mel_snr: med(|s| s.mel_snr),
        }
    }
}

/// Signal-to-noise ratio of `got` against `want` (same shape), in dB.
fn snr_db(want: &Tensor, got: &Tensor) -> candle_core::Result<f64> {
    let want = want.flatten_all()?.to_vec1::<f32>()?;
    let got = got.flatten_all()?.to_vec1::<f32>()?;
    let signal: f64 = want.iter().map(|&w| f64::from(w).powi(2)).sum();
    let noise: f64 = want
        .iter()
        .zip(&got)
        .map(|(&w, &g)| f64::from(w - g).powi(2))
        .sum();
    Ok(10.0 * (signal / noise.max(1e-30)).log10())
}

struct Models {
    t3: T3,
    s3gen: S3Token2Mel,
    hift: HiFTGenerator,
    /// Seconds T3's f32 load took (part of the whole load).
    t3_load_s: f64,
}

/// Seconds of one end-to-end run and its parts.
#[derive(Default, Clone, Copy)]
struct Times {
    /// A voice's first request: its conditioning and the text through the backbone.
    t3_prefill: f64,
    t3_decode: f64,
    e2e_flow: f64,
    e2e_hift: f64,
    e2e: f64,
    /// A request in a voice whose conditioning is kept: the text positions only (the
    /// reference always runs every position, so its figures are its `t3_prefill` and
    /// `e2e`).
    t3_prefill_kept: f64,
    e2e_kept: f64,
    flow: f64,
    hift: f64,
}

impl Times {
    /// Each part's median over `runs`.
    fn median_of(runs: &[Times]) -> Times {
        let med = |f: fn(&Times) -> f64| median(runs.iter().map(f).collect());
        Times {
            t3_prefill: med(|t| t.t3_prefill),
            t3_decode: med(|t| t.t3_decode),
            e2e_flow: med(|t| t.e2e_flow),
            e2e_hift: med(|t| t.e2e_hift),
            e2e: med(|t| t.e2e),
            t3_prefill_kept: med(|t| t.t3_prefill_kept),
            e2e_kept: med(|t| t.e2e_kept),
            flow: med(|t| t.flow),
            hift: med(|t| t.hift),
        }
    }
}

impl Models {
    fn load(t3_dir: &Path, s3gen_dir: &Path, hift_dir: &Path) -> candle_core::Result<Self> {
        // As the engine loads a checkpoint: tensor by tensor from the file.
        let map = |path: PathBuf| var_builder(&path, DType::F32, &Device::Cpu);
        let started = Instant::now();
        let t3 = T3::load(
            map(t3_dir.join("t3_turbo_v1.safetensors"))?,
            &T3Config::turbo(),
        )?;
        let t3_load_s = started.elapsed().as_secs_f64();
        let s3gen = S3Token2Mel::load(
            map(s3gen_dir.join("s3gen_full.safetensors"))?,
            &S3GenConfig::turbo(),
        )?;
        let hift = HiFTGenerator::load(
            map(hift_dir.join("hift_full.safetensors"))?.pp("mel2wav"),
            &HiFTConfig::s3gen(),
        )?;
        Ok(Self {
            t3,
            s3gen,
            hift,
            t3_load_s,
        })
    }

    /// `inference_turbo` with arg-max picks among the audio tokens and `steps` decode
    /// steps: (tokens, prefill seconds, decode seconds).
    fn t3_generate(
        &self,
        cond: &T3Cond,
        text: &[u32],
        steps: usize,
        kept: bool,
    ) -> candle_core::Result<(Vec<u32>, f64, f64)> {
        self.t3_generate_with(cond, text, steps, kept, &mut |_| Ok(()))
    }

    /// [`Models::t3_generate`], handing the tokens so far to `on_token` after each.
    fn t3_generate_with(
        &self,
        cond: &T3Cond,
        text: &[u32],
        steps: usize,
        kept: bool,
        on_token: &mut dyn FnMut(&[u32]) -> candle_core::Result<()>,
    ) -> candle_core::Result<(Vec<u32>, f64, f64)> {
        let device = self.t3.device();
        let params = SamplingParams::default();
        let pick = |hidden: &Tensor, history: &[u32]| -> candle_core::Result<u32> {
            let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
            let mut scores: Vec<f32> = self.t3.speech_logits(&last)?.flatten_all()?.to_vec1()?;
            params.process(&mut scores, history);
            scores[SPEECH_VOCAB as usize..].fill(f32::NEG_INFINITY);
            Ok(scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u32))
        };
        if !kept {
            self.t3.forget_voice_prefix();
        }
        let start = Instant::now();
        let text = Tensor::new(text, device)?.unsqueeze(0)?;
        let start_token = self.t3.hp().start_speech_token;
        let start_tokens = Tensor::new(&[[start_token]], device)?;
        let (hidden, mut cache) = self.t3.prefill(cond, &text, &start_tokens, steps + 1)?;
        let mut generated = vec![pick(&hidden, &[start_token])?];
        let prefill = start.elapsed().as_secs_f64();
        on_token(&generated)?;
        let start = Instant::now();
        for _ in 0..steps {
            let token = *generated.last().expect("one token");
            let embed = self.t3.embed_speech(&Tensor::new(&[[token]], device)?)?;
            let hidden = self.t3.forward_hidden(&embed, &mut cache)?;
            let next = pick(&hidden, &generated)?;
            generated.push(next);
            on_token(&generated)?;
        }
        Ok((generated, prefill, start.elapsed().as_secs_f64()))
    }

    /// T3's tokens (audio ones, then three silence tokens) through S3Gen, as the engine
    /// chains them: the run's T3 and end-to-end times, the token count and the samples.
    fn end_to_end(
        &self,
        cond: &T3Cond,
        text: &[u32],
        steps: usize,
        prompt: &PromptRef,
        seed: u64,
    ) -> candle_core::Result<(Times, usize, usize)> {
        let mut t = Times::default();
        let mut count = 0;
        let mut samples = 0;
        // The voice's first request, then one with its conditioning kept (the engine's
        // usual case).
        for kept in [false, true] {
            let start = Instant::now();
            let (mut tokens, prefill, decode) = self.t3_generate(cond, text, steps, kept)?;
            tokens.retain(|&id| id < SPEECH_VOCAB);
            tokens.extend([SILENCE_TOKEN; 3]);
            count = tokens.len();
            let tokens = Tensor::new(tokens.as_slice(), self.t3.device())?.unsqueeze(0)?;
            let (flow, hift, n) = self.vocode(&tokens, prompt, seed)?;
            samples = n;
            let e2e = start.elapsed().as_secs_f64();
            if kept {
                (t.t3_prefill_kept, t.e2e_kept) = (prefill, e2e);
            } else {
                (t.t3_prefill, t.t3_decode) = (prefill, decode);
                (t.e2e_flow, t.e2e_hift, t.e2e) = (flow, hift, e2e);
            }
        }
        Ok((t, count, samples))
    }

    /// A streamed request in a voice whose conditioning T3 keeps, as the engine runs
    /// it: S3Gen and HiFT render T3's tokens in parts while T3 goes on (the engine's
    /// [`StreamPlan`]). Then the same tokens rendered whole, for the mel comparison.
    fn streamed(
        &self,
        cond: &T3Cond,
        text: &[u32],
        steps: usize,
        prompt: &PromptRef,
        seed: u64,
    ) -> candle_core::Result<Streamed> {
        let plan = StreamPlan::default();
        let mut renderer =
            SpeechRenderer::new(&self.s3gen, &self.hift, prompt, plan.clone(), seed, 24_000)?;
        let start = Instant::now();
        let mut first = None;
        let mut samples = 0;
        let mut speech = Vec::new();
        let (tokens, _, _) =
            self.t3_generate_with(cond, text, steps, true, &mut |generated: &[u32]| {
                speech.clear();
                speech.extend(generated.iter().copied().filter(|&t| t < SPEECH_VOCAB));
                let part = renderer.push(&speech)?.len();
                if part > 0 && first.is_none() {
                    first = Some((start.elapsed().as_secs_f64(), part));
                }
                samples += part;
                Ok(())
            })?;
        let mut speech: Vec<u32> = tokens.into_iter().filter(|&t| t < SPEECH_VOCAB).collect();
        speech.extend([SILENCE_TOKEN; 3]);
        samples += renderer.finish(&speech)?.len();
        let total = start.elapsed().as_secs_f64();
        let (first, first_samples) = first.unwrap_or((total, samples));
        let mut whole = SpeechRenderer::new(&self.s3gen, &self.hift, prompt, plan, seed, 24_000)?;
        whole.finish(&speech)?;
        Ok(Streamed {
            first,
            first_audio: first_samples as f64 / SAMPLE_RATE,
            total,
            audio: samples as f64 / SAMPLE_RATE,
            parts: renderer.chunks(),
            mel_snr: snr_db(&whole.mel()?, &renderer.mel()?)?,
        })
    }

    /// S3Gen flow, then HiFT and the fade-in: (flow seconds, HiFT seconds, samples).
    fn vocode(
        &self,
        tokens: &Tensor,
        prompt: &PromptRef,
        seed: u64,
    ) -> candle_core::Result<(f64, f64, usize)> {
        let start = Instant::now();
        let noise = self
            .s3gen
            .draw_noise(tokens.dim(1)?, prompt, &Device::Cpu)?;
        let mel = self.s3gen.mel(tokens, prompt, &noise)?;
        let flow = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let wav = trim_fade(&self.hift.inference_seeded(&mel, seed)?, 24_000)?;
        Ok((flow, start.elapsed().as_secs_f64(), wav.dim(1)?))
    }
}

/// The PyTorch reference (`tools/chatterbox_bench_reference.py --serve`) in a child
/// process: loaded once, then asked for one run at a time between voxpool's own.
struct Reference {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Reference {
    /// Starts the reference and waits for its models to load; `None` (with the reason
    /// on stderr) when it cannot.
    fn start(python: &str, dirs: [&Path; 3], steps: usize, cores: usize) -> Option<Self> {
        let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/tools");
        let mut child = Command::new(python)
            .current_dir(tools)
            .arg("chatterbox_bench_reference.py")
            .arg("--serve")
            .arg("--t3")
            .arg(dirs[0])
            .arg("--s3gen")
            .arg(dirs[1])
            .arg("--hift")
            .arg(dirs[2])
            .args(["--gen", &steps.to_string()])
            .args(["--text-tokens", &TEXT_TOKENS.to_string()])
            .args(["--prompt-tokens", &PROMPT_TOKENS.to_string()])
            .args(["--threads", &cores.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("PyTorch reference: {e}"))
            .ok()?;
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take()?);
        let mut reference = Self {
            child,
            input,
            output,
        };
        // The first line says the models are loaded.
        reference.read()?;
        Some(reference)
    }

    fn read(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => {
                eprintln!("PyTorch reference: ended without an answer");
                return None;
            }
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| eprintln!("PyTorch reference: {e}: {line}"))
            .ok()?;
        if let Some(error) = value.get("error") {
            eprintln!("PyTorch reference: {error}");
            return None;
        }
        Some(value)
    }

    /// One request (a line of the `--serve` protocol) and its answer.
    fn request(&mut self, request: &str) -> Option<serde_json::Value> {
        writeln!(self.input.as_mut()?, "{request}")
            .map_err(|e| eprintln!("PyTorch reference: {e}"))
            .ok()?;
        self.read()
    }

    /// One timed run (`run`: end to end and S3Gen alone; `e2e`: end to end only) of
    /// `reference`, which is dropped (the rest of the bench goes on without it) when it
    /// fails.
    fn ask(reference: &mut Option<Self>, kind: &str, seed: usize) -> Option<Times> {
        let answer = reference.as_mut()?.request(&format!("{kind} {seed}"));
        if answer.is_none() {
            *reference = None;
        }
        let r = answer?;
        let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
        // It always runs every position, so its "kept" figures are its only ones.
        Some(Times {
            t3_prefill: f("t3_prefill"),
            t3_decode: f("t3_decode"),
            e2e_flow: f("e2e_flow"),
            e2e_hift: f("e2e_hift"),
            e2e: f("e2e"),
            t3_prefill_kept: f("t3_prefill"),
            e2e_kept: f("e2e"),
            flow: f("flow"),
            hift: f("hift"),
        })
    }

    /// voxpool's run `ours` and the reference's (`kind` as for [`Reference::ask`]) one
    /// after the other, the reference first on odd runs: who goes first alternates.
    fn in_turns<T>(
        reference: &mut Option<Self>,
        kind: &str,
        run: usize,
        ours: impl FnOnce() -> candle_core::Result<T>,
    ) -> candle_core::Result<(T, Option<Times>)> {
        if run % 2 == 1 {
            let theirs = Self::ask(reference, kind, run);
            Ok((ours()?, theirs))
        } else {
            let t = ours()?;
            Ok((t, Self::ask(reference, kind, run)))
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        // End of input ends the child.
        self.input.take();
        let _ = self.child.wait();
    }
}

fn main() -> candle_core::Result<()> {
    // As the server does (see its `main`).
    voxpool::config::apply_cpu_threads(voxpool::config::cpu_threads());
    let t3_dir = env_path("CHATTERBOX_T3_FULL", "/tmp/t3-full");
    let s3gen_dir = env_path("S3GEN_FULL_DIR", "/tmp/s3gen-full");
    let hift_dir = env_path("VOXPOOL_HIFT_FULL", "/tmp/hift-full");
    let needed = [
        (
            t3_dir.join("t3_turbo_v1.safetensors"),
            "chatterbox_t3_fixtures.py",
            &t3_dir,
        ),
        (
            s3gen_dir.join("s3gen_full_io.safetensors"),
            "chatterbox_s3gen_fixtures.py",
            &s3gen_dir,
        ),
        (
            hift_dir.join("hift_full.safetensors"),
            "chatterbox_hift_fixtures.py",
            &hift_dir,
        ),
    ];
    let mut missing = false;
    for (file, script, dir) in &needed {
        if !file.is_file() {
            println!(
                "{} not found: run `/tmp/cbvenv/bin/python tools/{script} --full {}` first",
                file.display(),
                dir.display()
            );
            missing = true;
        }
    }
    if missing {
        return Ok(());
    }
    let runs: usize = std::env::var("CHATTERBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let steps: usize = std::env::var("CHATTERBOX_BENCH_GEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(75);
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Chatterbox Turbo, full size, random weights — {cpu}, {cores} cores");
    println!(
        "T3: prefill of 1 + {PROMPT_TOKENS} + {TEXT_TOKENS} + 1 positions, {steps} decode steps; \
         S3Gen: 250 prompt + 100 speech tokens; {runs} runs after a warm-up, medians"
    );

    let load_avg_ours = load_average();
    let started = Instant::now();
    let mut models = Models::load(&t3_dir, &s3gen_dir, &hift_dir)?;
    if std::env::var("CHATTERBOX_BENCH_S3GEN").is_ok_and(|v| v == "int8") {
        models.s3gen.quantise_int8();
        if voxpool::engine::nn::int8::int8_available() {
            println!(
                "voxpool's S3Gen flow: products in 8-bit integers (CHATTERBOX_S3GEN_QUANT=int8)"
            );
        } else {
            println!(
                "CHATTERBOX_BENCH_S3GEN=int8: this CPU has neither AVX2 nor AVX-512 VNNI, the flow stays f32"
            );
        }
    }
    let load_s = started.elapsed().as_secs_f64();

    let device = Device::Cpu;
    let cond = T3Cond {
        speaker_emb: (Tensor::ones((1, 256), DType::F32, &device)? / 16.0)?,
        cond_prompt_speech_tokens: Some(
            Tensor::new(prompt_ids(PROMPT_TOKENS).as_slice(), &device)?.unsqueeze(0)?,
        ),
    };
    let text = text_ids(TEXT_TOKENS);
    let io = candle_core::safetensors::load(s3gen_dir.join("s3gen_full_io.safetensors"), &device)?;
    let get = |k: &str| {
        io.get(&format!("case0.{k}"))
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("case0.{k} missing")))
    };
    let prompt = PromptRef {
        // Token ids as the engine holds them (`conds.pt` is read as u32).
        prompt_token: get("prompt_token")?.to_dtype(DType::U32)?,
        prompt_feat: get("prompt_feat")?,
        embedding: get("embedding")?,
    };
    let speech = get("speech_tokens")?.to_dtype(DType::U32)?;

    // The reference loads after voxpool (each load timed alone), then both stay loaded
    // and take turns run by run, so a change of load on the machine falls on both.
    let python =
        std::env::var("CHATTERBOX_REF_PYTHON").unwrap_or_else(|_| "/tmp/cbvenv/bin/python".into());
    let mut reference = if Path::new(&python).exists() {
        Reference::start(&python, [&t3_dir, &s3gen_dir, &hift_dir], steps, cores)
    } else {
        None
    };

    let mut first = Times::default();
    let mut all = Vec::new();
    let mut streams = Vec::new();
    let (mut ref_first, mut ref_all) = (None, Vec::new());
    let prefill_len = 1 + PROMPT_TOKENS + TEXT_TOKENS + 1;
    let (mut audio_s, mut e2e_audio_s, mut e2e_tokens) = (0.0, 0.0, 0);
    for run in 0..=runs {
        let (t, theirs) = Reference::in_turns(&mut reference, "run", run, || {
            let (mut t, tokens, samples) =
                models.end_to_end(&cond, &text, steps, &prompt, run as u64)?;
            e2e_tokens = tokens;
            e2e_audio_s = samples as f64 / SAMPLE_RATE;
            let (flow, hift, samples) = models.vocode(&speech, &prompt, run as u64)?;
            (t.flow, t.hift) = (flow, hift);
            audio_s = samples as f64 / SAMPLE_RATE;
            streams.push(models.streamed(&cond, &text, steps, &prompt, run as u64)?);
            Ok(t)
        })?;
        if run == 0 {
            first = t;
            ref_first = theirs;
            streams.clear();
        } else {
            all.push(t);
            ref_all.extend(theirs);
        }
    }
    let streamed = Streamed::median_of(&streams);
    let ours = Times::median_of(&all);
    let our_peak = peak_rss_mib();

    // The quantised T3 variants, each loaded in place of the f32 one and timed the same
    // way (prefill, decode, end to end with the same S3Gen work), in turns with the f32
    // reference's end to end.
    let quants: Vec<T3Quant> = std::env::var("CHATTERBOX_BENCH_QUANT")
        .unwrap_or_else(|_| "q8_0,q4k".into())
        .split(',')
        .filter_map(|q| q.trim().parse().ok())
        .filter(|q| *q != T3Quant::F32)
        .collect();
    // Each is loaded twice, as the engine loads it: quantised from the checkpoint (and
    // its quantised weights written to a cache folder, here a fresh temporary one),
    // then read back from that cache; the second is the one timed.
    let cache_dir = tempfile::tempdir().map_err(candle_core::Error::wrap)?;
    let checkpoint = t3_dir.join("t3_turbo_v1.safetensors");
    let mut quantised = Vec::new();
    for quant in quants {
        let cache = QuantCache::new(cache_dir.path(), &checkpoint, quant);
        let mut load = || -> candle_core::Result<f64> {
            let started = Instant::now();
            models.t3 = T3::load_cached(
                var_builder(&checkpoint, DType::F32, &Device::Cpu)?,
                &T3Config::turbo(),
                quant,
                cache.as_ref(),
            )?;
            Ok(started.elapsed().as_secs_f64())
        };
        let cold = load()?;
        let warm = load()?;
        if !models.t3.quant_from_cache() {
            println!("T3 {quant}: the cache of its quantised weights was not used");
        }
        let load = (cold, warm);
        let (mut times, mut ref_times, mut streams) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=runs {
            let (t, theirs) = Reference::in_turns(&mut reference, "e2e", run, || {
                let t = models
                    .end_to_end(&cond, &text, steps, &prompt, run as u64)?
                    .0;
                let s = models.streamed(&cond, &text, steps, &prompt, run as u64)?;
                if run > 0 {
                    streams.push(s);
                }
                Ok(t)
            })?;
            if run > 0 {
                times.push(t);
                ref_times.extend(theirs);
            }
        }
        let theirs = (ref_times.len() == runs).then(|| Times::median_of(&ref_times));
        quantised.push((
            quant,
            Times::median_of(&times),
            load,
            theirs,
            Streamed::median_of(&streams),
        ));
    }
    let models_t3_load_s = models.t3_load_s;
    drop(models);

    let ref_facts = reference.as_mut().and_then(|r| r.request("facts"));
    let theirs = match (ref_first, ref_all.len() == runs) {
        (Some(first), true) => Some((Times::median_of(&ref_all), first)),
        _ => None,
    };

    // (label, voxpool value, reference value, higher is better)
    let steps_f = steps as f64;
    let rows: Vec<(String, f64, Option<f64>, bool)> = {
        let row = |label: String, f: &dyn Fn(&Times) -> f64, higher: bool| {
            (label, f(&ours), theirs.as_ref().map(|(t, _)| f(t)), higher)
        };
        vec![
            row(
                format!("T3 prefill, {prefill_len} positions (s)"),
                &|t| t.t3_prefill,
                false,
            ),
            row(
                format!(
                    "T3 prefill, voice kept: {} positions (s)",
                    prefill_len - 1 - PROMPT_TOKENS
                ),
                &|t| t.t3_prefill_kept,
                false,
            ),
            row(
                format!("T3 decode, {steps} steps (tokens/s)"),
                &|t| steps_f / t.t3_decode,
                true,
            ),
            row(
                format!("S3Gen flow, {audio_s:.2} s audio (×RT)"),
                &|t| audio_s / t.flow,
                true,
            ),
            row(
                format!("HiFT + fade, {audio_s:.2} s audio (×RT)"),
                &|t| audio_s / t.hift,
                true,
            ),
            row(
                "S3Gen flow + HiFT (×RT)".into(),
                &|t| audio_s / (t.flow + t.hift),
                true,
            ),
            row(
                format!("end to end, {e2e_tokens} tokens = {e2e_audio_s:.2} s (×RT)"),
                &|t| e2e_audio_s / t.e2e,
                true,
            ),
            row(
                "end to end, voice kept (×RT)".into(),
                &|t| e2e_audio_s / t.e2e_kept,
                true,
            ),
            row(
                "  of which T3 (s)".into(),
                &|t| t.t3_prefill + t.t3_decode,
                false,
            ),
            row(
                "  of which S3Gen flow + HiFT (s)".into(),
                &|t| t.e2e_flow + t.e2e_hift,
                false,
            ),
        ]
    };
    let mut rows = rows;
    // PyTorch sends nothing before the whole sentence is rendered: its first audio is
    // its end to end.
    let stream_rows = |rows: &mut Vec<(String, f64, Option<f64>, bool)>,
                       label: &str,
                       s: &Streamed,
                       theirs: Option<&Times>| {
        rows.push((
            format!("streamed{label}: first audio (s)"),
            s.first,
            theirs.map(|r| r.e2e),
            false,
        ));
        rows.push((
            format!("streamed{label}: end to end (×RT)"),
            s.audio / s.total,
            theirs.map(|r| e2e_audio_s / r.e2e),
            true,
        ));
    };
    stream_rows(
        &mut rows,
        ", voice kept",
        &streamed,
        theirs.as_ref().map(|(t, _)| t),
    );
    for (quant, t, _, theirs, s) in &quantised {
        let theirs = theirs.as_ref();
        rows.push((
            format!("T3 {quant} prefill (s)"),
            t.t3_prefill,
            theirs.map(|r| r.t3_prefill),
            false,
        ));
        rows.push((
            format!(
                "T3 {quant} prefill, voice kept: {} (s)",
                prefill_len - 1 - PROMPT_TOKENS
            ),
            t.t3_prefill_kept,
            theirs.map(|r| r.t3_prefill),
            false,
        ));
        rows.push((
            format!("T3 {quant} decode (tokens/s)"),
            steps_f / t.t3_decode,
            theirs.map(|r| steps_f / r.t3_decode),
            true,
        ));
        rows.push((
            format!("end to end, {quant} T3 (×RT)"),
            e2e_audio_s / t.e2e,
            theirs.map(|r| e2e_audio_s / r.e2e),
            true,
        ));
        rows.push((
            format!("end to end, {quant} T3, voice kept (×RT)"),
            e2e_audio_s / t.e2e_kept,
            theirs.map(|r| e2e_audio_s / r.e2e),
            true,
        ));
        stream_rows(&mut rows, &format!(", {quant} T3"), s, theirs);
    }
    println!(
        "\n{:<42} {:>10} {:>10} {:>16}",
        "", "voxpool", "PyTorch", "voxpool speed-up"
    );
    for (label, ours, theirs, higher) in rows {
        match theirs {
            Some(t) => {
                let speedup = if higher { ours / t } else { t / ours };
                println!("{label:<42} {ours:>10.3} {t:>10.3} {speedup:>15.2}×");
            }
            None => println!("{label:<42} {ours:>10.3} {:>10} {:>16}", "-", "-"),
        }
    }
    println!(
        "\nvoxpool: load {load_s:.2} s (safetensors read tensor by tensor), first end-to-end run \
         {:.2} s (T3 {:.2} s), peak RSS {our_peak:.0} MiB; load average at the start: \
         {load_avg_ours}",
        first.e2e,
        first.t3_prefill + first.t3_decode
    );
    println!("voxpool T3 f32: load {:.2} s", models_t3_load_s);
    for (quant, _, (cold, warm), _, _) in &quantised {
        println!(
            "voxpool T3 {quant}: load and quantise {cold:.2} s (and write the cache), \
             load from the cache {warm:.2} s"
        );
    }
    println!(
        "streamed (f32 T3): {} parts, the first {:.2} s of audio; mel against the same \
         tokens rendered whole: SNR {:.1} dB",
        streamed.parts, streamed.first_audio, streamed.mel_snr
    );
    match (&ref_facts, &theirs) {
        (Some(r), Some((_, first))) => println!(
            "PyTorch {}: load {:.2} s, first end-to-end run {:.2} s (T3 {:.2} s), peak RSS \
             {:.0} MiB, {} threads; runs alternate with voxpool's",
            r["torch"].as_str().unwrap_or("?"),
            r["load_seconds"].as_f64().unwrap_or(0.0),
            first.e2e,
            first.t3_prefill + first.t3_decode,
            r["peak_rss_mib"].as_f64().unwrap_or(0.0),
            r["threads"]
        ),
        _ => println!(
            "PyTorch reference not run or failed (set CHATTERBOX_REF_PYTHON to a venv with \
             chatterbox-tts 0.1.7)"
        ),
    }
    println!("load average after: {}", load_average());
    Ok(())
}
