//! What happens when a model leaves the cache, and giving memory back.

use std::sync::Arc;

use moka::notification::RemovalCause;

use super::loaded::Loaded;

/// moka's eviction listener: say why the model leaves. The weights are freed when
/// the last reference (a running request may still hold one) drops.
pub(crate) fn on_evict(model: Arc<String>, loaded: Arc<Loaded>, cause: RemovalCause) {
    let why = match cause {
        RemovalCause::Expired => "Unloading model due to inactivity",
        RemovalCause::Explicit => loaded.cause().log_line(),
        RemovalCause::Size => "Unloading model to stay within MODEL_MEMORY_BUDGET",
        RemovalCause::Replaced => return,
    };
    let in_flight = loaded.leases();
    if in_flight > 0 {
        tracing::info!(model = %model, in_flight, "{why}; waiting for requests in flight");
    } else {
        tracing::info!(model = %model, "{why}");
    }
}

/// Tune the allocator of the server process, which routes requests and encodes
/// audio while the models run in workers, so memory freed by requests goes back to
/// the system instead of staying in scattered heaps: two arenas (glibc makes up to
/// eight per core, one per thread that allocates while another holds the arena;
/// contention is negligible here), and a fixed mmap threshold of 64 KiB, so every
/// audio buffer and frame at least that large is its own mapping, unmapped when
/// freed (glibc otherwise raises the threshold after the first such free and serves
/// them from the heap, where they fragment it). Call before any thread starts.
pub fn tune_gateway_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; failure keeps the default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

/// Return freed heap pages to the operating system (glibc keeps them otherwise).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
