//! Times the vocoders' residual-block convolutions both ways, direct (time domain)
//! and in the frequency domain, at the sizes Kokoro's and Chatterbox's generators run,
//! and prints which form `GemmConv1d` picks: the check of the cost model in
//! `src/engine/nn/fftconv.rs`.
//!
//! `cargo run --release --example conv_timing`

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig};
use std::time::Instant;
use voxpool::engine::nn::GemmConv1d;

fn main() -> Result<()> {
    voxpool::engine::nn::reuse_freed_heap();
    let dev = Device::Cpu;
    println!("channels  samples  kernel  dilation  direct ms  spectral ms  ratio  picked");
    for (c, t) in [
        (256, 1240),
        (128, 7440),
        (256, 12000),
        (128, 72000),
        (64, 30000),
    ] {
        for (k, d) in [(3, 1), (7, 1), (7, 3), (7, 5), (11, 1), (11, 3), (11, 5)] {
            let cfg = Conv1dConfig {
                padding: d * (k - 1) / 2,
                dilation: d,
                ..Default::default()
            };
            let w = Tensor::randn(0f32, 0.1, (c, c, k), &dev)?;
            let conv = GemmConv1d::new(Conv1d::new(w, None, cfg))?;
            let x = Tensor::randn(0f32, 1.0, (1, c, t), &dev)?;
            // The fastest of several runs: the least disturbed by other work.
            let time = |f: &dyn Fn() -> Result<Tensor>| -> Result<f64> {
                let mut best = f64::INFINITY;
                for _ in 0..12 {
                    let start = Instant::now();
                    std::hint::black_box(f()?);
                    best = best.min(start.elapsed().as_secs_f64() * 1e3);
                }
                Ok(best)
            };
            let direct = time(&|| conv.forward_direct(&x))?;
            let picked = time(&|| conv.forward(&x))?;
            let form = if conv.is_spectral(t) {
                "spectral"
            } else {
                "direct"
            };
            println!(
                "{c:>8}  {t:>7}  {k:>6}  {d:>8}  {direct:>9.2}  {picked:>11.2}  {:>5.2}  {form}",
                direct / picked
            );
        }
    }
    Ok(())
}
