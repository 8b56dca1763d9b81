//! Guests are not unmasked: after a WhatsApp journey no table of either database (nor any
//! file of the SQLite data dir) holds the guest's number in plaintext, and none after erasure;
//! the guest's id is keyed (not the old UUIDv5 of the number) and stable across messages; chats
//! stored in plaintext before are rewritten at start and keep their guest.
use crate::chatbots::{bot_env, bot_guest, listing, whatsapp_up_to_the_payment_link, WaGuest};
use crate::helpers::*;
use crate::on_both_backends;
use domain::{Channel, Role};
use uuid::Uuid;
use zhilego_testkit::{FakeTelegram, FakeTwilio};

/// The guest's number, and the digits searched for (found whatever the prefix).
const NUMBER: &str = "+77019384756";
const DIGITS: &str = "7019384756";
/// A plaintext that is stored as is (a listing's title): the scan must find it, so it is known
/// to look where the data is.
const CONTROL: &str = "CONTROL-PLAINTEXT-9A41";

/// Asserts the control was found (the scan looked where the data is) and the number was not.
fn assert_no_number(found: &[(&'static str, String)], when: &str) {
    assert!(
        found.iter().any(|(n, _)| *n == CONTROL),
        "{when}: the scan did not even find the listing's title: {found:?}"
    );
    let leaks: Vec<&str> = found
        .iter()
        .filter(|(n, _)| *n == DIGITS)
        .map(|(_, place)| place.as_str())
        .collect();
    assert!(
        leaks.is_empty(),
        "{when}: the number in plaintext:\n{}",
        leaks.join("\n")
    );
}

/// The guest ids stored with the chats of a channel.
async fn chat_guests(app: &TestApp) -> Vec<Uuid> {
    store::with_pool!(&app.db, pool => {
        sqlx::query_scalar("SELECT user_id FROM bot_chats WHERE channel = 'whatsapp'")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

/// Waits until the availability search finds the listing for the journey's stay (tomorrow,
/// two guests): the search is a read model, and the journey starts with it.
async fn searchable(app: &TestApp, listing: Uuid) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, found) = app
            .get(
                &format!(
                    "/api/v1/availability?city=Almaty&check_in={}&check_out={}&guests=2",
                    day(1),
                    day(2)
                ),
                None,
            )
            .await;
        if found.to_string().contains(&listing.to_string()) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not found: {found}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn no_plaintext_number_after_a_journey_or_after_erasure(backend: Backend, name: &str) {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = spawn_app_with(backend, name, &bot_env(&telegram, &twilio)).await else {
        return;
    };
    let title = format!("Квартира {CONTROL}");
    let flat = listing(&app, &title, 22_000).await;
    searchable(&app, flat).await;
    let mut guest = WaGuest::new(&app, &twilio, NUMBER);
    let url = whatsapp_up_to_the_payment_link(&mut guest, &title).await;
    let paid = app.client.post(&url).send().await.unwrap();
    assert!(paid.status().is_success(), "{}", paid.status());
    twilio.wait_for(&guest.number, &title).await;

    // The id is keyed, not the UUIDv5 of the number, and the same for every message.
    let expected = bot_guest(&app, Channel::Whatsapp, NUMBER);
    assert_ne!(
        expected,
        api::bots::identity::legacy_guest_id(Channel::Whatsapp, NUMBER)
    );
    assert_eq!(chat_guests(&app).await, vec![expected]);
    guest.say("help").await;
    assert_eq!(
        chat_guests(&app).await,
        vec![expected],
        "stable across messages"
    );
    // The booking is the guest's (the list is a read model: it may trail a moment).
    let token = app.token(Role::Guest, expected);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, list) = app.get("/api/v1/bookings", Some(&token)).await;
        assert_eq!(status, 200, "{list}");
        if list["items"].as_array().map(Vec::len) == Some(1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let running =
        crate::scan::plaintext_findings(&app.storage, &[DIGITS, CONTROL], "running").await;
    let storage = app.stop().await;
    let stopped = crate::scan::plaintext_findings(&storage, &[DIGITS, CONTROL], "stopped").await;
    assert_no_number(&running, "running");
    assert_no_number(&stopped, "stopped");

    // Erasure deletes the guest's chats (their sealed address with them).
    let out = tokio::process::Command::new(crate::processes::ZHILEGO)
        .args(["user", "erase", "--id", &expected.to_string()])
        .envs(storage.env())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_number(
        &crate::scan::plaintext_findings(&storage, &[DIGITS, CONTROL], "erased").await,
        "erased",
    );
    let app = start(storage, &bot_env(&telegram, &twilio)).await;
    assert!(chat_guests(&app).await.is_empty(), "the chat is deleted");
    app.finish().await;
}
on_both_backends!(
    no_plaintext_number_after_a_journey_or_after_erasure,
    no_plaintext_number_after_a_journey_or_after_erasure
);

async fn a_chat_stored_in_plaintext_is_rewritten_and_keeps_its_guest(backend: Backend, name: &str) {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = spawn_app_with(backend, name, &bot_env(&telegram, &twilio)).await else {
        return;
    };
    let title = format!("Квартира {CONTROL}");
    let flat = listing(&app, &title, 22_000).await;
    // A guest of before keyed ids: the UUIDv5 of the number, a booking, and the chat row as
    // the old version wrote it (the address in `chat_id`, no sealed `address`).
    let old_id = api::bots::identity::legacy_guest_id(Channel::Whatsapp, NUMBER);
    let token = app.token(Role::Guest, old_id);
    let (status, b) = app
        .post("/api/v1/bookings", &token, &booking_body(flat, 5, 7, 1))
        .await;
    assert_eq!(status, 201, "{b}");
    let chat = format!("whatsapp:{NUMBER}");
    store::with_pool!(&app.db, pool => {
        sqlx::query(
            "INSERT INTO bot_chats (channel, chat_id, user_id, dialogue) VALUES ('whatsapp', $1, $2, $3)",
        )
        .bind(&chat)
        .bind(old_id)
        .bind(sqlx::types::Json(bots::Dialogue::default()))
        .execute(pool)
        .await
        .unwrap();
    });
    let storage = app.stop().await;

    // At start the row is rewritten: no plaintext left, the guest still the old one.
    let app = start(storage, &bot_env(&telegram, &twilio)).await;
    let mut guest = WaGuest::new(&app, &twilio, NUMBER);
    // The list is the bookings read model, which catches up after the restart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let replies = guest.say("/mybookings").await;
        if replies.iter().any(|r| r.contains(&title)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old guest's booking: {replies:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(chat_guests(&app).await, vec![old_id]);
    let storage = app.stop().await;
    assert_no_number(
        &crate::scan::plaintext_findings(&storage, &[DIGITS, CONTROL], "rewritten").await,
        "rewritten",
    );
    storage.remove().await;
}
on_both_backends!(
    a_chat_stored_in_plaintext_is_rewritten_and_keeps_its_guest,
    a_chat_stored_in_plaintext_is_rewritten_and_keeps_its_guest
);
