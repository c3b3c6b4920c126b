//! Tensor building blocks shared by the engines, each written once with its own
//! unit test: weight-norm folding, recurrent layers, norms, signal ops.

pub mod weight_norm;

pub use weight_norm::{
    conv1d, conv_cfg, conv_transpose1d, fold_weight_norm, resblock_convs, same_padding,
};
pub mod attention;
pub mod conv;
pub use conv::GemmConv1d;
pub mod lstm;
pub use lstm::Lstm;
pub mod norm;
pub mod ops;
pub mod stft;

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
