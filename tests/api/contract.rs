//! The contract of shared/API.md for listings, blocks, bookings and users, run against both
//! event stores with the same assertions.
use crate::helpers::*;
use crate::on_both_backends;
use domain::Role;
use serde_json::json;
use uuid::Uuid;

async fn listings_are_created_read_and_owned(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let other_host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;

    // Public read.
    let (status, body) = app.get(&format!("/api/v1/listings/{listing}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["title"], "Светлая квартира у Арбата");
    assert_eq!(body["status"], "active");
    assert_eq!(body["host_id"], host.to_string());
    assert!(body.get("blocks").is_none(), "blocks are private: {body}");

    // The host edits; another host may not.
    let (status, body) = app
        .patch(
            &format!("/api/v1/listings/{listing}"),
            &app.token(Role::Host, host),
            &json!({"nightly_price_kzt": 25000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nightly_price_kzt"], 25000);
    assert!(body["position"].as_i64().unwrap() > 0);
    let (status, body) = app
        .patch(
            &format!("/api/v1/listings/{listing}"),
            &app.token(Role::Host, other_host),
            &json!({"title": "Mine now"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");

    // Drafts are visible to their host only.
    let draft = app.create_listing(host, json!({"status": "draft"})).await;
    let (status, _) = app.get(&format!("/api/v1/listings/{draft}"), None).await;
    assert_eq!(status, 404);
    let (status, body) = app
        .get(
            &format!("/api/v1/listings/{draft}"),
            Some(&app.token(Role::Host, host)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "draft");
    // …and cannot be booked.
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (status, body) = app
        .post("/api/v1/bookings", &guest, &booking_body(draft, 10, 12, 2))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "listing_not_bookable");

    // Guests do not create listings.
    let (status, body) = app.post("/api/v1/listings", &guest, &listing_body()).await;
    assert_eq!(status, 403, "{body}");
    app.finish().await;
}
on_both_backends!(
    listings_are_created_read_and_owned,
    listings_are_created_read_and_owned
);

async fn a_guest_books_and_everyone_sees_what_they_may(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let guest = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let guest_token = app.token(Role::Guest, guest);

    let (status, booking) = app
        .post(
            "/api/v1/bookings",
            &guest_token,
            &booking_body(listing, 20, 23, 2),
        )
        .await;
    assert_eq!(status, 201, "{booking}");
    assert_eq!(booking["status"], "held");
    assert_eq!(booking["total_kzt"], 3 * 20000 + 5000);
    assert_eq!(booking["nights"], 3);
    assert_eq!(booking["guest_id"], guest.to_string());
    assert_eq!(booking["host_id"], host.to_string());
    assert!(booking["hold_expires_at"].is_string());
    let position = booking["position"].as_i64().unwrap();
    assert!(position > 0);
    let id = booking["id"].as_str().unwrap().to_string();

    let (status, body) = app
        .get(&format!("/api/v1/bookings/{id}"), Some(&guest_token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id);
    let (status, _) = app
        .get(
            &format!("/api/v1/bookings/{id}"),
            Some(&app.token(Role::Host, host)),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .get(
            &format!("/api/v1/bookings/{id}"),
            Some(&app.token(Role::Admin, Uuid::now_v7())),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .get(
            &format!("/api/v1/bookings/{id}"),
            Some(&app.token(Role::Guest, Uuid::now_v7())),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = app
        .get(
            &format!("/api/v1/bookings/{id}"),
            Some(&app.token(Role::Host, Uuid::now_v7())),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .get(
            &format!("/api/v1/bookings/{}", Uuid::now_v7()),
            Some(&guest_token),
        )
        .await;
    assert_eq!(status, 404);

    // Lists, read-your-writes through min_position.
    let (status, page) = app
        .get(
            &format!("/api/v1/bookings?min_position={position}"),
            Some(&guest_token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], id);
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
    let (_, page) = app
        .get(
            &format!("/api/v1/bookings?min_position={position}"),
            Some(&app.token(Role::Host, host)),
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = app
        .get(
            &format!("/api/v1/bookings?min_position={position}"),
            Some(&app.token(Role::Guest, Uuid::now_v7())),
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    let (status, _) = app
        .get(
            "/api/v1/bookings",
            Some(&app.token(Role::Analyst, Uuid::now_v7())),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .get("/api/v1/bookings?limit=0", Some(&guest_token))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "limit");
    app.finish().await;
}
on_both_backends!(
    a_guest_books_and_everyone_sees_what_they_may,
    a_guest_books_and_everyone_sees_what_they_may
);

async fn lists_page_with_a_cursor(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    // Five stays by five guests (one guest holds at most three unpaid), paged on their
    // host's list.
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let viewer = app.token(Role::Host, host);
    let mut last = 0;
    for i in 0..5 {
        let (status, b) = app
            .post(
                "/api/v1/bookings",
                &app.token(Role::Guest, Uuid::now_v7()),
                &booking_body(listing, 10 + 2 * i, 11 + 2 * i, 1),
            )
            .await;
        assert_eq!(status, 201, "{b}");
        last = b["position"].as_i64().unwrap();
    }
    let (_, first) = app
        .get(
            &format!("/api/v1/bookings?limit=3&min_position={last}"),
            Some(&viewer),
        )
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, second) = app
        .get(
            &format!("/api/v1/bookings?limit=3&cursor={cursor}"),
            Some(&viewer),
        )
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert_eq!(second["next_cursor"], serde_json::Value::Null);
    let mut ids: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "pages do not overlap");
    app.finish().await;
}
on_both_backends!(lists_page_with_a_cursor, lists_page_with_a_cursor);

async fn overlapping_stays_conflict_and_adjacent_ones_do_not(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let a = app.token(Role::Guest, Uuid::now_v7());
    let b = app.token(Role::Guest, Uuid::now_v7());
    let (status, _) = app
        .post("/api/v1/bookings", &a, &booking_body(listing, 10, 13, 2))
        .await;
    assert_eq!(status, 201);
    for (from, to) in [(10, 13), (12, 14), (8, 11), (9, 15), (11, 12)] {
        let (status, body) = app
            .post("/api/v1/bookings", &b, &booking_body(listing, from, to, 2))
            .await;
        assert_eq!(status, 409, "{from}..{to}: {body}");
        assert_eq!(body["code"], "dates_unavailable");
        assert_eq!(body["status"], 409);
        assert!(
            body["type"].is_string() && body["title"].is_string() && body["detail"].is_string()
        );
    }
    // Check-out day of one is the check-in day of the next, both ways.
    let (status, body) = app
        .post("/api/v1/bookings", &b, &booking_body(listing, 13, 15, 2))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .post("/api/v1/bookings", &b, &booking_body(listing, 7, 10, 2))
        .await;
    assert_eq!(status, 201, "{body}");
    app.finish().await;
}
on_both_backends!(
    overlapping_stays_conflict_and_adjacent_ones_do_not,
    overlapping_stays_conflict_and_adjacent_ones_do_not
);

async fn blocks_close_nights_and_reopen_them(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let host_token = app.token(Role::Host, host);
    let guest = app.token(Role::Guest, Uuid::now_v7());

    let (status, block) = app
        .post(
            &format!("/api/v1/listings/{listing}/blocks"),
            &host_token,
            &json!({"from": day(30), "to": day(33), "reason": "repairs"}),
        )
        .await;
    assert_eq!(status, 201, "{block}");
    assert!(block["position"].as_i64().unwrap() > 0);
    let block_id = block["id"].as_str().unwrap().to_string();
    let (_, listing_view) = app
        .get(&format!("/api/v1/listings/{listing}"), Some(&host_token))
        .await;
    assert_eq!(listing_view["blocks"][0]["id"], block_id);
    assert_eq!(listing_view["blocks"][0]["reason"], "repairs");

    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 32, 35, 1),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "dates_unavailable");

    // Another host cannot block or unblock here.
    let stranger = app.token(Role::Host, Uuid::now_v7());
    let (status, _) = app
        .post(
            &format!("/api/v1/listings/{listing}/blocks"),
            &stranger,
            &json!({"from": day(40), "to": day(41)}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .delete(
            &format!("/api/v1/listings/{listing}/blocks/{block_id}"),
            &stranger,
        )
        .await;
    assert_eq!(status, 403);

    // A block over a booked night is refused.
    let (status, _) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 50, 52, 1),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = app
        .post(
            &format!("/api/v1/listings/{listing}/blocks"),
            &host_token,
            &json!({"from": day(51), "to": day(53)}),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = app
        .delete(
            &format!("/api/v1/listings/{listing}/blocks/{block_id}"),
            &host_token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 32, 35, 1),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = app
        .delete(
            &format!("/api/v1/listings/{listing}/blocks/{block_id}"),
            &host_token,
        )
        .await;
    assert_eq!(status, 404);
    app.finish().await;
}
on_both_backends!(
    blocks_close_nights_and_reopen_them,
    blocks_close_nights_and_reopen_them
);

async fn cancelling_frees_the_nights(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let other = app.token(Role::Guest, Uuid::now_v7());
    let (_, booking) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 15, 18, 2),
        )
        .await;
    let id = booking["id"].as_str().unwrap().to_string();

    let (status, _) = app
        .post(
            &format!("/api/v1/bookings/{id}/cancel"),
            &other,
            &json!({"reason": "mine"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .post(
            &format!("/api/v1/bookings/{id}/cancel"),
            &guest,
            &json!({"reason": "plans changed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["refund_kzt"], 0, "nothing was paid for a held booking");
    assert_eq!(body["cancel_reason"], "plans changed");

    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &other,
            &booking_body(listing, 15, 18, 2),
        )
        .await;
    assert_eq!(status, 201, "the nights are free again: {body}");
    let (status, body) = app
        .post(&format!("/api/v1/bookings/{id}/cancel"), &guest, &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "invalid_state");

    // The host may cancel a guest's booking; an empty body is fine.
    let second = body_id(
        &app.post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 40, 41, 1),
        )
        .await
        .1,
    );
    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{second}/cancel")))
        .bearer_auth(app.token(Role::Host, host))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    app.finish().await;
}
on_both_backends!(cancelling_frees_the_nights, cancelling_frees_the_nights);

fn body_id(v: &serde_json::Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

/// Every kind of bad input: a 4xx problem naming the problem, never a 5xx, nothing written.
async fn bad_input_is_refused_and_writes_nothing(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app
        .create_listing(host, json!({"max_guests": 3, "min_nights": 2}))
        .await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let host_token = app.token(Role::Host, host);
    let before = app.event_count().await;

    let raw = |path: &str, token: Option<String>, body: &'static str| {
        let mut req = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    };
    // Malformed JSON.
    let (status, body) = status_and_json(
        raw("/api/v1/bookings", Some(guest.clone()), "{\"listing_id\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed_json")),
        "{body}"
    );
    assert_problem(&body);
    // Wrong types.
    let wrong =
        json!({"listing_id": listing, "check_in": day(10), "check_out": day(12), "guests": "two"});
    let (status, body) = app.post("/api/v1/bookings", &guest, &wrong).await;
    assert_validation(status, &body, "guests");
    let wrong =
        json!({"listing_id": "not-a-uuid", "check_in": day(10), "check_out": day(12), "guests": 2});
    let (status, body) = app.post("/api/v1/bookings", &guest, &wrong).await;
    assert_validation(status, &body, "listing_id");
    let wrong =
        json!({"listing_id": listing, "check_in": "10.01.2030", "check_out": day(12), "guests": 2});
    let (status, body) = app.post("/api/v1/bookings", &guest, &wrong).await;
    assert_validation(status, &body, "check_in");
    let missing = json!({"listing_id": listing, "check_in": day(10), "guests": 2});
    let (status, body) = app.post("/api/v1/bookings", &guest, &missing).await;
    assert_validation(status, &body, "check_out");
    // Unknown listing.
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(Uuid::now_v7(), 10, 12, 2),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // Date rules.
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 12, 12, 2),
        )
        .await;
    assert_validation(status, &body, "check_out");
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 12, 10, 2),
        )
        .await;
    assert_validation(status, &body, "check_out");
    let (status, body) = app
        .post("/api/v1/bookings", &guest, &booking_body(listing, -3, 1, 2))
        .await;
    assert_validation(status, &body, "check_in");
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 10, 12, 4),
        )
        .await;
    assert_validation(status, &body, "guests");
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 10, 11, 2),
        )
        .await;
    assert_validation(status, &body, "check_out");
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 800, 802, 2),
        )
        .await;
    assert_validation(status, &body, "check_in");
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 10, 12, 0),
        )
        .await;
    assert_validation(status, &body, "guests");
    // Listing rules.
    let mut negative = listing_body();
    negative["nightly_price_kzt"] = json!(-100);
    let (status, body) = app.post("/api/v1/listings", &host_token, &negative).await;
    assert_validation(status, &body, "nightly_price_kzt");
    let mut negative = listing_body();
    negative["cleaning_fee_kzt"] = json!(-1);
    let (status, body) = app.post("/api/v1/listings", &host_token, &negative).await;
    assert_validation(status, &body, "cleaning_fee_kzt");
    let mut bad = listing_body();
    bad["rooms"] = json!(-1);
    let (status, body) = app.post("/api/v1/listings", &host_token, &bad).await;
    assert_validation(status, &body, "rooms");
    let mut bad = listing_body();
    bad["title"] = json!("  ");
    let (status, body) = app.post("/api/v1/listings", &host_token, &bad).await;
    assert_validation(status, &body, "title");
    let mut bad = listing_body();
    bad["location"] = json!({"lat": 123.0, "lon": 76.0});
    let (status, body) = app.post("/api/v1/listings", &host_token, &bad).await;
    assert_validation(status, &body, "location.lat");
    let mut bad = listing_body();
    bad["cancellation_policy"] = json!("whenever");
    let (status, body) = app.post("/api/v1/listings", &host_token, &bad).await;
    assert_validation(status, &body, "cancellation_policy");
    let (status, body) = app
        .patch(
            &format!("/api/v1/listings/{listing}"),
            &host_token,
            &json!({"max_guests": 0}),
        )
        .await;
    assert_validation(status, &body, "max_guests");
    let (status, body) = app
        .patch(
            &format!("/api/v1/listings/{listing}"),
            &host_token,
            &json!({"status": "gone"}),
        )
        .await;
    assert_validation(status, &body, "status");
    let (status, body) = app
        .post(
            &format!("/api/v1/listings/{listing}/blocks"),
            &host_token,
            &json!({"from": day(5), "to": day(4)}),
        )
        .await;
    assert_validation(status, &body, "to");
    // Not JSON at all.
    let res = app
        .client
        .post(app.url("/api/v1/bookings"))
        .bearer_auth(&guest)
        .body("listing=1")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 415, "{body}");
    assert_problem(&body);
    // Authentication and roles.
    let (status, body) =
        status_and_json(raw("/api/v1/bookings", None, "{}").send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, body) = status_and_json(
        raw("/api/v1/bookings", Some("garbage.token.here".into()), "{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let forged = api::auth::JwtKeys::new(b"someone else's secret").mint(
        Uuid::now_v7(),
        Role::Admin,
        chrono::Duration::hours(1),
    );
    let (status, _) = app.post("/api/v1/listings", &forged, &listing_body()).await;
    assert_eq!(status, 401);
    let expired = app
        .storage
        .keys()
        .mint(Uuid::now_v7(), Role::Guest, chrono::Duration::hours(-2));
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &expired,
            &booking_body(listing, 10, 12, 2),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_expired")),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &host_token,
            &booking_body(listing, 10, 12, 2),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let other_host = app.token(Role::Host, Uuid::now_v7());
    let (status, _) = app
        .patch(
            &format!("/api/v1/listings/{listing}"),
            &other_host,
            &json!({"title": "x"}),
        )
        .await;
    assert_eq!(status, 403);
    // Bad ids in the path.
    let (status, body) = app.get("/api/v1/bookings/not-a-uuid", Some(&guest)).await;
    assert_eq!(status, 404, "{body}");
    assert_problem(&body);

    assert_eq!(
        app.event_count().await,
        before,
        "bad input must not write anything"
    );
    app.finish().await;
}
on_both_backends!(
    bad_input_is_refused_and_writes_nothing,
    bad_input_is_refused_and_writes_nothing
);

fn assert_problem(body: &serde_json::Value) {
    for key in ["type", "title", "status", "detail", "code"] {
        assert!(!body[key].is_null(), "problem+json lacks {key}: {body}");
    }
}

fn assert_validation(status: u16, body: &serde_json::Value, field: &str) {
    assert_eq!(status, 422, "{field}: {body}");
    assert_eq!(body["code"], "validation_failed", "{body}");
    assert_problem(body);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&field),
        "expected {field} in {fields:?}: {body}"
    );
}

