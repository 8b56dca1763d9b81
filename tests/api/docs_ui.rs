//! `/api/v1/docs` works with no network: the page and everything it loads come from the
//! `zhilego` binary itself, and the page may load nothing from elsewhere.
use crate::helpers::{Backend, Storage};
use crate::processes::spawn_serve;

/// The values of `attr="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Quoted strings in a script that are paths on this server (`'/api/…'`).
fn script_paths(script: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for quote in ['\'', '"', '`'] {
        for part in script.split(quote).skip(1).step_by(2) {
            if part.starts_with('/') && !part.starts_with("//") && !part.contains(' ') {
                paths.push(part.to_string());
            }
        }
    }
    paths
}

fn assert_no_external_url(what: &str, text: &str) {
    for scheme in ["http://", "https://", "//cdn", "src=\"//", "href=\"//"] {
        assert!(
            !text.contains(scheme),
            "{what} references another origin ({scheme}): {text}"
        );
    }
}

#[tokio::test]
async fn the_docs_page_and_every_asset_it_references_come_from_the_binary() {
    let storage = Storage::new(Backend::Sqlite, "docs_ui").await.unwrap();
    let server = spawn_serve(&storage, &[("ZHILEGO_METRICS_ADDR", "off")]).await;
    let client = reqwest::Client::new();
    let fetch = |path: String| {
        let client = client.clone();
        let url = format!("{}{}", server.address, path);
        async move {
            let res = client.get(&url).send().await.expect("fetch");
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.text().await.expect("body");
            (status, headers, body)
        }
    };

    let (status, headers, page) = fetch("/api/v1/docs".into()).await;
    assert_eq!(status, 200, "{page}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // The browser is told to load nothing from anywhere else, and to call only this origin.
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "font-src 'self' data:",
        "img-src 'self' data:",
    ] {
        assert!(policy.contains(directive), "{directive} not in {policy}");
    }
    assert_no_external_url("the page", &page);

    let mut assets: Vec<String> = attribute_values(&page, "src")
        .into_iter()
        .chain(attribute_values(&page, "href"))
        // Inline (`data:`) values are not fetched.
        .filter(|v| !v.starts_with("data:"))
        .map(str::to_string)
        .collect();
    let scripts = attribute_values(&page, "src");
    assert!(
        scripts.contains(&"/api/v1/docs/scalar.js") && scripts.contains(&"/api/v1/docs/init.js"),
        "the page loads the bundle and its start script: {page}"
    );

    let mut seen = std::collections::HashSet::new();
    let mut fetched = 0;
    while let Some(path) = assets.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        assert!(
            path.starts_with('/') && !path.starts_with("//"),
            "{path} is not a path on this server"
        );
        let (status, headers, body) = fetch(path.clone()).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.is_empty(), "{path} is empty");
        fetched += 1;
        let content_type = headers["content-type"].to_str().unwrap().to_string();
        if content_type.starts_with("text/javascript") {
            // A script that names no further file: no source map, no chunks fetched later.
            assert!(
                !body.contains("sourceMappingURL="),
                "{path} names a source map"
            );
            assert!(
                !body.contains("import(\"./") && !body.contains("import(`./"),
                "{path} loads chunks"
            );
            if path.ends_with("/init.js") {
                assert_no_external_url(&path, &body);
                // The bundle's own network features are off: web fonts, telemetry, the agent, MCP.
                for setting in [
                    "withDefaultFonts: false",
                    "telemetry: false",
                    "agent: { disabled: true }",
                    "mcp: { disabled: true }",
                ] {
                    assert!(body.contains(setting), "{setting} missing from {path}");
                }
                assets.extend(script_paths(&body));
            } else {
                assert!(
                    body.contains("@scalar/api-reference 1.72.1"),
                    "{path} is the vendored bundle"
                );
            }
        } else if path.ends_with("/openapi.json") {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        } else {
            panic!("{path}: unexpected asset {content_type}");
        }
    }
    // The bundle, its start script and the document the script points it at.
    assert_eq!(fetched, 3, "{seen:?}");
    assert!(seen.contains("/api/v1/openapi.json"), "{seen:?}");
}
