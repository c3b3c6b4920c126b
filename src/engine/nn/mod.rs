//! Tensor building blocks shared by the engines, each written once with its own
//! unit test: weight-norm folding, recurrent layers, norms, signal ops.

pub mod weight_norm;

pub use weight_norm::{
    conv1d, conv_cfg, conv_transpose1d, fold_weight_norm, resblock_convs, same_padding,
};
pub mod attention;
pub mod conv;
mod fftconv;
pub use conv::GemmConv1d;
pub mod conv_transpose;
pub mod depthwise;
pub mod fast_math;
pub use conv_transpose::GemmConvTranspose1d;
pub mod linear;
pub use linear::TransposedLinear;
pub mod lstm;
pub use lstm::Lstm;
pub mod norm;
pub mod ops;
pub mod safetensors_file;
pub use safetensors_file::SafetensorsFile;
pub mod source;
pub mod stft;
pub mod threads;

/// The environment variable with which candle's CPU worker threads are told how long
/// to spin for more work before they sleep.
pub const WORKER_SPIN_ENV: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
/// voxpool's default for it (candle's own is 25 000).
const WORKER_SPIN_LIMIT: &str = "100";

/// Lets candle's CPU worker threads sleep soon after their work runs out, unless
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set. Candle's default keeps them spinning for
/// 25 000 rounds after every operation, on the same cores the matrix products' worker
/// threads then need: on 2 cores that made Chatterbox's S3Gen flow ~20% slower and
/// T3 no faster (`cargo bench --bench chatterbox`); Kokoro is unaffected. It sets an
/// environment variable, so it must run before any other thread starts (the start
/// of `main`).
///
/// It also fixes the thread count: candle works it out again on every call of
/// `get_num_threads` (matrix products and most ops ask), and on Linux without a CPU
/// list in the environment that means parsing `/proc/cpuinfo` each time (~4% of a
/// Chatterbox decode step). Setting `RAYON_NUM_THREADS`, which candle reads first, to
/// the count it would have found keeps the same threads and skips the parsing.
pub fn quiet_idle_workers() {
    if std::env::var_os(WORKER_SPIN_ENV).is_none() {
        std::env::set_var(WORKER_SPIN_ENV, WORKER_SPIN_LIMIT);
    }
    if std::env::var_os(THREADS_ENV).is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var(THREADS_ENV, threads.to_string());
    }
}

/// The thread count candle (and rayon) read before working it out themselves.
const THREADS_ENV: &str = "RAYON_NUM_THREADS";

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
