//! Splitting work over threads: output buffers filled chunk by chunk, ranges split
//! over candle's persistent CPU workers, and the shared output pointers ([`SharedOut`],
//! [`Dst`]) through which they write disjoint parts of one buffer.

/// Below this many values an op runs on the calling thread: starting threads costs
/// more than it saves.
const PARALLEL_MIN: usize = 1 << 16;

/// Fills `out` chunk by chunk (`chunk` values each, the last possibly shorter) with
/// `f(chunk_index, values)`, on candle's thread count when `out` is large.
pub(crate) fn fill_chunks(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let threads = if out.len() < PARALLEL_MIN {
        1
    } else {
        candle_core::utils::get_num_threads()
    };
    fill_chunks_on(out, chunk, threads, f);
}

/// [`fill_chunks`] on up to `threads` threads whatever the size of `out` (for chunks
/// that each cost far more than their length says).
pub(crate) fn fill_chunks_on(
    out: &mut [f32],
    chunk: usize,
    threads: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let chunk = chunk.max(1);
    let chunks = out.len().div_ceil(chunk);
    let threads = threads.min(chunks);
    if threads <= 1 {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
        return;
    }
    let threads = threads.min(worker_count());
    let per_thread = chunks.div_ceil(threads);
    let parts: Vec<std::sync::Mutex<&mut [f32]>> = out
        .chunks_mut(per_thread * chunk)
        .map(std::sync::Mutex::new)
        .collect();
    on_workers(parts.len(), |t| {
        let mut part = parts[t].lock().unwrap_or_else(|e| e.into_inner());
        for (i, c) in part.chunks_mut(chunk).enumerate() {
            f(t * per_thread + i, c);
        }
    });
}

/// Runs `run(first, last)` on `threads` consecutive ranges covering `0..items` (see
/// [`on_workers`]).
pub(crate) fn split_over_threads(items: usize, threads: usize, run: impl Fn(usize, usize) + Sync) {
    let threads = threads.clamp(1, items.max(1));
    let per = items.div_ceil(threads);
    on_workers(threads, |th| {
        let (first, last) = (th * per, ((th + 1) * per).min(items));
        if first < last {
            run(first, last);
        }
    });
}

/// An output buffer shared by the shares of [`on_workers`] (or other threads), each
/// writing its own part.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);

// SAFETY: users write disjoint parts of the buffer, each by one thread.
unsafe impl Send for SharedOut {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The value `offset` places in.
    ///
    /// # Safety
    /// `offset` is inside the buffer.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: by the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

/// Where an item's `[Cout, l_out]` output goes: row `co` starts at `ptr + co·ld`. With
/// `accumulate` the values there (a residual) are added to, else overwritten.
#[derive(Clone, Copy)]
pub(super) struct Dst {
    pub(super) ptr: SharedOut,
    pub(super) ld: usize,
    pub(super) accumulate: bool,
}

impl Dst {
    /// The same output from column `t0` on.
    ///
    /// # Safety
    /// Column `t0` is inside every row.
    pub(super) unsafe fn at(self, t0: usize) -> Self {
        Self {
            // SAFETY: by the contract.
            ptr: SharedOut(unsafe { self.ptr.at(t0) }),
            ..self
        }
    }
}

thread_local! {
    /// Set while this thread runs a share of [`on_workers`].
    static IN_WORKERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How many shares [`on_workers`] runs at once: candle's persistent CPU workers and
/// the calling thread.
pub(crate) fn worker_count() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Runs `f(0)`, …, `f(shares − 1)` on candle's persistent CPU workers and the calling
/// thread, share `i` on thread `i mod` [`worker_count`], and returns when all are done.
/// Starting a thread costs ~60 µs, as much as a small op, and the `gemm` crate's own
/// rayon threads, spinning beside candle's, made 2-core products uneven (150–290
/// GFLOP/s for the same shape). The pool takes one call at a time: a call from inside
/// a share runs its shares in turn on that thread, and `f` must never run a candle
/// op (candle's ops use the same pool and would wait for it forever).
pub(crate) fn on_workers(shares: usize, f: impl Fn(usize) + Sync) {
    if shares <= 1 || IN_WORKERS.with(std::cell::Cell::get) {
        (0..shares).for_each(f);
        return;
    }
    let threads = worker_count();
    candle_core::utils::barrier_pool().execute(|t| {
        let was = IN_WORKERS.with(|w| w.replace(true));
        for share in (t..shares).step_by(threads) {
            f(share);
        }
        IN_WORKERS.with(|w| w.set(was));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_shared_on_the_workers_runs_every_share_once_even_nested() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let counts: Vec<AtomicUsize> = (0..7).map(|_| AtomicUsize::new(0)).collect();
        let inner = AtomicUsize::new(0);
        // More shares than threads, each starting a nested call (which must run on its
        // own thread rather than wait for the pool it is part of).
        on_workers(counts.len(), |s| {
            counts[s].fetch_add(1, Ordering::Relaxed);
            on_workers(3, |_| {
                inner.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        assert_eq!(inner.load(Ordering::Relaxed), 7 * 3);
        let mut out = vec![0f32; 1 << 18];
        fill_chunks(&mut out, 1000, |i, c| c.fill(i as f32));
        assert!(out.iter().enumerate().all(|(j, &v)| v == (j / 1000) as f32));
    }
}
