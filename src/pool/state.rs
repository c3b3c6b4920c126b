//! What the pool knows about each model whether or not it is loaded: its idle
//! clock, timeout, in-flight count and load history.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::LoadError;
use super::settings::{Admission, IdleTimeout};
use crate::engine::ModelSpec;
use crate::hub::{Progress, ProgressSnapshot};

const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Longest wait imposed between two failed load attempts.
const MAX_LOAD_COOLDOWN: Duration = Duration::from_secs(30);

/// When a model was last used, measured on a monotonic clock.
#[derive(Debug)]
pub struct IdleClock {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last activity.
    last_ms: AtomicU64,
}

impl IdleClock {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            last_ms: AtomicU64::new(ms_between(epoch, Instant::now())),
        }
    }

    /// Record activity now.
    pub fn touch(&self) {
        self.last_ms
            .fetch_max(ms_between(self.epoch, Instant::now()), Ordering::AcqRel);
    }

    pub fn last_activity(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Acquire))
    }

    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_activity())
    }
}

fn ms_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(u64::MAX)
}

/// Time left before an idle model should leave, or `None` when it should stay:
/// while requests hold it, when its timeout is "never", and for a zero timeout,
/// whose unload happens when the last request ends rather than on a clock.
pub fn idle_remaining(
    leases: usize,
    timeout: IdleTimeout,
    last_activity: Instant,
    now: Instant,
) -> Option<Duration> {
    if leases > 0 {
        return None;
    }
    match timeout {
        IdleTimeout::Never => None,
        IdleTimeout::After(t) if t.is_zero() => None,
        // Timeouts past any machine's uptime (a century) are "never"; that also keeps
        // the clock arithmetic from overflowing.
        IdleTimeout::After(t) if t > CENTURY => None,
        IdleTimeout::After(t) => last_activity
            .checked_add(t)
            .map(|deadline| deadline.saturating_duration_since(now)),
    }
}

/// The last failed load, kept to answer quickly instead of retrying in a loop.
#[derive(Debug, Clone)]
struct LoadFailure {
    at: Instant,
    error: LoadError,
    streak: u32,
}

impl LoadFailure {
    fn cooldown(&self) -> Duration {
        let secs = 1u64 << self.streak.saturating_sub(1).min(5);
        Duration::from_secs(secs).min(MAX_LOAD_COOLDOWN)
    }
}

/// Per-model state shared by the pool, leases and loaded instances.
#[derive(Debug)]
pub struct ModelState {
    pub spec: ModelSpec,
    pub clock: IdleClock,
    timeout_secs: AtomicI64,
    in_flight: AtomicUsize,
    loading: AtomicUsize,
    /// Loaded instances whose memory has not been given back yet, and their bytes.
    resident: AtomicUsize,
    resident_bytes: AtomicU64,
    last_load_ms: AtomicU64,
    failure: Mutex<Option<LoadFailure>>,
    /// The download of the model's files, while one runs.
    download: Mutex<Option<Arc<Progress>>>,
    limits: Admission,
    /// One permit per request the model may serve at once.
    admission: Arc<Semaphore>,
    /// Requests waiting for a permit.
    queued: AtomicUsize,
}

/// Why a request was not admitted: the model's queue is full.
#[derive(Debug, Clone, Copy)]
pub struct QueueFull {
    pub serving: usize,
    pub queued: usize,
}

