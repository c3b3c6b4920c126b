//! Opus in Ogg (RFC 7845): mono, 20 ms frames at the engine's rate, 48 kbit/s, with
//! the pre-skip and granule positions a player needs to play exactly the samples
//! spoken (no encoder delay at the start, no padding at the end). Pure Rust
//! (`opus-rs`, `ogg`): nothing to install.

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use opus_rs::{Application, OpusEncoder};

use super::AudioError;

/// Rates Opus encodes natively; others are resampled to 48 kHz first.
const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];
const BITRATE: i32 = 48_000;
/// The encoder's look-ahead (2.5 ms of CELT overlap + 4 ms of delay compensation),
/// in 48 kHz samples: what the decoder drops at the start (RFC 7845 §4.2).
pub const PRE_SKIP_48K: u64 = 312;
/// Largest Opus packet (RFC 6716 §3.2.1 limits a frame to 1275 bytes).
const MAX_PACKET: usize = 1_500;
const SERIAL: u32 = 0x766f_7870; // "voxp"

fn err(e: impl std::fmt::Display) -> AudioError {
    AudioError::Encode(format!("opus: {e}"))
}

/// An Ogg Opus encoder fed chunk by chunk; each `push` returns the pages completed.
pub struct OpusStream {
    encoder: OpusEncoder,
    writer: PacketWriter<'static, Vec<u8>>,
    /// The rate the encoder runs at, and the rate samples arrive at.
    rate: u32,
    input_rate: u32,
    frame: usize,
    /// Samples not yet making a whole frame.
    pending: Vec<f32>,
    /// Samples received (at `rate`).
    received: u64,
    /// Samples encoded so far, padding included (at `rate`).
    encoded: u64,
    packet: Vec<u8>,
}

impl OpusStream {
    pub fn new(input_rate: u32) -> Result<Self, AudioError> {
        let rate = if OPUS_RATES.contains(&input_rate) {
            input_rate
        } else {
            48_000
        };
        let mut encoder = OpusEncoder::new(rate as i32, 1, Application::Audio).map_err(err)?;
        encoder.bitrate_bps = BITRATE;
        let mut writer = PacketWriter::new(Vec::new());
        // Identification header: version 1, one channel, pre-skip, the input rate,
        // no gain, channel mapping family 0.
        let mut head = b"OpusHead".to_vec();
        head.push(1);
        head.push(1);
        head.extend((PRE_SKIP_48K as u16).to_le_bytes());
        head.extend(input_rate.to_le_bytes());
        head.extend(0i16.to_le_bytes());
        head.push(0);
        writer
            .write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(err)?;
        let vendor = concat!("voxpool ", env!("CARGO_PKG_VERSION")).as_bytes();
        let mut tags = b"OpusTags".to_vec();
        tags.extend((vendor.len() as u32).to_le_bytes());
        tags.extend(vendor);
        tags.extend(0u32.to_le_bytes());
        writer
            .write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(err)?;
        Ok(Self {
            encoder,
            writer,
            rate,
            input_rate,
            frame: rate as usize / 50,
            pending: Vec::new(),
            received: 0,
            encoded: 0,
            packet: vec![0; MAX_PACKET],
        })
    }

    /// 48 kHz samples per encoder sample.
    fn scale(&self) -> u64 {
        48_000 / u64::from(self.rate)
    }

    /// Encode every whole frame in `pending`; the last packet written ends the page
    /// (or the stream, with its granule position trimmed to the real end).
    fn encode_frames(&mut self, end_of_stream: bool) -> Result<(), AudioError> {
        let frames = self.pending.len() / self.frame;
        for i in 0..frames {
            let input = &self.pending[i * self.frame..(i + 1) * self.frame];
            let n = self
                .encoder
                .encode(input, self.frame, &mut self.packet)
                .map_err(err)?;
            self.encoded += self.frame as u64;
            let last = i + 1 == frames;
            let (info, granule) = if last && end_of_stream {
                // The end: the decoder stops at pre-skip + the samples received.
                (
                    PacketWriteEndInfo::EndStream,
                    PRE_SKIP_48K + self.received * self.scale(),
                )
            } else {
                (
                    if last {
                        PacketWriteEndInfo::EndPage
                    } else {
                        PacketWriteEndInfo::NormalPacket
                    },
                    self.encoded * self.scale(),
                )
            };
            self.writer
                .write_packet(self.packet[..n].to_vec(), SERIAL, info, granule)
                .map_err(err)?;
        }
        self.pending.drain(..frames * self.frame);
        Ok(())
    }

    fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(self.writer.inner_mut())
    }

    /// The pages completed by `samples` (the headers come with the first call).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        if self.rate == self.input_rate {
            self.pending.extend_from_slice(samples);
        } else {
            let resampled = crate::audio::clip::resample(samples, self.input_rate, self.rate);
            self.pending.extend(resampled);
        }
        self.received = self.pending_total();
        self.encode_frames(false)?;
        Ok(self.take_bytes())
    }

    /// Samples received so far at the encoder's rate.
    fn pending_total(&self) -> u64 {
        self.encoded + self.pending.len() as u64
    }

    /// The last pages: the encoder's look-ahead flushed with silence, then the
    /// final granule position set to the real end.
    pub fn finish(mut self) -> Result<Vec<u8>, AudioError> {
        self.received = self.pending_total();
        let lookahead = (PRE_SKIP_48K / self.scale()) as usize;
        let wanted = self.pending.len() + lookahead;
        let padded = wanted.div_ceil(self.frame).max(1) * self.frame;
        self.pending.resize(padded, 0.0);
        self.encode_frames(true)?;
        Ok(self.take_bytes())
    }
}

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let mut stream = OpusStream::new(sample_rate)?;
    let mut out = stream.push(samples)?;
    out.extend(stream.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Opus packets of an Ogg stream with each page's granule position.
    fn packets(bytes: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let mut out = Vec::new();
        while let Some(p) = reader.read_packet().unwrap() {
            out.push((p.data.clone(), p.absgp_page()));
        }
        out
    }

    fn decode(bytes: &[u8]) -> (Vec<f32>, u64, u16) {
        let all = packets(bytes);
        assert_eq!(&all[0].0[..8], b"OpusHead");
        assert_eq!(&all[1].0[..8], b"OpusTags");
        let pre_skip = u16::from_le_bytes([all[0].0[10], all[0].0[11]]);
        let mut decoder = opus_rs::OpusDecoder::new(48_000, 1).unwrap();
        let mut pcm = Vec::new();
        let mut frame = vec![0f32; 5_760];
        for (packet, _) in &all[2..] {
            let n = decoder.decode(packet, 5_760, &mut frame).unwrap();
            pcm.extend_from_slice(&frame[..n]);
        }
        let end = all.last().unwrap().1;
        (pcm, end, pre_skip)
    }

    #[test]
    fn headers_granules_and_length_follow_rfc_7845() {
        let rate = 24_000;
        let n = 24_000 + 123; // not a whole number of frames
        let tone: Vec<f32> = (0..n)
            .map(|i| 0.4 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
            .collect();
        let bytes = encode(&tone, rate).unwrap();
        let (pcm, end, pre_skip) = decode(&bytes);
        assert_eq!(u64::from(pre_skip), PRE_SKIP_48K);
        // The final granule marks exactly the samples spoken.
        assert_eq!(end - PRE_SKIP_48K, 2 * n as u64);
        assert!(pcm.len() as u64 >= end, "{} decoded, end {end}", pcm.len());
        // After the pre-skip the decoded tone lines up with the input (at 48 kHz).
        let skip = pre_skip as usize;
        let mut best = (0i32, f32::MIN);
        for lag in -8i32..=8 {
            let corr: f32 = (2_000..40_000)
                .map(|i| {
                    let j = (i as i32 + lag) as usize;
                    pcm[skip + j] * tone[i / 2]
                })
                .sum();
            if corr > best.1 {
                best = (lag, corr);
            }
        }
        assert!(
            best.0.abs() <= 2,
            "decoded audio is offset by {} samples",
            best.0
        );
        // And it is the tone, not noise: a good SNR against the input.
        let (mut signal, mut noise) = (0f64, 0f64);
        for i in 2_000..40_000 {
            let x = f64::from(tone[i / 2]);
            let y = f64::from(pcm[(skip as i64 + i as i64 + i64::from(best.0)) as usize]);
            signal += x * x;
            noise += (x - y) * (x - y);
        }
        let snr = 10.0 * (signal / noise).log10();
        assert!(snr > 10.0, "SNR {snr:.1} dB at lag {}", best.0);
        eprintln!("opus: lag {} samples at 48 kHz, SNR {snr:.1} dB", best.0);
    }

    #[test]
    fn chunks_join_into_one_stream() {
        let rate = 24_000;
        let chunk: Vec<f32> = (0..7_000).map(|i| (i as f32 * 0.03).sin() * 0.3).collect();
        let mut stream = OpusStream::new(rate).unwrap();
        let mut bytes = stream.push(&chunk).unwrap();
        bytes.extend(stream.push(&chunk).unwrap());
        bytes.extend(stream.push(&[]).unwrap());
        bytes.extend(stream.finish().unwrap());
        let (_, end, _) = decode(&bytes);
        assert_eq!(end - PRE_SKIP_48K, 2 * 14_000);
        // Granule positions never go back.
        let granules: Vec<u64> = packets(&bytes).iter().map(|p| p.1).collect();
        assert!(granules.windows(2).all(|w| w[0] <= w[1]), "{granules:?}");
    }

    #[test]
    fn other_rates_are_resampled() {
        let bytes = encode(&vec![0.1; 22_050], 22_050).unwrap();
        let (_, end, _) = decode(&bytes);
        assert_eq!(end - PRE_SKIP_48K, 48_000);
    }
}
