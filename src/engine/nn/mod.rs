//! Tensor building blocks shared by the engines, each written once with its own
//! unit test: weight-norm folding, recurrent layers, norms, signal ops.

pub mod weight_norm;

pub use weight_norm::{
    conv1d, conv_cfg, conv_transpose1d, fold_weight_norm, resblock_convs, same_padding,
};
pub mod attention;
pub mod conv;
pub mod conv2d;
mod fftconv;
pub use conv::GemmConv1d;
pub use conv2d::GemmConv2d;
pub mod conv_transpose;
pub mod depthwise;
pub mod fast_math;
pub mod int8;
pub use conv_transpose::GemmConvTranspose1d;
pub mod linear;
pub use linear::TransposedLinear;
pub mod lstm;
pub use lstm::Lstm;
pub mod norm;
pub mod ops;
mod product;
pub mod quantized;
pub mod safetensors_file;
pub use safetensors_file::SafetensorsFile;
pub mod source;
pub mod stft;
pub mod threads;

/// How candle's CPU backend runs its worker threads. Candle reads both settings from
/// the environment, so the binary's configuration (`config::cpu_threads`) works them
/// out and writes them there before any other thread starts; a worker process
/// inherits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuThreads {
    /// Threads for matrix products and parallel ops. Candle works the count out again
    /// on every call of `get_num_threads` (matrix products and most ops ask), and on
    /// Linux without a CPU list in the environment that means parsing `/proc/cpuinfo`
    /// each time (~4% of a Chatterbox decode step); given once, the same threads run
    /// and the parsing is skipped.
    pub count: usize,
    /// Rounds an idle worker thread spins for more work before it sleeps. Candle's
    /// default keeps them spinning for 25 000 rounds after every operation, on the same
    /// cores the matrix products' worker threads then need: on 2 cores that made
    /// Chatterbox's S3Gen flow ~20% slower and T3 no faster (`cargo bench --bench
    /// chatterbox`); Kokoro is unaffected.
    pub spin_limit: u32,
}

impl CpuThreads {
    /// voxpool's spin limit: workers sleep soon after their work runs out.
    pub const SPIN_LIMIT: u32 = 100;

    /// The thread count candle works out for this machine.
    pub fn detected_count() -> usize {
        candle_core::utils::get_num_threads()
    }
}

/// Bytes of freed heap glibc may keep for reuse before returning them to the system.
const KEEP_FREED_BYTES: libc::c_int = 1 << 30;

/// Makes glibc reuse freed memory for the large tensors of a synthesis instead of
/// mapping fresh zeroed pages for each one: by default every buffer above 32 MiB (the
/// generator's 128 × 72k activations are 37 MiB) is its own `mmap`, unmapped on free,
/// and the page faults that refill it cost a quarter of the generator's CPU time. The
/// pool's `malloc_trim` after an unload still hands everything back. Process-wide and
/// idempotent.
pub fn reuse_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes the allocator's tuning parameters; both
            // values are in range, and failure leaves the defaults in place.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREED_BYTES);
            }
        });
    }
}

/// The largest absolute difference between two tensors, for the tests' comparisons.
#[cfg(test)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("tensors of the same shape")
}