/// A request's place among those a model serves at once; freed on drop.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl ModelState {
    pub fn new(spec: ModelSpec, timeout: IdleTimeout, epoch: Instant, limits: Admission) -> Self {
        Self {
            limits,
            admission: Arc::new(Semaphore::new(limits.concurrency)),
            queued: AtomicUsize::new(0),
            spec,
            clock: IdleClock::new(epoch),
            timeout_secs: AtomicI64::new(timeout.as_seconds()),
            in_flight: AtomicUsize::new(0),
            loading: AtomicUsize::new(0),
            resident: AtomicUsize::new(0),
            resident_bytes: AtomicU64::new(0),
            last_load_ms: AtomicU64::new(u64::MAX),
            failure: Mutex::new(None),
            download: Mutex::new(None),
        }
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn timeout(&self) -> IdleTimeout {
        IdleTimeout::from_seconds(self.timeout_secs.load(Ordering::Acquire))
    }

    pub fn set_timeout(&self, timeout: IdleTimeout) {
        self.timeout_secs
            .store(timeout.as_seconds(), Ordering::Release);
    }

    /// Wait for a place among the requests the model serves at once, unless the
    /// queue is already full. A caller whose future is dropped leaves the queue.
    pub async fn admit(&self) -> Result<Admitted, QueueFull> {
        if let Ok(permit) = Arc::clone(&self.admission).try_acquire_owned() {
            return Ok(Admitted { _permit: permit });
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.queued);
        if queued >= self.limits.queue {
            return Err(QueueFull {
                serving: self.limits.concurrency,
                queued,
            });
        }
        let permit = Arc::clone(&self.admission)
            .acquire_owned()
            .await
            .expect("the admission semaphore is never closed");
        Ok(Admitted { _permit: permit })
    }

    /// Requests waiting for a place.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn lease_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.clock.touch();
    }

    pub(crate) fn lease_ended(&self) {
        self.clock.touch();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn is_loading(&self) -> bool {
        self.loading.load(Ordering::Acquire) > 0
    }

    /// Mark a load in progress until the guard drops.
    pub(crate) fn begin_loading(&self) -> LoadingGuard<'_> {
        self.loading.fetch_add(1, Ordering::AcqRel);
        LoadingGuard(self)
    }

    /// True while any instance of the model holds memory (until its weights are freed).
    pub fn is_resident(&self) -> bool {
        self.resident.load(Ordering::Acquire) > 0
    }

    /// Bytes held by the model's instances, including one still draining after an unload.
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn instance_created(&self, bytes: u64) {
        self.resident_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.resident.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn instance_freed(&self, bytes: u64) {
        self.resident.fetch_sub(1, Ordering::AcqRel);
        self.resident_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub fn last_load_seconds(&self) -> Option<f64> {
        match self.last_load_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(ms as f64 / 1000.0),
        }
    }

    pub(crate) fn load_succeeded(&self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX - 1);
        self.last_load_ms.store(ms, Ordering::Release);
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Record a failed load; returns the error with how long callers should wait
    /// before retrying.
    pub(crate) fn load_failed(&self, error: LoadError) -> LoadError {
        let mut guard = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let streak = guard.as_ref().map_or(0, |f| f.streak) + 1;
        let mut failure = LoadFailure {
            at: Instant::now(),
            error,
            streak,
        };
        let cooldown = failure.cooldown();
        failure.error = failure.error.with_retry_after(cooldown);
        let error = failure.error.clone();
        *guard = Some(failure);
        error
    }

    /// The last load error, with the time left to wait, while a cooldown runs.
    pub fn cooling_down(&self, now: Instant) -> Option<LoadError> {
        let guard = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let f = guard.as_ref()?;
        let left = (f.at + f.cooldown()).saturating_duration_since(now);
        (!left.is_zero()).then(|| f.error.clone().with_retry_after(left))
    }

    /// The download under way for this model's files, if one is.
    pub fn download(&self) -> Option<ProgressSnapshot> {
        let guard = self.download.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|p| p.snapshot())
    }

    /// Show `progress` as this model's download until the guard drops.
    pub(crate) fn downloading(&self, progress: Arc<Progress>) -> DownloadGuard<'_> {
        *self.download.lock().unwrap_or_else(|p| p.into_inner()) = Some(progress);
        DownloadGuard(self)
    }

    /// The last load error, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        let guard = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|f| f.error.to_string())
    }
}

pub(crate) struct DownloadGuard<'a>(&'a ModelState);

impl Drop for DownloadGuard<'_> {
    fn drop(&mut self) {
        *self.0.download.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

pub(crate) struct LoadingGuard<'a>(&'a ModelState);

impl Drop for LoadingGuard<'_> {
    fn drop(&mut self) {
        self.0.loading.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    #[test]
    fn idle_deadline_arithmetic() {
        let t0 = Instant::now();
        let five = IdleTimeout::After(Duration::from_secs(5));
        assert_eq!(
            idle_remaining(0, five, t0, t0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            idle_remaining(0, five, t0, t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            idle_remaining(0, five, t0, t0 + Duration::from_secs(9)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            idle_remaining(1, five, t0, t0 + Duration::from_secs(9)),
            None
        );
        assert_eq!(idle_remaining(0, IdleTimeout::Never, t0, t0), None);
        assert_eq!(
            idle_remaining(0, IdleTimeout::After(Duration::ZERO), t0, t0),
            None
        );
        // A timeout near i64::MAX seconds (accepted by /model/timeout) means never.
        let huge = IdleTimeout::from_seconds(i64::MAX - 1);
        assert_eq!(idle_remaining(0, huge, t0, t0), None);
    }

    #[test]
    fn cooldown_grows_and_is_capped() {
        let err = LoadError::Failed {
            model: "m".into(),
            source: EngineError::FilesMissing { model: "m".into() },
            retry_after: Duration::ZERO,
        };
        let mut f = LoadFailure {
            at: Instant::now(),
            error: err,
            streak: 1,
        };
        assert_eq!(f.cooldown(), Duration::from_secs(1));
        f.streak = 3;
        assert_eq!(f.cooldown(), Duration::from_secs(4));
        f.streak = 40;
        assert_eq!(f.cooldown(), MAX_LOAD_COOLDOWN);
    }

    #[test]
    fn idle_clock_only_moves_forward() {
        let epoch = Instant::now();
        let clock = IdleClock::new(epoch);
        let before = clock.last_activity();
        clock.touch();
        assert!(clock.last_activity() >= before);
        assert!(clock.idle_for(epoch) == Duration::ZERO);
    }
}
