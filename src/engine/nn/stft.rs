//! Short-time Fourier transform and its inverse, as `torch.stft`/`torch.istft` with a
//! periodic Hann window as long as the transform, `center=True` (reflect padding) and
//! one-sided spectra. The transforms used by vocoders here are tiny (iSTFTNet uses
//! 20 points), so each frame's DFT is a small matrix product over all frames at once
//! rather than an FFT.

use std::f64::consts::PI;

use candle_core::{DType, Device, Result, Tensor};

use super::ops::{atan2, reflection_pad1d};

/// STFT/iSTFT with `n_fft` points, a hop of `hop` samples and a periodic Hann window of
/// `n_fft` samples. The window is folded into the DFT matrices once, at construction.
#[derive(Debug, Clone)]
pub struct Stft {
    n_fft: usize,
    hop: usize,
    /// [2·bins, n_fft]: rows give the real parts, then the imaginary parts, of the
    /// windowed one-sided DFT.
    analysis: Tensor,
    /// [n_fft, 2·bins]: the real inverse DFT of a one-sided spectrum (real columns,
    /// then imaginary columns), times the window.
    synthesis: Tensor,
    /// [1, n_fft, 1]: the squared window, for the overlap-added normalisation.
    window_sq: Tensor,
}

impl Stft {
    /// Fails unless `n_fft` is even and a multiple of `hop` (frames are then whole
    /// blocks of hops, which keeps framing and overlap-add to a few tensor ops).
    pub fn new(n_fft: usize, hop: usize, device: &Device) -> Result<Self> {
        if n_fft == 0 || hop == 0 || !n_fft.is_multiple_of(2) || !n_fft.is_multiple_of(hop) {
            candle_core::bail!("stft: n_fft {n_fft} must be even and a multiple of hop {hop}");
        }
        let bins = n_fft / 2 + 1;
        let n = n_fft as f64;
        let window: Vec<f64> = (0..n_fft)
            .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n).cos())
            .collect();
        // Angles reduced mod n_fft so cos/sin stay exact at the symmetric points.
        let angle = |k: usize, i: usize| 2.0 * PI * ((k * i) % n_fft) as f64 / n;
        let mut analysis = vec![0f32; 2 * bins * n_fft];
        for k in 0..bins {
            for i in 0..n_fft {
                analysis[k * n_fft + i] = (window[i] * angle(k, i).cos()) as f32;
                // DC and Nyquist have no imaginary part: exact zeros, as an FFT gives,
                // so the phase of a negative real bin is +π, not −π.
                if k != 0 && k != bins - 1 {
                    analysis[(bins + k) * n_fft + i] = (-window[i] * angle(k, i).sin()) as f32;
                }
            }
        }
        let mut synthesis = vec![0f32; n_fft * 2 * bins];
        for i in 0..n_fft {
            for k in 0..bins {
                let edge = k == 0 || k == bins - 1;
                let c = if edge { 1.0 } else { 2.0 } / n * window[i];
                synthesis[i * 2 * bins + k] = (c * angle(k, i).cos()) as f32;
                // The inverse real FFT ignores the imaginary part of DC and Nyquist.
                if !edge {
                    synthesis[i * 2 * bins + bins + k] = (-c * angle(k, i).sin()) as f32;
                }
            }
        }
        let window_sq: Vec<f32> = window.iter().map(|w| (w * w) as f32).collect();
        Ok(Self {
            n_fft,
            hop,
            analysis: Tensor::from_vec(analysis, (2 * bins, n_fft), device)?,
            synthesis: Tensor::from_vec(synthesis, (n_fft, 2 * bins), device)?,
            window_sq: Tensor::from_vec(window_sq, (1, n_fft, 1), device)?,
        })
    }

    /// Frequency bins of the one-sided spectrum, `n_fft/2 + 1`.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// `x` [B, L] → (magnitude, phase), each [B, bins, 1 + L/hop]: `torch.stft` then
    /// `abs` and `angle`.
    pub fn transform(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (re, im) = self.transform_complex(x)?;
        let magnitude = (re.sqr()? + im.sqr()?)?.sqrt()?;
        let phase = atan2(&im, &re)?;
        Ok((magnitude, phase))
    }

    /// `x` [B, L] → (real, imaginary), each [B, bins, 1 + L/hop]: `torch.stft` then
    /// `view_as_real`.
    pub fn transform_complex(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, len) = x.dims2()?;
        let half = self.n_fft / 2;
        let frames = 1 + len / self.hop;
        let blocks = self.n_fft / self.hop;
        let padded = reflection_pad1d(&x.to_dtype(DType::F32)?, half, half)?;
        // Frame f is blocks f .. f + n_fft/hop of hop samples each.
        let used = (frames - 1 + blocks) * self.hop;
        let columns = padded
            .narrow(1, 0, used)?
            .reshape((b, frames - 1 + blocks, self.hop))?
            .transpose(1, 2)?;
        let framed = (0..blocks)
            .map(|j| columns.narrow(2, j, frames))
            .collect::<Result<Vec<_>>>()?;
        let framed = Tensor::cat(&framed, 1)?; // [B, n_fft, frames]
        let spec = self.analysis.broadcast_left(b)?.matmul(&framed)?;
        let bins = self.bins();
        Ok((spec.narrow(1, 0, bins)?, spec.narrow(1, bins, bins)?))
    }

    /// (magnitude, phase) [B, bins, N] → [B, hop·(N − 1)]: `torch.istft` of
    /// `magnitude · e^{i·phase}` with no `length`, normalised by the overlap-added
    /// squared window and trimmed by `n_fft/2` at both ends.
    pub fn inverse(&self, magnitude: &Tensor, phase: &Tensor) -> Result<Tensor> {
        let (b, bins, frames) = magnitude.dims3()?;
        if bins != self.bins() || phase.dims() != magnitude.dims() || frames == 0 {
            candle_core::bail!(
                "istft: magnitude {:?} and phase {:?} for {} bins",
                magnitude.shape(),
                phase.shape(),
                self.bins()
            );
        }
        let spec = Tensor::cat(
            &[(magnitude * phase.cos()?)?, (magnitude * phase.sin()?)?],
            1,
        )?;
        let framed = self.synthesis.broadcast_left(b)?.matmul(&spec)?; // [B, n_fft, N]
        let signal = self.overlap_add(&framed)?;
        let window = self.window_sq.broadcast_as((1, self.n_fft, frames))?;
        let envelope = self.overlap_add(&window)?;
        let half = self.n_fft / 2;
        let len = self.hop * (frames - 1);
        signal
            .narrow(1, half, len)?
            .broadcast_div(&envelope.narrow(1, half, len)?)
    }

    /// Sums frames [B, n_fft, N] placed `hop` apart → [B, hop·(N − 1) + n_fft].
    fn overlap_add(&self, framed: &Tensor) -> Result<Tensor> {
        let (b, _, frames) = framed.dims3()?;
        let blocks = self.n_fft / self.hop;
        let mut sum: Option<Tensor> = None;
        for j in 0..blocks {
            let part =
                framed
                    .narrow(1, j * self.hop, self.hop)?
                    .pad_with_zeros(2, j, blocks - 1 - j)?;
            sum = Some(match sum {
                None => part,
                Some(s) => (s + part)?,
            });
        }
        let Some(sum) = sum else {
            candle_core::bail!("overlap_add: no blocks");
        };
        sum.transpose(1, 2)?
            .reshape((b, (frames + blocks - 1) * self.hop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;

    #[test]
    fn round_trip_reproduces_the_signal() -> Result<()> {
        let dev = Device::Cpu;
        let stft = Stft::new(20, 5, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (2, 600), &dev)?;
        let (mag, phase) = stft.transform(&x)?;
        assert_eq!(mag.dims(), [2, 11, 121]);
        let y = stft.inverse(&mag, &phase)?;
        assert_eq!(y.dims(), [2, 600]);
        let diff = (y - &x)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }

    #[test]
    fn known_spectrum_of_a_cosine() -> Result<()> {
        let dev = Device::Cpu;
        let stft = Stft::new(20, 5, &dev)?;
        // cos(2π·2t/20): all energy in bin 2; a Hann window spreads it to bins 1..3
        // with magnitudes n/4·(1/2, 1, 1/2) = 2.5, 5, 2.5.
        let x: Vec<f32> = (0..100)
            .map(|t| (2.0 * PI * 2.0 * t as f64 / 20.0).cos() as f32)
            .collect();
        let x = Tensor::from_vec(x, (1, 100), &dev)?;
        let (mag, phase) = stft.transform(&x)?;
        let frame = mag.i((0, .., 10))?.to_vec1::<f32>()?;
        for (k, want) in [(0, 0.0), (1, 2.5), (2, 5.0), (3, 2.5), (4, 0.0), (10, 0.0)] {
            assert!((frame[k] - want).abs() < 1e-5, "bin {k}: {frame:?}");
        }
        // Frame 10 starts at sample 40 (50 − n_fft/2): the cosine's phase there is 0,
        // and windowing at the frame's start leaves bin 2 real and positive.
        assert!(phase.i((0, 2, 10))?.to_scalar::<f32>()?.abs() < 1e-5);
        // A constant negative signal: DC is real and negative, phase exactly +π.
        let neg = Tensor::full(-1f32, (1, 40), &dev)?;
        let (_, phase) = stft.transform(&neg)?;
        let dc = phase.i((0, 0))?.to_vec1::<f32>()?;
        assert!(dc.iter().all(|&p| p == std::f32::consts::PI), "{dc:?}");
        Ok(())
    }

    #[test]
    fn rejects_hops_that_do_not_divide_the_frame() {
        assert!(Stft::new(20, 6, &Device::Cpu).is_err());
        assert!(Stft::new(21, 7, &Device::Cpu).is_err());
    }
}
