//! Files (SPEC §7): upload (raw and multipart), the type from the bytes,
//! delivery (ETag, 304, Range, 416, HEAD, immutable caching), drafts served
//! only through signed URLs, image variants, the `FILE` field type and
//! publishing with records, deletion, scopes, rate limits, and the attacks:
//! another project's id, tampered and expired signatures, path traversal,
//! a decompression bomb, a fake PNG, a client gone mid-upload.

use std::io::{Cursor, Write as _};
use std::path::Path;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::{Backend, FreshDb, Server, TestApp};

pub const FILE_FIELDS: &str =
    "id filename contentType size sha256 width height alt status url createdAt publishedAt";

/// A PNG of `w`x`h` (real, decodable).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A PNG whose header declares 100000x100000 pixels (and holds none).
pub fn bomb_png() -> Vec<u8> {
    let mut bytes = png(1, 1);
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    bytes
}

/// `POST /files?filename=NAME` with `bytes`.
pub async fn upload(
    app: &TestApp,
    key: &str,
    name: &str,
    bytes: Vec<u8>,
    content_type: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/files"))
        .query(&[("filename", name)])
        .header("x-api-key", key)
        .body(bytes);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

/// Uploads and returns the `file` object (panics unless 201).
pub async fn uploaded(app: &TestApp, key: &str, name: &str, bytes: Vec<u8>) -> Value {
    let r = upload(app, key, name, bytes, None).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["file"].clone()
}

async fn gql_file(app: &TestApp, key: &str, op: &str, id: &str) -> Value {
    let q = format!("mutation($id: ID!) {{ {op}(id: $id) {{ {FILE_FIELDS} }} }}");
    app.data(key, &q, json!({ "id": id })).await[op].clone()
}

/// The types of the events `key` sees for file `id`, oldest first.
async fn file_event_types(app: &TestApp, key: &str, id: &str) -> Vec<String> {
    let events = app
        .data(
            key,
            "{ events(limit: 50, types: [\"file.*\"]) { items { type fileId } } }",
            json!({}),
        )
        .await;
    events["events"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fileId"] == id)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_owned()
}

/// Every regular file under `dir` (what the store holds on disk, staging
/// files included).
fn files_on_disk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_on_disk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

fn store_dir(app: &TestApp) -> std::path::PathBuf {
    app.database().dir().join("files")
}

async fn miss_body(app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = get(app, path).await;
    (r.status(), r.text().await.unwrap())
}

both_dbs!(upload_publish_and_deliver, |app: TestApp| async move {
    let t = app.default_tenant().await;
    let bytes = png(64, 32);
    let f = uploaded(&app, &t.root, "hero.png", bytes.clone()).await;
    assert_eq!(f["contentType"], "image/png");
    assert_eq!(
        (f["width"].as_i64(), f["height"].as_i64()),
        (Some(64), Some(32))
    );
    assert_eq!(f["size"].as_u64(), Some(bytes.len() as u64));
    use sha2::Digest;
    assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(f["status"], "DRAFT");
    assert!(f["url"].is_null(), "a draft has no public URL");
    let id = f["id"].as_str().unwrap().to_owned();
    let public_path = format!("/files/{id}/hero.png");

    // A draft is a miss, like an unknown id or a wrong name.
    let draft = miss_body(&app, &public_path).await;
    let unknown = miss_body(&app, "/files/00000000-0000-0000-0000-000000000000/hero.png").await;
    let wrong_name = miss_body(&app, &format!("/files/{id}/other.png")).await;
    assert_eq!(draft.0, StatusCode::NOT_FOUND);
    assert_eq!(draft, unknown);
    assert_eq!(draft, wrong_name);

    let published = gql_file(&app, &t.root, "publishFile", &id).await;
    assert_eq!(published["status"], "PUBLISHED");
    let url = published["url"].as_str().unwrap();
    assert_eq!(path_of(url), public_path);
    assert!(url.starts_with(&format!("http://{}", app.addr)), "{url}");

    let r = get(&app, &public_path).await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = format!("\"{}\"", f["sha256"].as_str().unwrap());
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);

    let head = app.client.head(app.url(&public_path)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        bytes.len().to_string().as_str()
    );

    let r = app
        .client
        .get(app.url(&public_path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    let r = app
        .client
        .get(app.url(&public_path))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-9/{}", bytes.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[..10].to_vec());
    let r = app
        .client
        .get(app.url(&public_path))
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        bytes[bytes.len() - 5..].to_vec()
    );
    let r = app
        .client
        .get(app.url(&public_path))
        .header("range", "bytes=999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );

    // Unpublished: a miss again, the same miss.
    gql_file(&app, &t.root, "unpublishFile", &id).await;
    assert_eq!(miss_body(&app, &public_path).await, unknown);

    // Events, in the same transactions.
    assert_eq!(
        file_event_types(&app, &t.root, &id).await,
        ["file.created", "file.published", "file.unpublished"]
    );
});

both_dbs!(multipart_and_declared_types, |app: TestApp| async move {
    let t = app.default_tenant().await;
    let boundary = "XyZ123";
    let mut body = Vec::new();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
    )
    .unwrap();
    write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\n").unwrap();
    body.extend_from_slice(b"just some words");
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    let r = app
        .client
        .post(app.url("/files"))
        .header("x-api-key", t.root.secret.as_str())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["file"]["filename"], "notes.txt");
    assert_eq!(f["file"]["contentType"], "text/plain");
    assert_eq!(f["file"]["size"], 15);

    // A PDF is known by its bytes, whatever it claims.
    let pdf = upload(
        &app,
        &t.root,
        "doc.bin",
        b"%PDF-1.7\n%...".to_vec(),
        Some("text/plain"),
    )
    .await;
    assert_eq!(
        pdf.json::<Value>().await.unwrap()["file"]["contentType"],
        "application/pdf"
    );
    // No type at all: octet-stream.
    let raw = upload(&app, &t.root, "blob", vec![0, 1, 2, 3], None).await;
    assert_eq!(
        raw.json::<Value>().await.unwrap()["file"]["contentType"],
        "application/octet-stream"
    );
    // No filename: 400.
    let r = app
        .client
        .post(app.url("/files"))
        .header("x-api-key", t.root.secret.as_str())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
        "BAD_REQUEST"
    );
});

