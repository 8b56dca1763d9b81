//! The served OpenAPI document against the service: what it declares of every operation, and
//! a sweep that sends every operation the requests that fail at the door (no token, a bad
//! token, a path id that names nothing, a body that is not JSON, a body of another type) and
//! checks each answer's status and content type are the ones the document gives. The fuller
//! generated check is scripts/schemathesis.sh in CI; this one runs in the suite.
use crate::helpers::*;
use domain::Role;
use serde_json::Value;
use uuid::Uuid;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push((path.clone(), method.to_string(), op.clone()));
            }
        }
    }
    ops
}

/// `value`, or what its `$ref` points at.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("{r} does not resolve"))
        }
        None => value,
    }
}

fn security_names(op: &Value) -> Vec<Vec<String>> {
    op["security"]
        .as_array()
        .map(|reqs| {
            reqs.iter()
                .map(|r| r.as_object().unwrap().keys().cloned().collect())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_document_declares_every_error_as_a_problem_with_its_headers() {
    let app = spawn_app(Backend::Sqlite, "openapi_conventions")
        .await
        .unwrap();
    let (status, doc) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let ops = operations(&doc);
    let ids: std::collections::HashSet<String> = ops
        .iter()
        .filter_map(|(_, _, op)| op["operationId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), ops.len(), "operation ids are unique");

    // The paths routed outside /api/v1 are described too, each with its own way in.
    for (path, method, scheme) in [
        ("/healthz", "get", None),
        ("/readyz", "get", None),
        ("/metrics", "get", Some("metrics_token")),
        ("/kaspi/callback/", "get", Some("kaspi_basic")),
        ("/kaspi/callback/", "post", Some("kaspi_basic")),
        ("/telegram/webhook/", "post", Some("telegram_secret")),
        ("/whatsapp/webhook/", "post", Some("twilio_signature")),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        if let Some(scheme) = scheme {
            assert!(
                security_names(op).iter().flatten().any(|n| n == scheme),
                "{method} {path} does not name {scheme}"
            );
            assert!(doc["components"]["securitySchemes"][scheme].is_object());
        }
    }
    assert!(doc["paths"]["/metrics"]["servers"][0]["url"].is_string());

    for (path, method, op) in &ops {
        let what = format!("{method} {path}");
        let responses = op["responses"].as_object().unwrap();
        let security = security_names(op);
        let bearer = security.iter().flatten().any(|n| n == "bearer");
        if bearer {
            assert!(
                security.iter().any(|r| r == &vec!["api_key".to_string()]),
                "{what}: an API key is an alternative to a bearer token"
            );
            assert!(responses.contains_key("401"), "{what}: 401");
        }
        if path.starts_with("/api/v1/") {
            for status in ["403", "429", "500", "503"] {
                assert!(responses.contains_key(status), "{what}: {status}");
            }
        }
        if path.contains('{') {
            assert!(responses.contains_key("404"), "{what}: 404");
        }
        if path.starts_with("/api/v1/") && op.get("requestBody").is_some() {
            for status in ["400", "413", "422"] {
                assert!(responses.contains_key(status), "{what}: {status}");
            }
        }
        let idempotent = op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
        for (status, response) in responses {
            let response = resolve(&doc, response);
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{what} {status}: a description"
            );
            let headers = &response["headers"];
            assert!(
                headers["X-Correlation-Id"].is_object(),
                "{what} {status}: X-Correlation-Id"
            );
            if status.starts_with('2') && idempotent {
                assert!(
                    headers["Idempotent-Replayed"].is_object(),
                    "{what} {status}: Idempotent-Replayed"
                );
            }
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            if path == "/readyz" {
                continue; // the readiness report, not a problem
            }
            let content = response["content"].as_object().unwrap();
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                vec!["application/problem+json"],
                "{what} {status}"
            );
            assert_eq!(
                content["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{what} {status}"
            );
            if status == "429" || status == "503" {
                let retry = resolve(&doc, &headers["Retry-After"]);
                assert_eq!(retry["required"], true, "{what} {status}: Retry-After");
            }
        }
        // Links name operations that exist, and fill parameters the target has.
        for response in responses.values() {
            let response = resolve(&doc, response);
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap();
                assert!(ids.contains(target), "{what} link {name} → {target}");
            }
        }
    }
    // A resource created is linked to what uses it.
    let created = &doc["paths"]["/api/v1/listings"]["post"]["responses"]["201"]["links"];
    assert_eq!(created["GetListing"]["operationId"], "get_listing");
    assert_eq!(
        created["Book"]["requestBody"]["listing_id"],
        "$response.body#/id"
    );
    let booked = &doc["paths"]["/api/v1/bookings"]["post"]["responses"]["201"]["links"];
    assert_eq!(booked["Pay"]["operationId"], "create_payment");
    app.finish().await;
}

/// The answer's status is one the operation declares, and an error is a problem.
fn assert_declared(what: &str, op: &Value, status: u16, content_type: &str) {
    let responses = op["responses"].as_object().unwrap();
    assert!(
        responses.contains_key(&status.to_string()),
        "{what} answered {status}, which the document does not declare ({:?})",
        responses.keys().collect::<Vec<_>>()
    );
    if status >= 400 {
        assert!(
            content_type.starts_with("application/problem+json"),
            "{what} answered {status} as {content_type}"
        );
    }
}

#[tokio::test]
async fn every_operation_answers_bad_requests_as_its_document_says() {
    let app = spawn_app(Backend::Sqlite, "openapi_sweep").await.unwrap();
    let (_, doc) = app.get("/api/v1/openapi.json", None).await;
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let mut checked = 0;
    for (path, method, op) in operations(&doc) {
        if path == "/metrics" {
            continue; // served on the ops listener, checked in ops_listeners.rs
        }
        let method_ = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let with_ids = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    Uuid::now_v7().to_string()
                } else {
                    seg.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let not_ids = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "no-such-id"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let has_body = op.get("requestBody").is_some();
        let mut requests: Vec<(String, reqwest::RequestBuilder)> = vec![
            (
                "no token".into(),
                app.client.request(method_.clone(), app.url(&with_ids)),
            ),
            (
                "a bad token".into(),
                app.client
                    .request(method_.clone(), app.url(&with_ids))
                    .bearer_auth("not-a-token"),
            ),
            (
                "a revoked-looking API key".into(),
                app.client
                    .request(method_.clone(), app.url(&with_ids))
                    .header("X-Api-Key", "zgo_nothing"),
            ),
        ];
        if path.contains('{') {
            requests.push((
                "a path id that is not one".into(),
                app.client
                    .request(method_.clone(), app.url(&not_ids))
                    .bearer_auth(&admin),
            ));
        }
        if has_body {
            requests.push((
                "a body that is not JSON".into(),
                app.client
                    .request(method_.clone(), app.url(&with_ids))
                    .bearer_auth(&admin)
                    .header("content-type", "application/json")
                    .body("{\"unfinished\":"),
            ));
            requests.push((
                "a body of another type".into(),
                app.client
                    .request(method_.clone(), app.url(&with_ids))
                    .bearer_auth(&admin)
                    .header("content-type", "text/plain")
                    .body("hello"),
            ));
            requests.push((
                "an empty JSON object".into(),
                app.client
                    .request(method_.clone(), app.url(&with_ids))
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({})),
            ));
        }
        for (case, request) in requests {
            let res = request.send().await.unwrap();
            let status = res.status().as_u16();
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            assert!(
                res.headers().contains_key("x-correlation-id"),
                "{method} {path} with {case}: no X-Correlation-Id"
            );
            assert_declared(
                &format!("{method} {path} with {case}"),
                &op,
                status,
                &content_type,
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "only {checked} requests checked");
    app.finish().await;
}