/// POSTs a booking as `token` with `Idempotency-Key: key`.
async fn book_with_key(
    app: &TestApp,
    token: &str,
    key: &str,
    body: serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    app.client
        .post(app.url("/api/v1/bookings"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
}

async fn idempotency_keys_replay_the_first_answer(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let send = |key: &'static str, body| book_with_key(&app, &guest, key, body);
    let body = booking_body(listing, 10, 12, 2);
    let (s1, first) = status_and_json(send("key-1", body.clone()).await.unwrap()).await;
    assert_eq!(s1, 201, "{first}");
    let events = app.event_count().await;
    let res = send("key-1", body.clone()).await.unwrap();
    assert_eq!(
        res.headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let (s2, second) = status_and_json(res).await;
    assert_eq!((s2, &second), (201, &first), "the first response, again");
    assert_eq!(app.event_count().await, events, "no second booking");

    let (s3, third) = status_and_json(
        send("key-1", booking_body(listing, 20, 22, 2))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s3, 422, "{third}");
    assert_eq!(third["code"], "idempotency_key_reused");

    // A refused request is replayed as refused, too.
    let (s4, fourth) = status_and_json(send("key-2", body.clone()).await.unwrap()).await;
    assert_eq!(s4, 409, "{fourth}");
    let (s5, fifth) = status_and_json(send("key-2", body.clone()).await.unwrap()).await;
    assert_eq!((s5, fifth), (409, fourth));

    // Keys are per caller: another guest's key-1 is a new request.
    let other = app.token(Role::Guest, Uuid::now_v7());
    let res = book_with_key(&app, &other, "key-1", booking_body(listing, 30, 32, 2))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);

    // Concurrent repeats of one key create one booking.
    let concurrent: Vec<_> = (0..8)
        .map(|_| send("key-3", booking_body(listing, 40, 42, 2)))
        .collect();
    let answers = futures::future::join_all(concurrent).await;
    let mut ids = std::collections::HashSet::new();
    for res in answers {
        let (status, body) = status_and_json(res.unwrap()).await;
        assert_eq!(status, 201, "{body}");
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one booking for one key");

    // A claim whose request died long ago (no answer recorded) is taken over.
    let owner = Uuid::now_v7();
    let stale = "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) VALUES ($1, 'key-4', 'x', ";
    match &app.db {
        store::Database::Postgres(pool) => {
            sqlx::query(&format!("{stale}now() - interval '5 minutes')"))
                .bind(owner.to_string())
                .execute(pool)
                .await
                .unwrap();
        }
        store::Database::Sqlite(pool) => {
            sqlx::query(&format!(
                "{stale}strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-5 minutes'))"
            ))
            .bind(owner.to_string())
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let res = book_with_key(
        &app,
        &app.token(Role::Guest, owner),
        "key-4",
        booking_body(listing, 50, 52, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        res.status().as_u16(),
        201,
        "the abandoned claim is taken over"
    );
    app.finish().await;
}
on_both_backends!(
    idempotency_keys_replay_the_first_answer,
    idempotency_keys_replay_the_first_answer
);

/// Answers are replayed for a day; older keys are deleted and are then new: a key from
/// yesterday books other dates (it would be 422 while kept), today's key still replays.
async fn idempotency_keys_are_forgotten_after_a_day(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let send = |key: &'static str, body| book_with_key(&app, &guest, key, body);
    let (status, old) = status_and_json(
        send("yesterday", booking_body(listing, 10, 12, 2))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{old}");
    let today_body = booking_body(listing, 14, 16, 2);
    let (status, today) = status_and_json(send("today", today_body.clone()).await.unwrap()).await;
    assert_eq!(status, 201, "{today}");
    let age = match &app.db {
        store::Database::Postgres(_) => "now() - interval '25 hours'",
        store::Database::Sqlite(_) => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-25 hours')",
    };
    let sql = format!("UPDATE idempotency_keys SET created_at = {age} WHERE key = 'yesterday'");
    store::with_pool!(&app.db, pool => {
        sqlx::query(&sql).execute(pool).await.unwrap();
    });
    let (status, reused) = status_and_json(
        send("yesterday", booking_body(listing, 20, 22, 2))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "kept until deleted: {reused}");

    let deleted = api::idempotency::forget_older_than(&app.db, api::idempotency::KEEP_ANSWERS)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "only yesterday's key");
    let res = send("yesterday", booking_body(listing, 20, 22, 2))
        .await
        .unwrap();
    assert!(res.headers().get("idempotent-replayed").is_none());
    let (status, fresh) = status_and_json(res).await;
    assert_eq!(status, 201, "a forgotten key is new: {fresh}");
    assert_ne!(fresh["id"], old["id"]);
    let res = send("today", today_body).await.unwrap();
    assert_eq!(
        res.headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let (status, again) = status_and_json(res).await;
    assert_eq!((status, &again), (201, &today));
    app.finish().await;
}
on_both_backends!(
    idempotency_keys_are_forgotten_after_a_day,
    idempotency_keys_are_forgotten_after_a_day
);

async fn unpaid_holds_expire_and_free_the_nights(backend: Backend, name: &str) {
    let Some(app) = spawn_app_with(backend, name, &[("ZHILEGO_HOLD_SECONDS", "1")]).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (status, booking) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 10, 12, 2),
        )
        .await;
    assert_eq!(status, 201);
    let id = body_id(&booking);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, b) = app
            .get(&format!("/api/v1/bookings/{id}"), Some(&guest))
            .await;
        if b["status"] == "expired" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hold never expired: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Released by the same sweep; retry briefly in case the release is the next step.
    let other = app.token(Role::Guest, Uuid::now_v7());
    let mut status = 0;
    for _ in 0..50 {
        status = app
            .post(
                "/api/v1/bookings",
                &other,
                &booking_body(listing, 10, 12, 2),
            )
            .await
            .0;
        if status == 201 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, 201, "the expired hold's nights are free");
    app.finish().await;
}
on_both_backends!(
    unpaid_holds_expire_and_free_the_nights,
    unpaid_holds_expire_and_free_the_nights
);

async fn profiles_are_read_and_changed(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let user = Uuid::now_v7();
    let token = app.token(Role::Guest, user);
    let (status, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], user.to_string());
    assert_eq!(me["role"], "guest");
    assert_eq!(me["language"], "ru");
    let (status, me) = app
        .patch(
            "/api/v1/users/me",
            &token,
            &json!({"name": "Айгерим", "phone": "8 (701) 123-45-67", "language": "kk"}),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["phone"], "+77011234567");
    let (_, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(
        (me["name"].as_str(), me["language"].as_str()),
        (Some("Айгерим"), Some("kk"))
    );
    let (status, body) = app
        .patch("/api/v1/users/me", &token, &json!({"phone": "call me"}))
        .await;
    assert_validation(status, &body, "phone");
    let (status, body) = app
        .patch("/api/v1/users/me", &token, &json!({"language": "de"}))
        .await;
    assert_validation(status, &body, "language");
    let (status, _) = app.get("/api/v1/users/me", None).await;
    assert_eq!(status, 401);

    // Personal data is sealed in the events: neither the name nor the number is in the store.
    let events = store::history::aggregate_events(&app.db, "User", &user.to_string())
        .await
        .unwrap();
    assert!(!events.is_empty());
    for e in &events {
        let text = e.payload.to_string();
        assert!(
            !text.contains("Айгерим") && !text.contains("7011234567"),
            "plaintext in {text}"
        );
    }

    // Erasing destroys the user's key: the profile reads as erased, history stays intact.
    let out = tokio::process::Command::new(crate::processes::ZHILEGO)
        .args(["user", "erase", "--id", &user.to_string()])
        .envs(app.storage.env())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["erased"], true, "{me}");
    assert!(me["name"].is_null() && me["phone"].is_null(), "{me}");
    assert_eq!(me["language"], "kk", "not personal, kept");
    let after = store::history::aggregate_events(&app.db, "User", &user.to_string())
        .await
        .unwrap();
    assert_eq!(
        after.len(),
        events.len() + 1,
        "the erasure is recorded, nothing removed"
    );
    assert!(store::history::verify(&app.db).await.unwrap().ok);
    // A new name after erasure is sealed with a new key.
    let (status, me) = app
        .patch("/api/v1/users/me", &token, &json!({"name": "Aigerim"}))
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["name"].as_str(), me["erased"].as_bool()),
        (Some("Aigerim"), Some(false))
    );
    app.finish().await;
}
on_both_backends!(profiles_are_read_and_changed, profiles_are_read_and_changed);

/// Every event written by the flows above chains; tampering is found.
async fn the_audit_finds_tampering(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (_, booking) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 10, 12, 2),
        )
        .await;
    app.post(
        &format!("/api/v1/bookings/{}/cancel", body_id(&booking)),
        &guest,
        &json!({}),
    )
    .await;
    let report = store::history::verify(&app.db).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.checked_events >= 5);
    for e in store::history::events_by_position(&app.db, 0, 100)
        .await
        .unwrap()
    {
        for key in [
            "event_id",
            "hash",
            "command_id",
            "correlation_id",
            "actor",
            "role",
            "channel",
            "request_time",
        ] {
            assert!(
                e.metadata.get(key).is_some(),
                "{} lacks {key}: {}",
                e.event_type,
                e.metadata
            );
        }
    }

    // Change one stored payload behind the store's back.
    let storage = app.stop().await;
    let db = storage.database().await;
    match &db {
        store::Database::Postgres(pool) => {
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{DatesReserved,guests}', '3') WHERE event_type = 'DatesReserved'")
                .execute(pool).await.unwrap();
        }
        store::Database::Sqlite(pool) => {
            sqlx::query("DROP TRIGGER events_no_update")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = json_set(payload, '$.DatesReserved.guests', 3) WHERE event_type = 'DatesReserved'")
                .execute(pool).await.unwrap();
        }
    }
    let report = store::history::verify(&db).await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.broken.len(), 1, "{report:?}");
    assert_eq!(report.broken[0].aggregate_type, "Listing");
    assert_eq!(report.broken[0].aggregate_id, listing.to_string());
    db.close().await;
    storage.remove().await;
}
on_both_backends!(the_audit_finds_tampering, the_audit_finds_tampering);

