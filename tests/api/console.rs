//! The web console and the GraphiQL page (SPEC §12): embedded assets under a
//! content hash, cached for a year, 404 for anything else; the security
//! headers on every answer; no CDN anywhere. The pages themselves are tested
//! in a real browser by `tests/console/run.sh`. Served without a database
//! read, so SQLite covers both backends.

use quire::http::console::{assets_hash, CONTENT_SECURITY_POLICY};
use reqwest::header::HeaderMap;

use crate::support::{Backend, TestApp};

const HTML: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

/// Hosts of the CDNs GraphiQL pages commonly load from.
const CDNS: &[&str] = &[
    "unpkg.com",
    "cdn.jsdelivr.net",
    "cdnjs.cloudflare.com",
    "esm.sh",
    "cdn.skypack.dev",
    "fonts.googleapis.com",
];

fn assert_protected(headers: &HeaderMap, what: &str) {
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"))
        .to_str()
        .unwrap();
    assert_eq!(csp, CONTENT_SECURITY_POLICY, "{what}");
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "connect-src 'self';",
        "img-src 'self' data: blob:;",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{what}: {directive} missing");
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
}

/// Whether an element carries an event-handler attribute (` onclick=`…).
fn has_inline_handler(html: &str) -> bool {
    html.split(" on").skip(1).any(|rest| {
        let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

/// The asset paths a page names (`src="…"`, `href="…"`).
fn referenced(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            if let Some(end) = part.find('"') {
                out.push(part[..end].to_string());
            }
        }
    }
    out
}

async fn get(app: &TestApp, path: &str, accept: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn console_and_graphiql_pages_carry_the_security_headers_and_load_only_own_assets() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (path, accept) in [("/console", HTML), ("/console/", HTML), ("/graphql", HTML)] {
        let page = get(&app, path, accept).await;
        assert_eq!(page.status(), 200, "{path}");
        assert_protected(page.headers(), path);
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(page.headers()["cache-control"], "no-cache", "{path}");
        let html = page.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !has_inline_handler(&html),
            "{path}: inline script"
        );
        let assets = referenced(&html);
        let scripts = assets.iter().filter(|a| a.ends_with(".js")).count();
        assert!(scripts >= 1, "{path}: {assets:?}");
        for asset in &assets {
            assert!(
                asset.starts_with('/') && !asset.starts_with("//"),
                "{path} loads {asset} from elsewhere"
            );
            if !asset.starts_with("/console/assets/") {
                continue; // links to /console and /graphql
            }
            assert!(
                asset.starts_with(&format!("/console/assets/{}/", assets_hash())),
                "{asset}"
            );
            let file = get(&app, asset, "*/*").await;
            assert_eq!(file.status(), 200, "{asset}");
            assert_protected(file.headers(), asset);
            assert_eq!(
                file.headers()["cache-control"],
                "public, max-age=31536000, immutable",
                "{asset}"
            );
            let ctype = file.headers()["content-type"].to_str().unwrap().to_string();
            if asset.ends_with(".js") {
                assert!(ctype.starts_with("text/javascript"), "{asset}: {ctype}");
            } else if asset.ends_with(".css") {
                assert!(ctype.starts_with("text/css"), "{asset}: {ctype}");
            }
            let body = file.text().await.unwrap();
            for cdn in CDNS {
                assert!(!body.contains(cdn), "{asset} names {cdn}");
            }
        }
        for cdn in CDNS {
            assert!(!html.contains(cdn), "{path} names {cdn}");
        }
    }
}

#[tokio::test]
async fn the_console_modules_are_served_beside_the_entry_and_graphiql_is_vendored() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let base = format!("/console/assets/{}", assets_hash());
    // app.js imports its siblings relatively: every one is under the same hash.
    let entry = get(&app, &format!("{base}/app.js"), "*/*")
        .await
        .text()
        .await
        .unwrap();
    let imports: Vec<&str> = entry
        .lines()
        .filter_map(|l| l.split(" from \"./").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(imports.len() >= 5, "{imports:?}");
    for module in imports {
        let r = get(&app, &format!("{base}/{module}"), "*/*").await;
        assert_eq!(r.status(), 200, "{module}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("innerHTML"), "{module} uses innerHTML");
        assert!(!text.contains("insertAdjacentHTML"), "{module}");
        assert!(
            !text.contains("localStorage"),
            "{module}: the key is sessionStorage only"
        );
    }
    for file in [
        "vendor/graphiql.min.js",
        "vendor/react.production.min.js",
        "vendor/react-dom.production.min.js",
        "vendor/LICENSE-graphiql",
        "vendor/LICENSE-react",
        "vendor/VERSIONS.md",
    ] {
        let r = get(&app, &format!("{base}/{file}"), "*/*").await;
        assert_eq!(r.status(), 200, "{file}");
    }
    let versions = get(&app, &format!("{base}/vendor/VERSIONS.md"), "*/*")
        .await
        .text()
        .await
        .unwrap();
    assert!(versions.contains("3.9.0") && versions.contains("18.3.1"));
}

#[tokio::test]
async fn unknown_assets_and_stale_hashes_are_404_with_the_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let hash = assets_hash();
    let stale = "0123456789abcdef";
    assert_ne!(hash, stale);
    // (path, whether it reaches the console's asset route)
    for (path, routed) in [
        (format!("/console/assets/{hash}/nope.js"), true),
        (format!("/console/assets/{hash}/%2e%2e/console.rs"), false),
        (format!("/console/assets/{hash}/vendor"), true),
        (format!("/console/assets/{hash}/index.html"), true),
        (format!("/console/assets/{stale}/app.js"), true),
        (format!("/console/assets/{hash}/../console.rs"), false),
        ("/console/assets/app.js".to_string(), false),
        ("/console/nope".to_string(), false),
    ] {
        let r = get(&app, &path, "*/*").await;
        assert_eq!(r.status(), 404, "{path}");
        if routed {
            assert_protected(r.headers(), &path);
        }
        let cache = r
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(!cache.contains("immutable"), "{path}: {cache}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{path}"
        );
    }
    // A POST to the console is refused, not served.
    let post = app.client.post(app.url("/console")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn graphql_api_answers_keep_their_own_headers() {
    // The console's CSP is for its pages: API answers (read by browser code
    // on any origin) do not carry it.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let r = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(r#"{"query":"{ __typename }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("content-security-policy").is_none());
}