both_dbs!(upload_refusals_and_budget, |app: TestApp| async move {
    let _tenant = app.default_tenant().await;
    // No key, a bad key: 401, GraphQL-shaped.
    for key in [None, Some("sk_test_nope")] {
        let mut req = app.client.post(app.url("/files?filename=a.txt")).body("x");
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key("www-authenticate"));
        assert_eq!(
            r.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
            "UNAUTHENTICATED"
        );
    }
    // A key without files:write: 403 with the rate-limit headers.
    let reader = app
        .new_key()
        .secret()
        .test()
        .scopes(&["files:read"])
        .create()
        .await;
    let r = upload(&app, &reader, "a.txt", b"x".to_vec(), None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().contains_key("x-ratelimit-remaining"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
    // An upload counts 1; over the budget: 429 with Retry-After.
    let writer = app
        .new_key()
        .secret()
        .test()
        .scopes(&["files:write"])
        .limit(2)
        .create()
        .await;
    let r = upload(&app, &writer, "a.txt", b"x".to_vec(), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "1");
    upload(&app, &writer, "b.txt", b"x".to_vec(), None).await;
    let r = upload(&app, &writer, "c.txt", b"x".to_vec(), None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
        "RATE_LIMITED"
    );
});

both_dbs!(
    too_large_is_413_and_leaves_nothing,
    |backend: Backend| async move {
        let Some(app) = TestApp::try_spawn_with(backend, |c| c.files.max_file_bytes = 1000).await
        else {
            return;
        };
        let t = app.default_tenant().await;
        let r = upload(&app, &t.root, "big.bin", vec![7; 1001], None).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            r.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
            "PAYLOAD_TOO_LARGE"
        );
        // Chunked (no Content-Length): refused as the limit is crossed.
        let chunks =
            futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![1u8; 100])));
        let r = app
            .client
            .post(app.url("/files?filename=big.bin"))
            .header("x-api-key", t.root.secret.as_str())
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // The refusal closes its connection (its body was not read), so the
        // client does not reuse it for the next upload.
        assert_eq!(r.headers()["connection"], "close");
        let r = upload(&app, &t.root, "fits.bin", vec![7; 1000], None).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            files_on_disk(&store_dir(&app)).len(),
            1,
            "only the file that fit"
        );
        let listed = app
            .data(
                &t.root,
                "{ files(preview: true) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(listed["files"]["totalCount"], 1);
    }
);

both_dbs!(
    bombs_and_fake_images_are_refused,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        let r = upload(&app, &t.root, "bomb.png", bomb_png(), None).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("pixels"),
            "{body}"
        );
        // PNG magic, then garbage: not an image we can read.
        let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
        fake.extend_from_slice(b"<script>alert(1)</script>");
        let r = upload(&app, &t.root, "fake.png", fake, Some("image/png")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        // Claims to be a PNG (name and type) but is HTML: not believed.
        let html = upload(
            &app,
            &t.root,
            "x.png",
            b"<html><script>alert(1)</script>".to_vec(),
            Some("image/png"),
        )
        .await;
        let f = html.json::<Value>().await.unwrap()["file"].clone();
        assert_eq!(f["contentType"], "application/octet-stream");
        assert!(f["width"].is_null());
        let id = f["id"].as_str().unwrap();
        gql_file(&app, &t.root, "publishFile", id).await;
        let r = get(&app, &format!("/files/{id}/x.png")).await;
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        // Transform parameters on a non-image: 400.
        let r = get(&app, &format!("/files/{id}/x.png?w=10")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            files_on_disk(&store_dir(&app)).len(),
            1,
            "the refused uploads left nothing"
        );
    }
);

