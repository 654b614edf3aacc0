//! Rate limiter costs: one local decision (target ≤ 500 ns), one Redis
//! decision's round trip (when `QUIRE_TEST_REDIS_URL` is set), and the local
//! store's memory for 100,000 active keys (target ≤ 100 MiB; printed first).
//! Run: `cargo bench --bench limiter`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use quire::ratelimit::local::LocalStore;
use quire::ratelimit::window::Window;
use quire::ratelimit::Limiter;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn memory_for_active_keys(rt: &tokio::runtime::Runtime) {
    let limiter = Limiter::new(None).unwrap();
    let now = chrono::Utc::now();
    let ids: Vec<String> = (0..100_000)
        .map(|i| format!("{:08x}-0000-4000-8000-{:012x}", i, i))
        .collect();
    let before = rss_kib();
    rt.block_on(async {
        // Spread each key's requests over the hour so every bucket is in use.
        for minute in 0..61 {
            let t = now + chrono::Duration::minutes(minute);
            for id in &ids {
                limiter.check(id, 10_000, 1, t).await;
            }
        }
    });
    let after = rss_kib();
    let keys = limiter.local_keys();
    println!(
        "limiter memory: {keys} active keys, RSS +{:.1} MiB ({} bytes per key)",
        (after.saturating_sub(before)) as f64 / 1024.0,
        after.saturating_sub(before) * 1024 / keys.max(1)
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    memory_for_active_keys(&rt);

    let local = Limiter::new(None).unwrap();
    let now = chrono::Utc::now();
    let key = "5b7f9c2e-0000-4000-8000-000000000001";
    c.bench_function("local decision", |b| {
        b.to_async(&rt)
            .iter(|| async { local.check(black_box(key), 1_000_000_000, 1, now).await })
    });
    // The parts of a local decision: the window arithmetic alone, and the
    // store (shard lock + map lookup + arithmetic) without the async facade.
    let mut window = Window::new();
    let t = now.timestamp();
    c.bench_function("window arithmetic", |b| {
        b.iter(|| window.decide(black_box(t), 1_000_000_000, 1))
    });
    let store = LocalStore::new();
    c.bench_function("local store decision (sync)", |b| {
        b.iter(|| store.decide(black_box(key), 1_000_000_000, 1, t))
    });
    if let Ok(url) = std::env::var("QUIRE_TEST_REDIS_URL") {
        let redis = Limiter::new(Some(&url)).unwrap();
        let redis_key = format!("bench-{}", uuid::Uuid::new_v4());
        c.bench_function("redis decision (round trip)", |b| {
            b.to_async(&rt).iter(|| async {
                redis
                    .check(black_box(&redis_key), 1_000_000_000, 1, now)
                    .await
            })
        });
    } else {
        println!("skipped: redis decision (QUIRE_TEST_REDIS_URL is not set)");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
