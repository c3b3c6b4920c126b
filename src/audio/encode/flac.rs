//! FLAC, 16-bit mono, lossless.

use flacenc::component::BitRepr;
use flacenc::error::Verify;

use super::{to_i16, AudioError};

fn err(e: impl std::fmt::Debug) -> AudioError {
    AudioError::Encode(format!("flac: {e:?}"))
}

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| err(e))?;
    let pcm: Vec<i32> = samples.iter().map(|&s| i32::from(to_i16(s))).collect();
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
}