both_dbs!(path_traversal_goes_nowhere, |app: TestApp| async move {
    let t = app.default_tenant().await;
    let f = uploaded(&app, &t.root, "../../etc/passwd", b"root:x:0:0".to_vec()).await;
    assert_eq!(f["filename"], "passwd");
    let id = f["id"].as_str().unwrap().to_owned();
    gql_file(&app, &t.root, "publishFile", &id).await;
    let on_disk = files_on_disk(&store_dir(&app));
    assert_eq!(on_disk.len(), 1);
    assert!(on_disk[0].starts_with(&store_dir(&app).display().to_string()));
    assert!(
        on_disk[0].ends_with(&format!("{}/{id}/original", t.project.id)),
        "{on_disk:?}"
    );
    assert_eq!(
        get(&app, &format!("/files/{id}/passwd")).await.status(),
        StatusCode::OK
    );
    for path in [
        format!("/files/{id}/%2e%2e%2fpasswd"),
        format!("/files/{id}/..%2F..%2Fetc%2Fpasswd"),
        format!("/files/{id}/%2e%2e/passwd"),
        format!("/files/{id}/../../etc/passwd"),
        "/files/..%2F..%2Fetc/passwd".to_owned(),
    ] {
        assert_eq!(
            get(&app, &path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // updateFile refuses a name with a separator.
    let r = app
        .gql(
            &t.root,
            "mutation($id: ID!) { updateFile(id: $id, input: { filename: \"../x\" }) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r.code(), Some("BAD_USER_INPUT"));
    let renamed = app
        .data(&t.root, "mutation($id: ID!) { updateFile(id: $id, input: { filename: \"a b.txt\", alt: \"A\" }) { filename alt url } }", json!({ "id": id }))
        .await;
    assert_eq!(renamed["updateFile"]["alt"], "A");
    let url = renamed["updateFile"]["url"].as_str().unwrap();
    assert!(url.ends_with("/a%20b.txt"), "{url}");
    assert_eq!(get(&app, &path_of(url)).await.status(), StatusCode::OK);
    assert_eq!(
        get(&app, &format!("/files/{id}/passwd")).await.status(),
        StatusCode::NOT_FOUND
    );
});

both_dbs!(drafts_need_a_valid_signature, |app: TestApp| async move {
    let t = app.default_tenant().await;
    let f = uploaded(&app, &t.root, "draft.png", png(8, 8)).await;
    let id = f["id"].as_str().unwrap().to_owned();
    let q = "query($id: ID!, $s: Int) { file(id: $id, preview: true) { previewUrl(expiresInSeconds: $s) } }";
    let signed = app.data(&t.root, q, json!({ "id": id, "s": 60 })).await["file"]["previewUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = path_of(&signed);
    let r = get(&app, &path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    // A variant through the same signature.
    assert_eq!(
        get(&app, &format!("{path}&w=4")).await.status(),
        StatusCode::OK
    );

    let miss = miss_body(&app, &format!("/files/{id}/draft.png")).await;
    assert_eq!(miss.0, StatusCode::NOT_FOUND);
    // Tampered: another expiry, another signature, another file's name.
    let (base, query) = path.split_once('?').unwrap();
    let expires: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap()
        .parse()
        .unwrap();
    let sig = query
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .unwrap();
    let mut flipped = sig.to_owned();
    flipped.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
    for bad in [
        format!("{base}?expires={}&sig={sig}", expires + 1000),
        format!("{base}?expires={expires}&sig={flipped}"),
        format!("{base}?expires={expires}"),
        format!("{base}?expires={expires}&sig="),
        format!("{base}?expires={expires}&sig=zz"),
    ] {
        assert_eq!(miss_body(&app, &bad).await, miss, "{bad}");
    }
    // Expired: the same miss.
    app.clock.advance(ChronoDuration::seconds(61));
    assert_eq!(miss_body(&app, &path).await, miss);

    // Who may ask for a preview URL.
    let live = app
        .new_key()
        .secret()
        .live()
        .scopes(&["files:read", "records:read"])
        .create()
        .await;
    let public = app
        .new_key()
        .public()
        .test()
        .scopes(&["files:read", "records:read"])
        .create()
        .await;
    let no_drafts = app
        .new_key()
        .secret()
        .test()
        .scopes(&["files:read", "records:read"])
        .create()
        .await;
    for key in [&live, &public, &no_drafts] {
        let r = app.gql(key, q, json!({ "id": id, "s": 60 })).await;
        assert_eq!(r.code(), Some("FORBIDDEN"), "{}", r.body);
        // Files apply the drafts:read rule of records, word for word.
        let files = app
            .gql(key, "{ files(preview: true) { totalCount } }", json!({}))
            .await;
        let records = app
            .gql(
                key,
                "{ records(modelKey: \"none\", preview: true) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(files.code(), Some("FORBIDDEN"));
        assert_eq!(files.message(), records.message());
    }
    gql_file(&app, &t.root, "publishFile", &id).await;
    let r = app
        .gql(
            &live,
            "query($id: ID!) { file(id: $id) { status previewUrl } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r.code(), Some("FORBIDDEN"));
    assert_eq!(
        r.body["data"]["file"]["status"], "PUBLISHED",
        "the other fields still answer"
    );
    let r = app.gql(&t.root, q, json!({ "id": id, "s": 604801 })).await;
    assert_eq!(r.code(), Some("BAD_USER_INPUT"));
});

both_dbs!(views_projects_and_scopes, |app: TestApp| async move {
    let t = app.default_tenant().await;
    let other = app.tenant("other").await;
    let draft = uploaded(&app, &t.root, "d.txt", b"d".to_vec()).await;
    let public = uploaded(&app, &t.root, "p.txt", b"p".to_vec()).await;
    let (draft, public) = (
        draft["id"].as_str().unwrap().to_owned(),
        public["id"].as_str().unwrap().to_owned(),
    );
    gql_file(&app, &t.root, "publishFile", &public).await;

    let reader = app
        .new_key()
        .public()
        .live()
        .scopes(&["files:read"])
        .create()
        .await;
    let listed = app
        .data(&reader, "{ files { items { id } totalCount } }", json!({}))
        .await;
    assert_eq!(listed["files"]["items"], json!([{ "id": public }]));
    assert_eq!(listed["files"]["totalCount"], 1);
    let one = app
        .data(
            &reader,
            "query($id: ID!) { file(id: $id) { id } }",
            json!({ "id": draft }),
        )
        .await;
    assert!(
        one["file"].is_null(),
        "a draft does not exist in the published view"
    );
    let r = app
        .gql(
            &reader,
            "{ files(preview: true) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(r.code(), Some("FORBIDDEN"));
    let all = app
        .data(
            &t.root,
            "{ files(preview: true) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(all["files"]["totalCount"], 2);

    // Another project's key sees nothing and touches nothing.
    let theirs = app
        .data(
            &other.root,
            "query($id: ID!) { file(id: $id, preview: true) { id } }",
            json!({ "id": public }),
        )
        .await;
    assert!(theirs["file"].is_null());
    for op in ["publishFile", "unpublishFile"] {
        let q = format!("mutation($id: ID!) {{ {op}(id: $id) {{ id }} }}");
        assert_eq!(
            app.gql(&other.root, &q, json!({ "id": draft }))
                .await
                .code(),
            Some("NOT_FOUND")
        );
    }
    let r = app
        .gql(
            &other.root,
            "mutation($id: ID!) { deleteFile(id: $id) }",
            json!({ "id": public }),
        )
        .await;
    assert_eq!(r.code(), Some("NOT_FOUND"));
    let listed = app
        .data(
            &other.root,
            "{ files(preview: true) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["files"]["totalCount"], 0);

    // Scopes: each operation × the scope it needs.
    let cases = [
        ("{ files { totalCount } }", json!({}), "files:read"),
        (
            "query($id: ID!) { file(id: $id) { id } }",
            json!({ "id": public }),
            "files:read",
        ),
        (
            "mutation($id: ID!) { updateFile(id: $id, input: { alt: \"x\" }) { id } }",
            json!({ "id": public }),
            "files:write",
        ),
        (
            "mutation($id: ID!) { publishFile(id: $id) { id } }",
            json!({ "id": public }),
            "files:write",
        ),
        (
            "mutation($id: ID!) { unpublishFile(id: $id) { id } }",
            json!({ "id": draft }),
            "files:write",
        ),
        (
            "mutation($id: ID!) { deleteFile(id: $id) }",
            json!({ "id": draft }),
            "files:delete",
        ),
    ];
    for (query, vars, needed) in cases {
        let others: Vec<&str> = ["files:read", "files:write", "files:delete", "records:read"]
            .into_iter()
            .filter(|s| *s != needed)
            .collect();
        let without = app.new_key().secret().test().scopes(&others).create().await;
        assert_eq!(
            app.gql(&without, query, vars.clone()).await.code(),
            Some("FORBIDDEN"),
            "{query} without {needed}"
        );
        let with = app
            .new_key()
            .secret()
            .test()
            .scopes(&[needed])
            .create()
            .await;
        let r = app.gql(&with, query, vars.clone()).await;
        assert!(
            r.body.get("errors").is_none(),
            "{query} with {needed}: {}",
            r.body
        );
    }
    // Paging: newest first, cursors walk everything once.
    for i in 0..5 {
        app.clock.advance(ChronoDuration::milliseconds(10));
        uploaded(&app, &t.root, &format!("n{i}.txt"), vec![i]).await;
    }
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .data(&t.root, "query($a: String) { files(limit: 2, after: $a, preview: true) { items { filename } pageInfo { hasNextPage endCursor } } }", json!({ "a": after }))
            .await;
        for item in page["files"]["items"].as_array().unwrap() {
            seen.push(item["filename"].as_str().unwrap().to_owned());
        }
        if !page["files"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["files"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(&seen[..2], ["n4.txt", "n3.txt"]);
    let r = app
        .gql(&t.root, "{ files(limit: 101) { totalCount } }", json!({}))
        .await;
    assert_eq!(r.code(), Some("BAD_USER_INPUT"));
});

both_dbs!(image_variants, |app: TestApp| async move {
    let t = app.default_tenant().await;
    let f = uploaded(&app, &t.root, "pic.png", png(200, 100)).await;
    let id = f["id"].as_str().unwrap().to_owned();
    gql_file(&app, &t.root, "publishFile", &id).await;
    let base = format!("/files/{id}/pic.png");
    let size_of = |bytes: &[u8]| {
        let s = imagesize::blob_size(bytes).unwrap();
        (s.width, s.height)
    };
    let cases = [
        ("w=100", (100, 50), "image/png"),
        ("h=25", (50, 25), "image/png"),
        ("w=50&h=50&fit=inside", (50, 25), "image/png"),
        ("w=50&h=50&fit=contain", (50, 50), "image/png"),
        ("w=50&h=50&fit=cover", (50, 50), "image/png"),
        ("w=50&h=60&fit=fill", (50, 60), "image/png"),
        ("w=40&fm=jpeg&q=50", (40, 20), "image/jpeg"),
        ("w=40&fm=webp", (40, 20), "image/webp"),
    ];
    for (query, dims, ct) in cases {
        let r = get(&app, &format!("{base}?{query}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        assert_eq!(r.headers()["content-type"], ct, "{query}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(size_of(&r.bytes().await.unwrap()), dims, "{query}");
        let again = app
            .client
            .get(app.url(&format!("{base}?{query}")))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    // Kept beside the original: a repeated URL reads the stored variant.
    let variants: Vec<String> = files_on_disk(&store_dir(&app))
        .into_iter()
        .filter(|p| p.contains("/v/"))
        .collect();
    assert_eq!(variants.len(), cases.len(), "{variants:?}");
    let stored = app
        .state
        .files
        .storage
        .list_project(&t.project.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), cases.len() + 1);
    let first = get(&app, &format!("{base}?w=100"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(size_of(&first), (100, 50));
    for bad in [
        "w=0", "w=4001", "h=abc", "fit=zoom", "fm=bmp", "q=0", "q=101",
    ] {
        let r = get(&app, &format!("{base}?{bad}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
            "BAD_REQUEST"
        );
    }
    // Deleting the file removes its bytes and every variant.
    let r = app
        .data(
            &t.root,
            "mutation($id: ID!) { deleteFile(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r["deleteFile"], true);
    assert!(files_on_disk(&store_dir(&app)).is_empty());
    assert_eq!(get(&app, &base).await.status(), StatusCode::NOT_FOUND);
});

both_dbs!(
    file_fields_publish_with_records,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        let other = app.tenant("other").await;
        app.create_model(
            &t.root,
            json!({ "key": "post", "name": "Post", "fields": [
        { "name": "title", "type": "STRING" },
        { "name": "cover", "type": "FILE" }
    ] }),
        )
        .await;
        let model = app
            .data(
                &t.root,
                "{ model(key: \"post\") { fields { name type } } }",
                json!({}),
            )
            .await;
        assert_eq!(model["model"]["fields"][1]["type"], "FILE");
        let mine = uploaded(&app, &t.root, "cover.png", png(4, 4)).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let theirs = uploaded(&app, &other.root, "x.png", png(4, 4)).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let create = "mutation($d: JSON!) { createRecord(modelKey: \"post\", data: $d) { id } }";
        for bad in [json!("nope"), json!(theirs), json!(42)] {
            let r = app
                .gql(
                    &t.root,
                    create,
                    json!({ "d": { "title": "T", "cover": bad } }),
                )
                .await;
            assert_eq!(r.code(), Some("BAD_USER_INPUT"), "{bad}");
            assert_eq!(r.error_field(), Some("cover"));
        }
        let record = app
            .data(
                &t.root,
                create,
                json!({ "d": { "title": "T", "cover": mine } }),
            )
            .await["createRecord"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let status = "query($id: ID!) { file(id: $id, preview: true) { status } }";
        assert_eq!(
            app.data(&t.root, status, json!({ "id": mine })).await["file"]["status"],
            "DRAFT"
        );
        app.data(
            &t.root,
            "mutation($id: ID!) { publishRecord(id: $id) { id } }",
            json!({ "id": record }),
        )
        .await;
        assert_eq!(
            app.data(&t.root, status, json!({ "id": mine })).await["file"]["status"],
            "PUBLISHED"
        );
        assert_eq!(
            get(&app, &format!("/files/{mine}/cover.png"))
                .await
                .status(),
            StatusCode::OK
        );

        let r = app
            .gql(
                &t.root,
                "mutation($id: ID!) { deleteFile(id: $id) }",
                json!({ "id": mine }),
            )
            .await;
        assert_eq!(r.code(), Some("CONFLICT"));
        assert!(r.message().contains(&record), "{}", r.message());
        app.data(
            &t.root,
            "mutation($id: ID!) { deleteRecord(id: $id) }",
            json!({ "id": record }),
        )
        .await;
        let r = app
            .data(
                &t.root,
                "mutation($id: ID!) { deleteFile(id: $id) }",
                json!({ "id": mine }),
            )
            .await;
        assert_eq!(r["deleteFile"], true);
        assert_eq!(
            file_event_types(&app, &t.root, &mine).await,
            ["file.created", "file.published", "file.deleted"]
        );
    }
);

both_dbs!(
    unpublish_reaches_other_instances,
    |app: TestApp| async move {
        let b = app.sibling(|_| {}).await;
        let t = app.default_tenant().await;
        let id = uploaded(&app, &t.root, "a.txt", b"a".to_vec()).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        gql_file(&app, &t.root, "publishFile", &id).await;
        let path = format!("/files/{id}/a.txt");
        assert_eq!(get(&b, &path).await.status(), StatusCode::OK);
        gql_file(&app, &t.root, "unpublishFile", &id).await;
        let started = std::time::Instant::now();
        while get(&b, &path).await.status() != StatusCode::NOT_FOUND {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "still served after 2 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gql_file(&app, &t.root, "publishFile", &id).await;
        assert_eq!(get(&b, &path).await.status(), StatusCode::OK);
        app.data(
            &t.root,
            "mutation($id: ID!) { deleteFile(id: $id) }",
            json!({ "id": id }),
        )
        .await;
        assert_eq!(get(&b, &path).await.status(), StatusCode::NOT_FOUND);
    }
);

both_dbs!(
    a_client_gone_mid_upload_leaves_nothing,
    |app: TestApp| async move {
        use tokio::io::AsyncWriteExt;
        let t = app.default_tenant().await;
        // Larger than one part, so the store has started writing parts.
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
        "POST /files?filename=cut.bin HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nContent-Length: 20000000\r\n\r\n",
        t.root.secret.as_str()
    );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![5u8; 1024 * 1024];
        for _ in 0..12 {
            stream.write_all(&chunk).await.unwrap();
        }
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(stream);
        let started = std::time::Instant::now();
        loop {
            let left = files_on_disk(&store_dir(&app));
            if left.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "left behind: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let listed = app
            .data(
                &t.root,
                "{ files(preview: true) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(listed["files"]["totalCount"], 0);
    }
);

/// The server's resident set (kB) and its peak, from /proc.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

both_dbs!(
    a_200_mib_upload_keeps_memory_flat,
    |db: FreshDb| async move {
        let dir = tempfile::tempdir().unwrap();
        let files_dir = dir.path().display().to_string();
        let server = Server::start(
            &db.url,
            &[
                ("QUIRE_MAX_FILE_BYTES", "262144000"),
                ("QUIRE_FILES_DIR", files_dir.as_str()),
            ],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let key = server
            .printed_keys()
            .into_iter()
            .find_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("sk_test_"))
                    .map(str::to_owned)
            })
            .unwrap();
        let client = reqwest::Client::new();
        // Warm the server up with a small upload first.
        let r = client
            .post(server.url("/files?filename=warm.bin"))
            .header("x-api-key", &key)
            .body(vec![1u8; 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let pid = server.child.id().unwrap();
        let (before, _) = rss_kb(pid);
        const MIB: usize = 1024 * 1024;
        let chunks = futures::stream::iter(
            (0..200).map(|i| Ok::<_, std::io::Error>(vec![(i % 251) as u8; MIB])),
        );
        let r = client
            .post(server.url("/files?filename=big.bin"))
            .header("x-api-key", &key)
            .header("content-length", (200 * MIB).to_string())
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let f: Value = r.json().await.unwrap();
        assert_eq!(f["file"]["size"].as_u64(), Some(200 * MIB as u64));
        let (after, peak) = rss_kb(pid);
        let growth_mib = (peak.saturating_sub(before)) as f64 / 1024.0;
        eprintln!("200 MiB upload: RSS before {before} kB, after {after} kB, peak {peak} kB: growth {growth_mib:.1} MiB");
        assert!(growth_mib < 32.0, "RSS grew by {growth_mib:.1} MiB");
        server.stop().await;
    }
);

/// A server whose files live in a fresh bucket of the local moto server;
/// `None` (saying so) without moto or without the backend.
async fn on_s3(
    backend: Backend,
    configure: impl FnOnce(&mut quire::config::Config),
) -> Option<(TestApp, u16, String)> {
    let (port, bucket) = crate::support::moto::fresh_bucket().await?;
    let url = format!("s3://{bucket}/some/prefix");
    let app = TestApp::try_spawn_with(backend, |c| {
        c.files.files_url = Some(url.as_str().into());
        configure(c);
    })
    .await?;
    Some((app, port, bucket))
}

both_dbs!(s3_store_round_trip, |backend: Backend| async move {
    let Some((app, port, bucket)) = on_s3(backend, |_| {}).await else {
        return;
    };
    let t = app.default_tenant().await;
    let bytes = png(120, 60);
    let f = uploaded(&app, &t.root, "s3.png", bytes.clone()).await;
    let id = f["id"].as_str().unwrap().to_owned();
    gql_file(&app, &t.root, "publishFile", &id).await;
    let path = format!("/files/{id}/s3.png");
    // Another instance on the same bucket serves it too.
    let b = app
        .sibling(|c| c.files.files_url = Some(format!("s3://{bucket}/some/prefix").as_str().into()))
        .await;
    let r = get(&b, &path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    let r = app
        .client
        .get(app.url(&path))
        .header("range", "bytes=8-15")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[8..16].to_vec());
    let r = get(&app, &format!("{path}?w=30")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s = imagesize::blob_size(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((s.width, s.height), (30, 15));
    let stored = app
        .state
        .files
        .storage
        .list_project(&t.project.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "original and variant: {stored:?}");
    app.data(
        &t.root,
        "mutation($id: ID!) { deleteFile(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    assert!(app
        .state
        .files
        .storage
        .list_project(&t.project.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(get(&b, &path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        crate::support::moto::open_multipart_uploads(port, &bucket).await,
        0
    );
});

both_dbs!(
    s3_refused_and_cut_uploads_leave_nothing,
    |backend: Backend| async move {
        let Some((app, port, bucket)) =
            on_s3(backend, |c| c.files.max_file_bytes = 12 * 1024 * 1024).await
        else {
            return;
        };
        use tokio::io::AsyncWriteExt;
        let t = app.default_tenant().await;
        // Over the limit after two parts went up: 413, and the upload aborted.
        let chunks =
            futures::stream::iter((0..13).map(|_| Ok::<_, std::io::Error>(vec![3u8; 1024 * 1024])));
        let r = app
            .client
            .post(app.url("/files?filename=big.bin"))
            .header("x-api-key", t.root.secret.as_str())
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // A client gone after 11 MiB.
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
        "POST /files?filename=cut.bin HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nContent-Length: 12000000\r\n\r\n",
        t.root.secret.as_str()
    );
        stream.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..11 {
            stream.write_all(&vec![4u8; 1024 * 1024]).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(stream);
        let started = std::time::Instant::now();
        loop {
            let objects = app
                .state
                .files
                .storage
                .list_project(&t.project.id)
                .await
                .unwrap();
            let open = crate::support::moto::open_multipart_uploads(port, &bucket).await;
            if objects.is_empty() && open == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "left: {objects:?}, {open} open uploads"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let listed = app
            .data(
                &t.root,
                "{ files(preview: true) { totalCount } }",
                json!({}),
            )
            .await;
        assert_eq!(listed["files"]["totalCount"], 0);
    }
);

both_dbs!(cli_uploads_publishes_and_lists, |db: FreshDb| async move {
    let dir = tempfile::tempdir().unwrap();
    let files_dir = dir.path().join("store").display().to_string();
    let server = Server::start(&db.url, &[("QUIRE_FILES_DIR", files_dir.as_str())]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = server
        .printed_keys()
        .into_iter()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("sk_test_"))
                .map(str::to_owned)
        })
        .unwrap();
    let path = dir.path().join("logo.png");
    std::fs::write(&path, png(10, 6)).unwrap();
    let run = |args: Vec<String>| {
        let key = key.clone();
        let url = server.url("");
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"))
                .args(&args)
                .env("QUIRE_URL", url)
                .env("QUIRE_API_KEY", key)
                .output()
                .await
                .unwrap()
        }
    };
    let out = run(vec![
        "files".into(),
        "upload".into(),
        path.display().to_string(),
        "--publish".into(),
        "--json".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(file["status"], "PUBLISHED");
    assert_eq!(
        (file["width"].as_i64(), file["height"].as_i64()),
        (Some(10), Some(6))
    );
    let served = reqwest::get(file["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let out = run(vec!["files".into(), "list".into(), "--json".into()]).await;
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], file["id"]);
    // A missing file is an error on stderr with a non-zero status.
    let out = run(vec![
        "files".into(),
        "upload".into(),
        "/nonexistent/x.png".into(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
    server.stop().await;
});

// The transform bound (QUIRE_MAX_IMAGE_TRANSFORMS) and deadline
// (QUIRE_IMAGE_TRANSFORM_SECONDS): with the one permit held, a variant waits
// its turn and is given up with 503 at the deadline; with the permit back,
// the same URL is made; two at once share the one permit in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transforms_wait_their_turn_and_give_up_at_the_deadline() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::try_spawn_with(backend, |c| {
            c.files.max_image_transforms = 1;
            c.files.image_transform_seconds = 1;
        })
        .await
        else {
            continue;
        };
        let t = app.default_tenant().await;
        let f = uploaded(&app, &t.root, "pic.png", png(200, 100)).await;
        let id = f["id"].as_str().unwrap().to_owned();
        gql_file(&app, &t.root, "publishFile", &id).await;
        let permits = app.state.files.transform_permits().clone();
        assert_eq!(permits.available_permits(), 1, "{backend:?}");
        let held = permits.clone().acquire_owned().await.unwrap();
        let started = std::time::Instant::now();
        let r = get(&app, &format!("/files/{id}/pic.png?w=50")).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{backend:?}");
        assert!(r.headers().contains_key("retry-after"), "{backend:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "SERVICE_UNAVAILABLE"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{backend:?}: waited for the deadline"
        );
        drop(held);
        let (w50, w60) = (
            format!("/files/{id}/pic.png?w=50"),
            format!("/files/{id}/pic.png?w=60"),
        );
        let (a, b) = tokio::join!(get(&app, &w50), get(&app, &w60));
        assert_eq!(a.status(), StatusCode::OK, "{backend:?}");
        assert_eq!(b.status(), StatusCode::OK, "{backend:?}");
        assert_eq!(
            permits.available_permits(),
            1,
            "{backend:?}: every permit came back"
        );
    }
}

// File events in the LIVE feed (SPEC §9): a LIVE key sees the events that
// changed the published view (publish, unpublish, the delete of a published
// file), never a draft's created, updated or deleted; a TEST key sees all.
both_dbs!(
    live_keys_see_only_published_view_file_events,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        let live = app
            .new_key()
            .public()
            .live()
            .scopes(&["notifications:read"])
            .create()
            .await;
        let test = app
            .new_key()
            .public()
            .test()
            .scopes(&["notifications:read"])
            .create()
            .await;
        let shown = uploaded(&app, &t.root, "a.png", png(4, 4)).await;
        let shown = shown["id"].as_str().unwrap().to_owned();
        let update = "mutation($id: ID!) { updateFile(id: $id, input: { alt: \"A\" }) { id } }";
        app.data(&t.root, update, json!({ "id": shown })).await;
        for op in ["publishFile", "unpublishFile", "publishFile"] {
            gql_file(&app, &t.root, op, &shown).await;
        }
        let delete = "mutation($id: ID!) { deleteFile(id: $id) }";
        app.data(&t.root, delete, json!({ "id": shown })).await;
        let draft = uploaded(&app, &t.root, "b.png", png(4, 4)).await;
        let draft = draft["id"].as_str().unwrap().to_owned();
        app.data(&t.root, update, json!({ "id": draft })).await;
        app.data(&t.root, delete, json!({ "id": draft })).await;

        assert_eq!(
            file_event_types(&app, &live, &shown).await,
            [
                "file.published",
                "file.unpublished",
                "file.published",
                "file.deleted"
            ]
        );
        assert!(file_event_types(&app, &live, &draft).await.is_empty());
        assert_eq!(
            file_event_types(&app, &test, &shown).await,
            [
                "file.created",
                "file.updated",
                "file.published",
                "file.unpublished",
                "file.published",
                "file.deleted"
            ]
        );
        assert_eq!(
            file_event_types(&app, &test, &draft).await,
            ["file.created", "file.updated", "file.deleted"]
        );
    }
);

// A delete racing a record write that names the file (SPEC §7: deleting a
// file a record names is CONFLICT): whichever commits first, the other
// sees it, so no record ever names a deleted file. On PostgreSQL the file
// row is locked by both (FOR SHARE by the record write, FOR UPDATE by the
// delete); SQLite has one writer.
both_dbs!(
    a_delete_racing_a_record_that_names_the_file_never_leaves_it_dangling,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        app.create_model(
            &t.root,
            json!({ "key": "post", "name": "Post", "fields": [
                { "name": "cover", "type": "FILE" } ] }),
        )
        .await;
        let create = "mutation($d: JSON!) { createRecord(modelKey: \"post\", data: $d) { id } }";
        let delete = "mutation($id: ID!) { deleteFile(id: $id) }";
        for _ in 0..15 {
            let id = uploaded(&app, &t.root, "c.png", png(4, 4)).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let (made, deleted) = tokio::join!(
                app.gql(&t.root, create, json!({ "d": { "cover": id } })),
                app.gql(&t.root, delete, json!({ "id": id })),
            );
            let made = made.code().is_none();
            let deleted = deleted.code().is_none();
            assert!(
                made != deleted,
                "exactly one wins: made {made}, deleted {deleted}"
            );
        }
    }
);
