//! What happens when a model leaves the cache.

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
