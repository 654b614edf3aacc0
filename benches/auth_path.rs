//! The per-request auth path: parse + checksum + SHA-256 + key-cache hit.
//! Target: ≤ 2 µs on the 2-core reference machine. Run: `cargo bench --bench auth_path`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use axum::http::{HeaderMap, HeaderValue};
use criterion::{criterion_group, criterion_main, Criterion};
use quire::auth::key::{ApiKeySecret, KeyMode, KeyType};
use quire::auth::scopes::ScopeSet;
use quire::config::Config;
use quire::keys::{Actor, NewKey};
use quire::App;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (app, key) = rt.block_on(async {
        let app = App::new(Config::for_database(url)).await.unwrap();
        let project = app.keys.project_by_name("default").await.unwrap().unwrap();
        let new = NewKey {
            name: "bench".into(),
            key_type: KeyType::Public,
            mode: KeyMode::Live,
            scopes: ScopeSet::parse_list(&["records:read"], KeyType::Public, KeyMode::Live)
                .unwrap(),
            rate_limit_per_hour: 10_000,
            expires_at: None,
        };
        let (secret, _) = app
            .keys
            .create(&Actor::Admin, &project.id, new)
            .await
            .unwrap();
        (app, secret.expose().to_owned())
    });
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_str(&key).unwrap());
    rt.block_on(app.authenticator.authenticate(&headers))
        .unwrap();

    c.bench_function("parse + checksum", |b| {
        b.iter(|| ApiKeySecret::parse(black_box(&key)).unwrap())
    });
    let parsed = ApiKeySecret::parse(&key).unwrap();
    c.bench_function("sha256", |b| b.iter(|| black_box(&parsed).hash()));
    c.bench_function("authenticate (cache hit)", |b| {
        b.to_async(&rt).iter(|| async {
            app.authenticator
                .authenticate(black_box(&headers))
                .await
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
