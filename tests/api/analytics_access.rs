//! Analytics at the edge: the role matrix on every analytics endpoint, the CSV answer read
//! with a standard CSV reader (columns and definitions as docs/analytics.md has them), and bad
//! parameters answered 422 naming the field.
use crate::helpers::*;
use crate::on_both_backends;
use domain::Role;
use serde_json::Value;
use uuid::Uuid;

const ENDPOINTS: [&str; 7] = [
    "occupancy",
    "revenue",
    "funnel",
    "channels",
    "stays",
    "pickup",
    "facts",
];

fn query(endpoint: &str, listing: Option<Uuid>) -> String {
    let mut q = format!("from={}&to={}", day(-1), day(20));
    match endpoint {
        "pickup" => q.push_str("&compare_to=2026-01-01T00:00:00Z"),
        "facts" => q.push_str("&metric=nights_sold"),
        _ => {}
    }
    if let Some(l) = listing {
        q.push_str(&format!("&listing_id={l}"));
    }
    q
}

/// Two hosts with a listing each, one paid booking on the first.
async fn two_hosts(app: &TestApp) -> (Uuid, Uuid, Uuid, Uuid) {
    let (host_a, host_b) = (Uuid::now_v7(), Uuid::now_v7());
    let listing_a = app.create_listing(host_a, serde_json::json!({})).await;
    let listing_b = app
        .create_listing(host_b, serde_json::json!({"city": "Astana"}))
        .await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (status, booking) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing_a, 2, 5, 1),
        )
        .await;
    assert_eq!(status, 201, "{booking}");
    pay_through_kaspi(app, &guest, booking["id"].as_str().unwrap()).await;
    crate::projections::settle(app).await;
    (host_a, listing_a, host_b, listing_b)
}

async fn role_matrix(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let (host_a, listing_a, _host_b, listing_b) = two_hosts(&app).await;
    let yesterday = day(-1);
    let mut paths: Vec<(String, Option<String>)> = ENDPOINTS
        .iter()
        .flat_map(|e| {
            [
                (
                    format!("/api/v1/analytics/{e}?{}", query(e, None)),
                    Some(format!(
                        "/api/v1/analytics/{e}?{}",
                        query(e, Some(listing_b))
                    )),
                ),
                (
                    format!("/api/v1/analytics/{e}?{}", query(e, Some(listing_a))),
                    None,
                ),
            ]
        })
        .collect();
    paths.push((format!("/api/v1/reports/daily/{yesterday}"), None));
    for (path, others) in &paths {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 401, "anonymous {path}: {body}");
        for role in [Role::Guest, Role::Auditor] {
            let (status, body) = app.get(path, Some(&app.token(role, Uuid::now_v7()))).await;
            assert_eq!(status, 403, "{role:?} {path}: {body}");
            assert_eq!(body["code"], "forbidden", "{body}");
        }
        for role in [Role::Analyst, Role::Admin] {
            let (status, body) = app.get(path, Some(&app.token(role, Uuid::now_v7()))).await;
            assert_eq!(status, 200, "{role:?} {path}: {body}");
        }
        let host = app.token(Role::Host, host_a);
        let (status, body) = app.get(path, Some(&host)).await;
        assert_eq!(status, 200, "host {path}: {body}");
        if let Some(other) = others {
            let (status, body) = app.get(other, Some(&host)).await;
            assert_eq!(status, 403, "host on another's listing {other}: {body}");
        }
    }
    // The host sees their own night sold; the other host's listing never shows.
    let host = app.token(Role::Host, host_a);
    let (_, own) = app
        .get(
            &format!(
                "/api/v1/analytics/occupancy?{}&group_by=listing",
                query("occupancy", None)
            ),
            Some(&host),
        )
        .await;
    let keys: Vec<&str> = own["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec![listing_a.to_string().as_str()], "{own}");
    assert_eq!(own["items"][0]["nights_sold"], 3, "{own}");
    app.finish().await;
}
on_both_backends!(analytics_roles_on_every_endpoint, role_matrix);

