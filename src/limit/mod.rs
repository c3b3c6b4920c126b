//! Per-client rate limits: a governor keyed limiter and its poem middleware.
//!
//! Clients are told apart by API key (hashed, never stored in clear) or, without
//! one, by IP address. Keys idle long enough to be back at full burst are forgotten
//! by [`RateLimiter::forget_idle`], so the table cannot grow without bound.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use poem::http::StatusCode;
use poem::{Endpoint, Middleware, Request, Result};

/// Per-client request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    ApiKey(u64),
    Ip(IpAddr),
}

/// A request over its client's rate; carries the wait before the next one is allowed.
#[derive(Debug, thiserror::Error)]
#[error("rate limit reached; retry in {retry_after:?}")]
pub struct RateLimited {
    pub retry_after: Duration,
}

#[derive(Clone)]
pub struct RateLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<ClientKey>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Option<Self> {
        let rpm = NonZeroU32::new(limit.per_minute)?;
        let burst = NonZeroU32::new(limit.burst).unwrap_or(rpm);
        let quota = Quota::per_minute(rpm).allow_burst(burst);
        Some(Self {
            limiter: Arc::new(governor::RateLimiter::keyed(quota)),
        })
    }

    /// Count one request for `key`.
    pub fn check(&self, key: &ClientKey) -> Result<(), RateLimited> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Drop clients whose state is back to full burst.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Forget idle clients every `period` until the limiter is dropped.
    pub fn spawn_janitor(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else { break };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        })
    }
}

/// The client of a request: its bearer token if any, else its address.
pub fn client_key(req: &Request) -> Option<ClientKey> {
    let bearer = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(token) = bearer {
        let mut h = DefaultHasher::new();
        token.hash(&mut h);
        return Some(ClientKey::ApiKey(h.finish()));
    }
    req.remote_addr()
        .as_socket_addr()
        .map(|a| ClientKey::Ip(a.ip()))
}

/// Middleware rejecting requests over the rate with [`RateLimited`] (the API layer
/// turns it into a 429 with `Retry-After`). Paths in `exempt` are never limited;
/// without a limiter every request passes.
pub struct ClientRateLimit {
    limiter: Option<RateLimiter>,
    exempt: &'static [&'static str],
}

impl ClientRateLimit {
    pub fn new(limiter: Option<RateLimiter>, exempt: &'static [&'static str]) -> Self {
        Self { limiter, exempt }
    }
}

impl<E: Endpoint> Middleware<E> for ClientRateLimit {
    type Output = RateLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RateLimitEndpoint {
            inner: ep,
            limiter: self.limiter.clone(),
            exempt: self.exempt,
        }
    }
}

pub struct RateLimitEndpoint<E> {
    inner: E,
    limiter: Option<RateLimiter>,
    exempt: &'static [&'static str],
}

impl<E: Endpoint> Endpoint for RateLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        if let Some(limiter) = &self.limiter {
            if !self.exempt.contains(&req.uri().path()) {
                if let Some(key) = client_key(&req) {
                    if let Err(limited) = limiter.check(&key) {
                        return Err(poem::Error::new(limited, StatusCode::TOO_MANY_REQUESTS));
                    }
                }
            }
        }
        self.inner.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_reject_with_a_wait() {
        let limiter = RateLimiter::new(RateLimit {
            per_minute: 60,
            burst: 2,
        })
        .unwrap();
        let a = ClientKey::Ip("127.0.0.1".parse().unwrap());
        let b = ClientKey::ApiKey(7);
        assert!(limiter.check(&a).is_ok());
        assert!(limiter.check(&a).is_ok());
        let err = limiter.check(&a).unwrap_err();
        assert!(err.retry_after > Duration::ZERO && err.retry_after <= Duration::from_secs(1));
        assert!(limiter.check(&b).is_ok(), "clients are limited separately");
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn idle_clients_are_forgotten() {
        // 60 000 a minute: a cell comes back every millisecond.
        let limiter = RateLimiter::new(RateLimit {
            per_minute: 60_000,
            burst: 1,
        })
        .unwrap();
        for i in 0..100u64 {
            assert!(limiter.check(&ClientKey::ApiKey(i)).is_ok());
        }
        assert_eq!(limiter.tracked(), 100);
        std::thread::sleep(Duration::from_millis(20));
        limiter.forget_idle();
        assert_eq!(limiter.tracked(), 0);
    }
}
