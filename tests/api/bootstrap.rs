//! First start: the `bootstrap` key is printed once, by one instance only.
//! These tests run the real `quire` binary.

use std::time::Duration;

use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::{FreshDb, Server};

both_dbs!(bootstrap_prints_once, |db: FreshDb| async move {
    let first = Server::start(&db.url, &[]).await;
    // Give the stdout reader a moment: the key is printed before listening.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let keys = first.printed_keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = keys[0].trim().to_owned();
    assert!(key.starts_with("sk_test_") && key.len() == 46, "{key}");
    let stdout = first.stdout.lock().unwrap().join("\n");
    assert!(stdout.contains("not be shown again"), "{stdout}");

    let res: Value = reqwest::Client::new()
        .post(first.url("/graphql"))
        .header("x-api-key", &key)
        .json(&json!({ "query": "{ viewer { key { name scopes type mode } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["data"]["viewer"]["key"]["name"], "bootstrap");
    assert_eq!(
        res["data"]["viewer"]["key"]["scopes"]
            .as_array()
            .map(Vec::len),
        Some(21)
    );
    first.stop().await;

    let second = Server::start(&db.url, &[]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        second.printed_keys().is_empty(),
        "printed again: {:?}",
        second.printed_keys()
    );
    second.stop().await;
});

both_dbs!(two_instances_bootstrap_one_key, |db: FreshDb| async move {
    let (a, b) = tokio::join!(Server::start(&db.url, &[]), Server::start(&db.url, &[]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let printed = a.printed_keys().len() + b.printed_keys().len();
    assert_eq!(
        printed,
        1,
        "a: {:?} b: {:?}",
        a.printed_keys(),
        b.printed_keys()
    );
    a.stop().await;
    b.stop().await;
    let conn = quire::db::Database::connect(&db.url).await.unwrap();
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        entity::api_keys::Entity::find()
            .count(&conn.conn)
            .await
            .unwrap(),
        1
    );
    conn.conn.close().await.unwrap();
});
