//! Memory comes back: after a model holding 256 MB of touched memory is unloaded,
//! the process's resident set returns to within 10% of its value before the load.
//! (Its own test binary, so no other test's allocations blur the numbers.)

mod common;

use common::{rss_bytes, start_with, Options};
use serde_json::json;

const MODEL_BYTES: usize = 256 << 20;

#[tokio::test]
async fn unloading_gives_the_memory_back() {
    let srv = start_with(Options {
        memory_bytes: MODEL_BYTES,
        ..Options::default()
    })
    .await;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    // One full cycle first, so runtime threads, pools and allocator arenas exist.
    assert_eq!(srv.speak("Warm up.").await.0, 200);
    assert_eq!(srv.post("/model/unload", json!({})).await.0, 200);

    let before = rss_bytes();
    assert_eq!(srv.post("/model/load", json!({})).await.0, 200);
    assert_eq!(srv.speak("A sentence to speak.").await.0, 200);
    let loaded = rss_bytes();
    let status = srv.status().await;
    assert_eq!(status["memory_bytes"], MODEL_BYTES as u64);
    assert!(
        loaded >= before + (MODEL_BYTES as u64) * 9 / 10,
        "the model's memory is not resident: before {:.1} MiB, loaded {:.1} MiB",
        mib(before),
        mib(loaded)
    );
    assert_eq!(srv.post("/model/unload", json!({})).await.0, 200);
    let after = rss_bytes();
    println!(
        "RSS before load {:.1} MiB, loaded {:.1} MiB, after unload {:.1} MiB",
        mib(before),
        mib(loaded),
        mib(after)
    );
    assert!(
        after <= before + before / 10,
        "RSS after unload {:.1} MiB is more than 10% above {:.1} MiB before the load",
        mib(after),
        mib(before)
    );
    srv.stop().await;
}
