//! moka's per-entry expiry, driven by the model's own idle clock.
//!
//! Every call recomputes the deadline from the model's last activity and current
//! timeout, so reads that are not requests (status, re-arming after a lease) never
//! extend a model's life, and a new timeout applies to the running clock at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use super::loaded::Loaded;

pub(crate) struct IdleExpiry;

impl Expiry<String, Arc<Loaded>> for IdleExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Arc<Loaded>,
        now: Instant,
    ) -> Option<Duration> {
        value.idle_remaining(now)
    }

    fn expire_after_read(
        &self,
        _: &String,
        value: &Arc<Loaded>,
        now: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        value.idle_remaining(now)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Arc<Loaded>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value.idle_remaining(now)
    }
}