/// The `# name: text` lines of a CSV answer.
fn comment_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn csv_answers(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    two_hosts(&app).await;
    let analyst = app.token(Role::Analyst, Uuid::now_v7());
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/analytics.md"))
            .expect("docs/analytics.md");
    for (endpoint, columns) in [
        ("occupancy", "key,nights_available,nights_blocked,nights_sold,occupancy"),
        ("revenue", "key,nights_sold,nights_available,room_revenue_kzt,cleaning_fees_kzt,refunds_kzt,net_revenue_kzt,adr_kzt,revpar_kzt,trevpar_kzt"),
        ("stays", "key,stays,nights,alos,booking_window_days_avg,booking_window_buckets.0-1,booking_window_buckets.2-7,booking_window_buckets.8-30,booking_window_buckets.31-90,booking_window_buckets.91+"),
        ("facts", "booking_id,listing_id,date,nights,amount_kzt,channel,city,positions"),
    ] {
        let path = format!("/api/v1/analytics/{endpoint}?{}", query(endpoint, None));
        let (status, json) = app.get(&path, Some(&analyst)).await;
        assert_eq!(status, 200, "{json}");
        // Both ways of asking for CSV give the same text.
        let by_param = app
            .client
            .get(app.url(&format!("{path}&format=csv")))
            .bearer_auth(&analyst)
            .send()
            .await
            .unwrap();
        assert_eq!(by_param.status(), 200);
        assert!(by_param.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        let text = by_param.text().await.unwrap();
        let by_accept = app
            .client
            .get(app.url(&path))
            .bearer_auth(&analyst)
            .header("Accept", "text/csv")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let body = |t: &str| t.lines().filter(|l| !l.starts_with("# as_of")).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&text), body(&by_accept));
        // Every definition, word for word as documented.
        let comments = comment_lines(&text);
        let definitions = json["definitions"].as_object().unwrap();
        for (name, definition) in definitions {
            let line = comments.iter().find(|(k, _)| k == name).expect("definition in CSV");
            assert_eq!(&line.1, definition.as_str().unwrap());
            assert!(
                docs.contains(&format!("- [{name}] {}", definition.as_str().unwrap())),
                "docs/analytics.md lacks {name}"
            );
        }
        assert!(comments.iter().any(|(k, _)| k == "position"));
        // A standard reader, told to skip comment lines, reads the same items.
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(header.join(","), columns);
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let items = json["items"].as_array().unwrap();
        assert_eq!(records.len(), items.len());
        assert!(!items.is_empty(), "{endpoint}: {json}");
        for (record, item) in records.iter().zip(items) {
            for (column, cell) in header.iter().zip(record.iter()) {
                let mut value = item;
                for part in column.split('.') {
                    value = &value[part];
                }
                let expected = match value {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a.iter().map(Value::to_string).collect::<Vec<_>>().join(" "),
                    other => other.to_string(),
                };
                assert_eq!(cell, expected, "{endpoint} {column}");
            }
        }
    }
    app.finish().await;
}
on_both_backends!(analytics_csv_reads_with_a_standard_reader, csv_answers);

async fn bad_parameters(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let analyst = app.token(Role::Analyst, Uuid::now_v7());
    let range = format!("from={}&to={}", day(0), day(10));
    for (path, field) in [
        ("/api/v1/analytics/occupancy".to_string(), "from"),
        (format!("/api/v1/analytics/occupancy?from={}", day(0)), "to"),
        (
            format!("/api/v1/analytics/occupancy?from={}&to={}", day(5), day(5)),
            "to",
        ),
        (
            format!(
                "/api/v1/analytics/occupancy?from={}&to={}",
                day(0),
                day(2000)
            ),
            "to",
        ),
        (
            format!("/api/v1/analytics/occupancy?{range}&group_by=year"),
            "group_by",
        ),
        (
            format!("/api/v1/analytics/revenue?{range}&as_of=yesterday"),
            "as_of",
        ),
        (
            format!("/api/v1/analytics/revenue?{range}&format=xml"),
            "format",
        ),
        (
            format!("/api/v1/analytics/revenue?{range}&listing_id=42"),
            "listing_id",
        ),
        (
            format!("/api/v1/analytics/funnel?{range}&min_position=-1"),
            "min_position",
        ),
        (
            format!("/api/v1/analytics/channels?{range}&group_by=day"),
            "group_by",
        ),
        (format!("/api/v1/analytics/pickup?{range}"), "compare_to"),
        (format!("/api/v1/analytics/facts?{range}"), "metric"),
        (
            format!("/api/v1/analytics/facts?{range}&metric=guests"),
            "metric",
        ),
        ("/api/v1/reports/daily/someday".to_string(), "date"),
    ] {
        let (status, body) = app.get(&path, Some(&analyst)).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["code"], "validation_failed", "{body}");
        assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
    }
    // Every analytics route is in the served OpenAPI document.
    let (_, doc) = app.get("/api/v1/openapi.json", None).await;
    for path in ENDPOINTS
        .iter()
        .map(|e| format!("/api/v1/analytics/{e}"))
        .chain(["/api/v1/reports/daily/{date}".to_string()])
    {
        let op = &doc["paths"][&path]["get"];
        assert!(op.is_object(), "{path} is not documented");
        for status in ["401", "403", "422"] {
            assert!(
                op["responses"][status]["content"]["application/problem+json"].is_object(),
                "{path} {status}"
            );
        }
    }
    app.finish().await;
}
on_both_backends!(
    analytics_bad_parameters_are_422_naming_the_field,
    bad_parameters
);
