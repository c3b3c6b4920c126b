//! FLAC, 16-bit mono, lossless.

use flacenc::component::BitRepr;
use flacenc::error::{Verified, Verify};
use flacenc::source::Fill;

use super::{to_i16, AudioError};

fn err(e: impl std::fmt::Debug) -> AudioError {
    AudioError::Encode(format!("flac: {e:?}"))
}

fn config() -> Result<Verified<flacenc::config::Encoder>, AudioError> {
    flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| err(e))
}

fn to_pcm(samples: &[f32]) -> impl Iterator<Item = i32> + '_ {
    samples.iter().map(|&s| i32::from(to_i16(s)))
}

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let config = config()?;
    let pcm: Vec<i32> = to_pcm(samples).collect();
    let source = flacenc::source::MemSource::from_samples(&pcm, 1, 16, sample_rate as usize);
    let stream =
        flacenc::encode_with_fixed_block_size(&config, source, config.block_size).map_err(err)?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(err)?;
    let mut bytes = sink.as_slice().to_vec();
    fix_min_block_size(&mut bytes)?;
    Ok(bytes)
}

/// The stream is cut in fixed-size blocks (the last one shorter), so STREAMINFO's
/// minimum block size must equal its maximum: the format excludes the last block from
/// the minimum, and decoders read `min != max` as variable blocking, which then
/// misreads every frame header. The encoder counts the last block; this sets the
/// minimum to the maximum. STREAMINFO is the first metadata block: after `fLaC` and
/// a 4-byte block header, min at bytes 8..10, max at 10..12.
fn fix_min_block_size(bytes: &mut [u8]) -> Result<(), AudioError> {
    if bytes.len() < 12 || &bytes[..4] != b"fLaC" || bytes[4] & 0x7F != 0 {
        return Err(err("the stream does not start with STREAMINFO"));
    }
    let (head, tail) = bytes.split_at_mut(10);
    head[8..10].copy_from_slice(&tail[..2]);
    Ok(())
}

/// A FLAC stream sent as it is spoken: STREAMINFO with the length, frame sizes and
/// MD5 left unknown (zero, as the format allows for streams), then each block's frame
/// once its samples exist. The frames are those of [`encode`], byte for byte.
pub struct FlacStream {
    config: Verified<flacenc::config::Encoder>,
    info: flacenc::component::StreamInfo,
    block: flacenc::source::FrameBuf,
    pending: Vec<i32>,
    frames: usize,
    header_sent: bool,
}

impl FlacStream {
    pub fn new(sample_rate: u32) -> Result<Self, AudioError> {
        let config = config()?;
        let info = flacenc::component::StreamInfo::new(sample_rate as usize, 1, 16).map_err(err)?;
        let block = flacenc::source::FrameBuf::with_size(1, config.block_size).map_err(err)?;
        Ok(Self {
            config,
            info,
            block,
            pending: Vec::new(),
            frames: 0,
            header_sent: false,
        })
    }

    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        self.pending.extend(to_pcm(samples));
        let mut out = self.header();
        let size = self.config.block_size;
        let mut blocks = std::mem::take(&mut self.pending);
        self.pending = blocks.split_off(blocks.len() / size * size);
        for block in blocks.chunks(size) {
            self.frame(block, &mut out)?;
        }
        Ok(out)
    }

    pub fn finish(mut self) -> Result<Vec<u8>, AudioError> {
        let mut out = self.header();
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.frame(&rest, &mut out)?;
        }
        Ok(out)
    }

    fn header(&mut self) -> Vec<u8> {
        if std::mem::replace(&mut self.header_sent, true) {
            return Vec::new();
        }
        let size = self.config.block_size as u16;
        let mut h = Vec::with_capacity(42);
        h.extend_from_slice(b"fLaC");
        h.extend_from_slice(&[0x80, 0, 0, 34]); // the last metadata block: STREAMINFO
        h.extend_from_slice(&size.to_be_bytes()); // min block size
        h.extend_from_slice(&size.to_be_bytes()); // max block size
        h.extend_from_slice(&[0; 6]); // min and max frame size: unknown
        let packed = (u64::from(self.info.sample_rate() as u32) << 44) | (15 << 36); // mono, 16-bit, length unknown
        h.extend_from_slice(&packed.to_be_bytes());
        h.extend_from_slice(&[0; 16]); // MD5: unknown
        h
    }

    fn frame(&mut self, samples: &[i32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.block.fill_interleaved(samples).map_err(err)?;
        let frame =
            flacenc::encode_fixed_size_frame(&self.config, &self.block, self.frames, &self.info)
                .map_err(err)?;
        self.frames += 1;
        let mut sink = flacenc::bitsink::ByteSink::new();
        frame.write(&mut sink).map_err(err)?;
        out.extend_from_slice(sink.as_slice());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// (min block, max block, sample rate, channels, bits, total samples).
    fn stream_info(b: &[u8]) -> (u16, u16, u32, u8, u8, u64) {
        assert_eq!(&b[..4], b"fLaC");
        let si = &b[8..42];
        let x = u64::from_be_bytes(si[10..18].try_into().unwrap());
        (
            u16::from_be_bytes([si[0], si[1]]),
            u16::from_be_bytes([si[2], si[3]]),
            (x >> 44) as u32,
            ((x >> 41) & 7) as u8 + 1,
            ((x >> 36) & 31) as u8 + 1,
            x & ((1 << 36) - 1),
        )
    }

    #[test]
    fn stream_info_describes_fixed_blocks() {
        for n in [100usize, 4096, 10_320] {
            let samples: Vec<f32> = (0..n).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
            let bytes = super::encode(&samples, 24_000).unwrap();
            let (min, max, rate, channels, bits, total) = stream_info(&bytes);
            assert_eq!(min, max, "{n} samples");
            assert_eq!((rate, channels, bits, total), (24_000, 1, 16, n as u64));
        }
    }

    #[test]
    fn streamed_frames_equal_the_whole_file() {
        for n in [0usize, 100, 4096, 10_320] {
            let samples: Vec<f32> = (0..n).map(|i| (i as f32 * 0.013).sin() * 0.5).collect();
            let whole = super::encode(&samples, 24_000).unwrap();
            let mut stream = super::FlacStream::new(24_000).unwrap();
            let mut streamed = Vec::new();
            for chunk in samples.chunks(3000) {
                streamed.extend(stream.push(chunk).unwrap());
            }
            streamed.extend(stream.finish().unwrap());
            // Same block sizes and format; length, frame sizes and MD5 unknown.
            let (whole_info, streamed_info) = (stream_info(&whole), stream_info(&streamed));
            assert_eq!(
                streamed_info,
                (whole_info.0, whole_info.1, 24_000, 1, 16, 0),
                "{n}"
            );
            assert_eq!(streamed[..8], whole[..8]);
            assert_eq!(streamed[42..], whole[42..], "{n} samples: frames differ");
        }
    }
}