async fn events_are_append_only(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    app.create_listing(Uuid::now_v7(), json!({})).await;
    let result = match &app.db {
        store::Database::Postgres(pool) => sqlx::query("DELETE FROM events")
            .execute(pool)
            .await
            .map(|_| ()),
        store::Database::Sqlite(pool) => sqlx::query("DELETE FROM events")
            .execute(pool)
            .await
            .map(|_| ()),
    };
    assert!(result.is_err(), "deleting history must fail");
    assert_eq!(app.event_count().await, 1);
    app.finish().await;
}
on_both_backends!(events_are_append_only, events_are_append_only);

/// A busy calendar crosses several snapshots; after a restart (nothing cached) the listing
/// loads from its latest snapshot and still knows every taken night.
async fn busy_calendars_survive_snapshots_and_restarts(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    // A guest per night, as real traffic is (one guest holds at most three unpaid).
    let mut ids = Vec::new();
    for night in 0..120 {
        let guest = app.token(Role::Guest, Uuid::now_v7());
        let (status, body) = app
            .post(
                "/api/v1/bookings",
                &guest,
                &booking_body(listing, 5 + night, 6 + night, 1),
            )
            .await;
        assert_eq!(status, 201, "night {night}: {body}");
        ids.push((body_id(&body), guest));
    }
    // Free every tenth night again.
    for (id, guest) in ids.iter().step_by(10) {
        let (status, body) = app
            .post(&format!("/api/v1/bookings/{id}/cancel"), guest, &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let snapshots: i64 = match &app.db {
        store::Database::Postgres(pool) => {
            sqlx::query_scalar("SELECT MAX(current_snapshot) FROM snapshots")
                .fetch_one(pool)
                .await
                .unwrap()
        }
        store::Database::Sqlite(pool) => {
            sqlx::query_scalar("SELECT MAX(current_snapshot) FROM snapshots")
                .fetch_one(pool)
                .await
                .unwrap()
        }
    };
    assert!(
        snapshots >= 2,
        "132 events on one listing cross two snapshots, got {snapshots}"
    );

    let app = start(app.stop().await, &[]).await;
    for night in 0..120 {
        let (status, body) = app
            .post(
                "/api/v1/bookings",
                &app.token(Role::Guest, Uuid::now_v7()),
                &booking_body(listing, 5 + night, 6 + night, 1),
            )
            .await;
        let expected = if night % 10 == 0 { 201 } else { 409 };
        assert_eq!(status, expected, "night {night} after restart: {body}");
    }
    assert!(store::history::verify(&app.db).await.unwrap().ok);
    app.finish().await;
}
on_both_backends!(
    busy_calendars_survive_snapshots_and_restarts,
    busy_calendars_survive_snapshots_and_restarts
);
