//! Giving memory back: the gateway's heap tuned once, freed pages returned to the
//! operating system after models and requests are gone.

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
