//! The bots over real HTTP: Telegram updates posted to `/telegram/webhook/` and Twilio
//! messages to `/whatsapp/webhook/`; the production clients answer through a fake Bot API and
//! a fake Twilio on loopback; payments go through the Kaspi sandbox.
use crate::helpers::*;
use domain::Role;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;
use zhilego_testkit::guests::{numbered, TelegramGuest, WhatsAppGuest};
use zhilego_testkit::sign::telegram_login_hash;
use zhilego_testkit::telegram::{buttons_of, text_of};
use zhilego_testkit::{Call, FakeTelegram, FakeTwilio};

pub(crate) const BOT_TOKEN: &str = "123456:TEST-token";
const SECRET: &str = "webhook-secret-42";
const TWILIO_SID: &str = "AC0000000000000000000000000000test";
pub(crate) const TWILIO_TOKEN: &str = "twilio-auth-token";
const DOOR_CODE: &str = "5521#";

pub(crate) fn bot_env<'a>(
    telegram: &'a FakeTelegram,
    twilio: &'a FakeTwilio,
) -> [(&'static str, &'a str); 7] {
    [
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("TELEGRAM_API_URL", &telegram.url),
        ("TELEGRAM_WEBHOOK_SECRET", SECRET),
        ("TWILIO_ACCOUNT_SID", TWILIO_SID),
        ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        ("TWILIO_API_URL", &twilio.url),
        ("TWILIO_WHATSAPP_FROM", "whatsapp:+14155238886"),
    ]
}

/// The id the app gives a new guest of a channel (keyed with the app's master key).
pub(crate) fn bot_guest(app: &TestApp, channel: domain::Channel, external: &str) -> Uuid {
    let master = commands::MasterKey::from_hex(&app.storage.encryption_key).unwrap();
    api::bots::GuestKeys::new(&master).guest_id(channel, external)
}

pub(crate) async fn bot_app(
    test: &str,
    telegram: &FakeTelegram,
    twilio: &FakeTwilio,
) -> Option<TestApp> {
    spawn_app_with(Backend::Sqlite, test, &bot_env(telegram, twilio)).await
}

/// A listing in Almaty with a photo and a door code; its title.
pub(crate) async fn listing(app: &TestApp, title: &str, price: i64) -> Uuid {
    let host = Uuid::now_v7();
    let id = app
        .create_listing(
            host,
            json!({"title": title, "nightly_price_kzt": price,
                   "photos": ["https://cdn.zhilego.kz/p/flat.jpg"]}),
        )
        .await;
    let (status, _) = app
        .put(
            &format!("/api/v1/listings/{id}/access"),
            &app.token(Role::Host, host),
            &json!({"instructions": "Подъезд 2, этаж 5", "door_code": DOOR_CODE}),
        )
        .await;
    assert_eq!(status, 200);
    id
}

/// A Telegram guest: a chat and a user, sending updates to the app's webhook.
pub(crate) struct TgGuest<'a> {
    app: &'a TestApp,
    fake: &'a FakeTelegram,
    user: i64,
    wire: TelegramGuest,
    next_update: i64,
    taps: usize,
    reply_times: Vec<Duration>,
}

impl<'a> TgGuest<'a> {
    pub(crate) fn new(app: &'a TestApp, fake: &'a FakeTelegram, user: i64) -> Self {
        TgGuest {
            app,
            fake,
            user,
            wire: TelegramGuest::new(user),
            next_update: user * 1000,
            taps: 0,
            reply_times: vec![],
        }
    }

    async fn post(&mut self, update: Value, secret: &str) -> u16 {
        let outbox = &self.fake.outbox;
        let sent = self
            .wire
            .post(&self.app.client, &self.app.address, secret, outbox, &update);
        let exchange = sent.await.unwrap();
        self.reply_times.push(exchange.elapsed);
        exchange.status.as_u16()
    }

    fn update_id(&mut self) -> i64 {
        self.next_update += 1;
        self.next_update
    }

    fn text_update(&mut self, text: &str) -> Value {
        let id = self.update_id();
        self.wire.text_update(id, text)
    }

    fn tap_update(&mut self, data: &str) -> Value {
        let id = self.update_id();
        self.wire.tap_update(id, data)
    }

    /// Sends a message; gives the replies it caused.
    pub(crate) async fn say(&mut self, text: &str) -> Vec<Call> {
        let before = self.fake.sent_to(self.user).len();
        let update = self.text_update(text);
        assert_eq!(self.post(update, SECRET).await, 200);
        self.taps += 1;
        self.fake.sent_to(self.user).split_off(before)
    }

    /// Presses a button; gives the replies it caused.
    async fn tap(&mut self, data: &str) -> Vec<Call> {
        let before = self.fake.sent_to(self.user).len();
        let update = self.tap_update(data);
        assert_eq!(self.post(update, SECRET).await, 200);
        self.taps += 1;
        self.fake.sent_to(self.user).split_off(before)
    }

    /// Picks the earliest day on or after `min` from a calendar, turning months as needed.
    async fn pick_day(&mut self, mut replies: Vec<Call>, min: chrono::NaiveDate) -> Vec<Call> {
        for _ in 0..3 {
            let days: Vec<(chrono::NaiveDate, String)> = all_buttons(&replies)
                .into_iter()
                .filter_map(|(_, d)| Some((d.strip_prefix("day:")?.parse().ok()?, d)))
                .filter(|(day, _)| *day >= min)
                .collect();
            if let Some((_, data)) = days.into_iter().min() {
                return self.tap(&data).await;
            }
            let next = all_buttons(&replies)
                .into_iter()
                .filter(|(_, d)| d.starts_with("month:"))
                .map(|(_, d)| d)
                .max()
                .expect("a calendar with a next-month button");
            replies = self.tap(&next).await;
        }
        panic!("no day on or after {min} in the calendar");
    }
}

fn all_buttons(replies: &[Call]) -> Vec<(String, String)> {
    replies.iter().flat_map(buttons_of).collect()
}

fn button(replies: &[Call], prefix: &str) -> String {
    all_buttons(replies)
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no button {prefix}… in {:#?}",
                replies
                    .iter()
                    .map(|c| (text_of(c), buttons_of(c)))
                    .collect::<Vec<_>>()
            )
        })
}

fn is_cyrillic(s: &str) -> bool {
    s.chars().any(|c| ('\u{0400}'..='\u{04FF}').contains(&c))
}

/// From `/start` to the confirmation of `listing` for tomorrow, one night, two guests; gives
/// the confirmation's replies.
async fn up_to_confirmation(guest: &mut TgGuest<'_>, listing: Uuid) -> Vec<Call> {
    let start = guest.say("/start").await;
    let city = guest.tap(&button(&start, "city:Almaty")).await;
    let tomorrow = domain::local_date(chrono::Utc::now()) + chrono::Duration::days(1);
    let out = guest.pick_day(city, tomorrow).await;
    let guests = guest
        .pick_day(out, tomorrow + chrono::Duration::days(1))
        .await;
    let results = guest.tap(&button(&guests, "guests:2")).await;
    assert!(
        results
            .iter()
            .any(|c| c.method == "sendMediaGroup" || c.method == "sendPhoto"),
        "results come with photos"
    );
    guest.tap(&format!("pick:{listing}")).await
}

/// From `/start` to the Kaspi button for `listing`; gives the payment URL.
pub(crate) async fn telegram_journey(guest: &mut TgGuest<'_>, listing: Uuid) -> String {
    let confirm = up_to_confirmation(guest, listing).await;
    let link = guest.tap(&button(&confirm, "book")).await;
    all_buttons(&link)
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d.contains("/kaspi-sandbox/pay/"))
        .expect("a Kaspi pay button")
}

fn p99(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t[((t.len() as f64 * 0.99).ceil() as usize)
        .saturating_sub(1)
        .min(t.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_guest_books_pays_and_gets_the_door_code() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    // The stay starts tomorrow; door codes go out from 48 hours ahead here, so its access
    // notice is inside the window whatever the time of day.
    let env = [
        bot_env(&telegram, &twilio).as_slice(),
        &[("ZHILEGO_ACCESS_OPENS_BEFORE_HOURS", "48")],
    ]
    .concat();
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "a_telegram_guest_books_pays_and_gets_the_door_code",
        &env,
    )
    .await
    else {
        return;
    };
    let flat = listing(&app, "Квартира у парка", 20_000).await;
    let mut guest = TgGuest::new(&app, &telegram, 7001);
    let url = telegram_journey(&mut guest, flat).await;
    let welcome_ru = text_of(&telegram.sent_to(7001)[0]);
    assert!(is_cyrillic(&welcome_ru), "Russian by default: {welcome_ru}");

    // Pays on the Kaspi page: one tap.
    let paid = app.client.post(&url).send().await.unwrap();
    assert_eq!(paid.status(), 200);
    let taps = guest.taps + 1;
    println!("telegram: {taps} taps from /start to a paid booking");
    assert!(taps <= 10, "{taps} taps");

    // The notifier says it is confirmed.
    telegram.wait_for(7001, "Квартира у парка").await;
    let guest_id = bot_guest(&app, domain::Channel::Telegram, "7001");
    let token = app.token(Role::Guest, guest_id);
    let mut booking = None;
    for _ in 0..100 {
        let (_, list) = app.get("/api/v1/bookings", Some(&token)).await;
        let item = &list["items"][0];
        if let Some(id) = item["id"].as_str().or_else(|| item["booking_id"].as_str()) {
            booking = Some(id.parse::<Uuid>().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let booking = booking.expect("the guest's booking is listed");
    for _ in 0..100 {
        let (_, b) = app
            .get(&format!("/api/v1/bookings/{booking}"), Some(&token))
            .await;
        if b["status"] == "confirmed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // On the check-in day the stay checks in, and the door code comes.
    let check_in = domain::local_date(chrono::Utc::now()) + chrono::Duration::days(1);
    assert!(app
        .state
        .commands
        .advance_stay(booking, check_in)
        .await
        .unwrap());
    // The stay's own code, derived from the host's.
    telegram
        .wait_for(7001, &commands::stay_door_code(DOOR_CODE, booking))
        .await;
    // After the stay the bot asks for a rating; a tap records it.
    let check_out = check_in + chrono::Duration::days(1);
    assert!(app
        .state
        .commands
        .advance_stay(booking, check_out)
        .await
        .unwrap());
    let mut ask = None;
    for _ in 0..200 {
        ask = telegram
            .sent_to(7001)
            .into_iter()
            .find(|c| buttons_of(c).iter().any(|(_, d)| d.starts_with("rate:")));
        if ask.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ask = ask.expect("a review request");
    guest.tap(&format!("rate:{booking}:5")).await;
    assert!(buttons_of(&ask)
        .iter()
        .any(|(_, d)| d == &format!("rate:{booking}:5")));
    let (_, reviewed) = app
        .get(&format!("/api/v1/bookings/{booking}"), Some(&token))
        .await;
    assert_eq!(reviewed["status"], "completed");
    let (status, again) = app
        .post(
            &format!("/api/v1/bookings/{booking}/review"),
            &token,
            &json!({"rating": 3}),
        )
        .await;
    assert_eq!(status, 409, "rated once, in the bot: {again}");
    let reply_p99 = p99(&guest.reply_times);
    println!(
        "telegram: reply p99 {reply_p99:?} over {} updates",
        guest.reply_times.len()
    );

    // The same in English after /lang.
    let mut en = TgGuest::new(&app, &telegram, 7002);
    let langs = en.say("/lang").await;
    en.tap(&button(&langs, "lang:en")).await;
    let flat2 = listing(&app, "Flat by the river", 18_000).await;
    let url = telegram_journey(&mut en, flat2).await;
    let start_en = telegram
        .sent_to(7002)
        .into_iter()
        .map(|c| text_of(&c))
        .find(|t| !t.is_empty() && !is_cyrillic(t))
        .expect("English replies");
    assert_ne!(start_en, welcome_ru);
    assert!(app
        .client
        .post(&url)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    telegram.wait_for(7002, "Flat by the river").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_refuses_a_wrong_secret_and_answers_a_repeated_update_once() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = bot_app(
        "telegram_refuses_a_wrong_secret_and_answers_a_repeated_update_once",
        &telegram,
        &twilio,
    )
    .await
    else {
        return;
    };
    let mut guest = TgGuest::new(&app, &telegram, 7101);
    let update = guest.text_update("/start");
    assert_eq!(guest.post(update.clone(), "wrong").await, 401);
    let res = app
        .client
        .post(app.url("/telegram/webhook/"))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(telegram.sent_to(7101).is_empty(), "nothing processed");
    assert_eq!(guest.post(update.clone(), SECRET).await, 200);
    let once = telegram.sent_to(7101).len();
    assert!(once >= 1);
    assert_eq!(guest.post(update, SECRET).await, 200);
    assert_eq!(
        telegram.sent_to(7101).len(),
        once,
        "a repeated update_id is handled once"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_survives_a_restart() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let test = "a_conversation_survives_a_restart";
    let Some(app) = bot_app(test, &telegram, &twilio).await else {
        return;
    };
    let flat = listing(&app, "Квартира у вокзала", 15_000).await;
    let mut guest = TgGuest::new(&app, &telegram, 7201);
    let start = guest.say("/start").await;
    let calendar = guest.tap(&button(&start, "city:Almaty")).await;
    let next_update = guest.next_update;
    let storage = app.stop().await;

    let app = start_with(storage, &telegram, &twilio).await;
    let mut guest = TgGuest::new(&app, &telegram, 7201);
    guest.next_update = next_update;
    let tomorrow = domain::local_date(chrono::Utc::now()) + chrono::Duration::days(1);
    let out = guest.pick_day(calendar, tomorrow).await;
    let guests = guest
        .pick_day(out, tomorrow + chrono::Duration::days(1))
        .await;
    let results = guest.tap(&button(&guests, "guests:2")).await;
    assert!(all_buttons(&results)
        .iter()
        .any(|(_, d)| d == &format!("pick:{flat}")));
    app.finish().await;
}

async fn start_with(storage: Storage, telegram: &FakeTelegram, twilio: &FakeTwilio) -> TestApp {
    start(storage, &bot_env(telegram, twilio)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_guests_race_for_the_same_nights_and_the_loser_gets_alternatives() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = bot_app(
        "two_guests_race_for_the_same_nights_and_the_loser_gets_alternatives",
        &telegram,
        &twilio,
    )
    .await
    else {
        return;
    };
    let wanted = listing(&app, "Пентхаус", 30_000).await;
    let other = listing(&app, "Студия", 12_000).await;
    let mut a = TgGuest::new(&app, &telegram, 7301);
    let mut b = TgGuest::new(&app, &telegram, 7302);
    // Both reach the confirmation of the same apartment and nights.
    let mut confirms = Vec::new();
    for g in [&mut a, &mut b] {
        confirms.push(up_to_confirmation(g, wanted).await);
    }
    let won = a.tap(&button(&confirms[0], "book")).await;
    assert!(all_buttons(&won)
        .iter()
        .any(|(_, d)| d.contains("/kaspi-sandbox/pay/")));
    let lost = b.tap(&button(&confirms[1], "book")).await;
    assert!(
        !all_buttons(&lost)
            .iter()
            .any(|(_, d)| d.contains("/kaspi-sandbox/pay/")),
        "the loser gets no payment link"
    );
    assert!(
        all_buttons(&lost)
            .iter()
            .any(|(_, d)| d == &format!("pick:{other}")),
        "the loser is offered the other apartment: {:#?}",
        lost.iter().map(text_of).collect::<Vec<_>>()
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_message_is_delivered_later_once() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = bot_app(
        "a_throttled_message_is_delivered_later_once",
        &telegram,
        &twilio,
    )
    .await
    else {
        return;
    };
    let mut guest = TgGuest::new(&app, &telegram, 7401);
    telegram.throttle(2);
    let started = Instant::now();
    let replies = guest.say("/help").await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited retry_after twice"
    );
    assert_eq!(telegram.throttled(), 2);
    assert_eq!(replies.len(), 1, "delivered once: {replies:#?}");

    // The same over WhatsApp: Twilio answers 429 with Retry-After.
    let mut wa = WaGuest::new(&app, &twilio, "+77015550001");
    twilio.throttle(1);
    let started = Instant::now();
    let replies = wa.say("help").await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited Retry-After: 1"
    );
    assert_eq!(twilio.throttled(), 1);
    assert_eq!(replies.len(), 1);
    app.finish().await;
}

/// A WhatsApp guest posting Twilio-signed webhooks.
pub(crate) struct WaGuest<'a> {
    app: &'a TestApp,
    fake: &'a FakeTwilio,
    pub(crate) number: String,
    wire: WhatsAppGuest,
    sent: usize,
    reply_times: Vec<Duration>,
}

impl<'a> WaGuest<'a> {
    pub(crate) fn new(app: &'a TestApp, fake: &'a FakeTwilio, number: &str) -> Self {
        let wire = WhatsAppGuest::new(number, TWILIO_SID);
        WaGuest {
            app,
            fake,
            number: wire.number.clone(),
            wire,
            sent: 0,
            reply_times: vec![],
        }
    }

    fn params(&self, body: &str, sid: &str) -> Vec<(String, String)> {
        self.wire.params(body, sid)
    }

    async fn post(&mut self, params: &[(String, String)], token: &str) -> u16 {
        let url = self.app.url("/whatsapp/webhook/");
        // Signed as Twilio signs, independently of the service's verifier.
        let sent = self
            .wire
            .post(&self.app.client, &url, token, &self.fake.outbox, params);
        let exchange = sent.await.unwrap();
        self.reply_times.push(exchange.elapsed);
        exchange.status.as_u16()
    }

    /// Sends a message; gives the replies it caused.
    pub(crate) async fn say(&mut self, body: &str) -> Vec<String> {
        let before = self.fake.sent_to(&self.number).len();
        let sid = format!("SM{}", Uuid::now_v7().simple());
        let params = self.params(body, &sid);
        assert_eq!(self.post(&params, TWILIO_TOKEN).await, 200);
        self.sent += 1;
        self.fake.sent_to(&self.number).split_off(before)
    }
}

/// The menu number of the option whose line contains `needle` (`"3. Almaty"` → 3).
fn option(replies: &[String], needle: &str) -> String {
    replies
        .iter()
        .flat_map(|r| numbered(r))
        .find(|(_, rest)| rest.contains(needle))
        .map(|(n, _)| n)
        .unwrap_or_else(|| panic!("no option {needle:?} in {replies:#?}"))
        .to_string()
}

/// A WhatsApp guest's way from "start" to the payment link of the stay tomorrow for two in
/// the apartment titled `title`; gives the link.
pub(crate) async fn whatsapp_up_to_the_payment_link(
    guest: &mut WaGuest<'_>,
    title: &str,
) -> String {
    let start = guest.say("start").await;
    let city = guest.say(&option(&start, "Алматы")).await;
    assert!(!city.is_empty());
    let tomorrow = domain::local_date(chrono::Utc::now()) + chrono::Duration::days(1);
    let day_after = tomorrow + chrono::Duration::days(1);
    guest.say(&tomorrow.format("%d.%m.%Y").to_string()).await;
    let guests = guest.say(&day_after.format("%d.%m.%Y").to_string()).await;
    let results = guest.say(&option(&guests, "2")).await;
    // The card of our apartment, then its "book" option is the next number after the card.
    let card = results
        .iter()
        .position(|r| r.contains(title))
        .expect("our apartment in the results");
    let pick = results[card]
        .lines()
        .filter_map(|l| {
            l.split_once(". ")
                .and_then(|(n, _)| n.trim().parse::<usize>().ok())
        })
        .next()
        .expect("a numbered option on the card");
    let confirm = guest.say(&pick.to_string()).await;
    let book = confirm
        .iter()
        .flat_map(|r| r.lines())
        .filter_map(|l| {
            l.split_once(". ")
                .and_then(|(n, _)| n.trim().parse::<usize>().ok())
        })
        .next()
        .expect("a numbered book option");
    let link = guest.say(&book.to_string()).await;
    link.iter()
        .flat_map(|r| r.split_whitespace())
        .find(|w| w.contains("/kaspi-sandbox/pay/"))
        .expect("a payment link")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_guest_books_and_pays_with_signed_webhooks() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = bot_app(
        "a_whatsapp_guest_books_and_pays_with_signed_webhooks",
        &telegram,
        &twilio,
    )
    .await
    else {
        return;
    };
    let title = "Квартира на Абая";
    listing(&app, title, 22_000).await;
    let mut guest = WaGuest::new(&app, &twilio, "+77015550002");

    // A forged signature: 403 and nothing processed.
    let forged = guest.params("start", "SMforged");
    assert_eq!(guest.post(&forged, "not-the-token").await, 403);
    assert!(twilio.sent_to(&guest.number).is_empty());

    let url = whatsapp_up_to_the_payment_link(&mut guest, title).await;
    let messages = guest.sent + 1;
    println!("whatsapp: {messages} messages from start to a paid booking");
    assert!(messages <= 12, "{messages} messages");
    assert!(app
        .client
        .post(&url)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    twilio.wait_for(&guest.number, title).await;
    println!(
        "whatsapp: reply p99 {:?} over {} messages",
        p99(&guest.reply_times),
        guest.reply_times.len()
    );

    // A repeated MessageSid is answered once.
    let params = guest.params("help", "SMrepeat");
    let before = twilio.settled(&guest.number).await;
    assert_eq!(guest.post(&params, TWILIO_TOKEN).await, 200);
    let once = twilio.settled(&guest.number).await;
    assert_eq!(once, before + 1);
    assert_eq!(guest.post(&params, TWILIO_TOKEN).await, 200);
    assert_eq!(twilio.settled(&guest.number).await, once);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_login_widget_gives_a_guest_token() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = bot_app(
        "telegram_login_widget_gives_a_guest_token",
        &telegram,
        &twilio,
    )
    .await
    else {
        return;
    };
    let auth_date = chrono::Utc::now().timestamp().to_string();
    let fields = [
        ("auth_date", auth_date.as_str()),
        ("first_name", "Айгерим"),
        ("id", "555001"),
        ("username", "aigerim"),
    ];
    let hash = telegram_login_hash(BOT_TOKEN, &fields);
    let mut body: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    body.insert("id".into(), json!(555001));
    body.insert("auth_date".into(), json!(auth_date.parse::<i64>().unwrap()));
    body.insert("hash".into(), json!(hash));
    let res = app
        .client
        .post(app.url("/api/v1/auth/telegram"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, token) = status_and_json(res).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    let (status, me) = app
        .get(
            "/api/v1/users/me",
            Some(token["access_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "guest");
    assert_eq!(
        me["id"],
        bot_guest(&app, domain::Channel::Telegram, "555001").to_string()
    );
    body.insert("id".into(), json!(1));
    let res = app
        .client
        .post(app.url("/api/v1/auth/telegram"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a forged id");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_whatsapp_window_only_the_template_goes_out() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "outside_the_whatsapp_window_only_the_template_goes_out",
        &[
            ("TWILIO_ACCOUNT_SID", TWILIO_SID),
            ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
            ("TWILIO_API_URL", &twilio.url),
            ("TWILIO_WHATSAPP_FROM", "whatsapp:+14155238886"),
            ("TWILIO_TEMPLATE_SID", "HXtemplate0001"),
        ],
    )
    .await
    else {
        return;
    };
    let _ = telegram;
    let title = "Квартира у моря";
    let flat = listing(&app, title, 25_000).await;
    let mut guest = WaGuest::new(&app, &twilio, "+77015550003");
    guest.say("start").await;
    // The guest last wrote two days ago; then their booking (made on the web) is cancelled.
    let user = bot_guest(&app, domain::Channel::Whatsapp, "+77015550003");
    store::with_pool!(&app.db, pool => {
        sqlx::query("UPDATE bot_chats SET last_inbound_at = $1")
            .bind(chrono::Utc::now() - chrono::Duration::days(2))
            .execute(pool)
            .await
            .unwrap();
    });
    let token = app.token(Role::Guest, user);
    let (status, b) = app
        .post("/api/v1/bookings", &token, &booking_body(flat, 5, 7, 1))
        .await;
    assert_eq!(status, 201, "{b}");
    let (status, _) = app
        .post(
            &format!("/api/v1/bookings/{}/cancel", b["id"].as_str().unwrap()),
            &token,
            &json!({"reason": "plans"}),
        )
        .await;
    assert_eq!(status, 200);
    // Held (with its link) and cancelled: both only as the template, with the text as its
    // variable.
    let sent = twilio.wait_for(&guest.number, title).await;
    assert!(sent.starts_with('{'), "a template's variables: {sent}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bot_settings_the_service_runs_and_the_bots_are_off() {
    let Some(app) = spawn_app(
        Backend::Sqlite,
        "without_bot_settings_the_service_runs_and_the_bots_are_off",
    )
    .await
    else {
        return;
    };
    let res = app
        .client
        .post(app.url("/telegram/webhook/"))
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .json(&json!({"update_id": 1}))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "bot_not_configured");
    let res = app
        .client
        .post(app.url("/whatsapp/webhook/"))
        .form(&[("Body", "start")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .client
        .post(app.url("/api/v1/auth/telegram"))
        .json(&json!({"id": 1, "auth_date": 1, "hash": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_answers_updates_without_a_webhook() {
    let telegram = FakeTelegram::start().await;
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "long_polling_answers_updates_without_a_webhook",
        &[
            ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
            ("TELEGRAM_API_URL", &telegram.url),
            ("TELEGRAM_MODE", "polling"),
        ],
    )
    .await
    else {
        return;
    };
    let twilio = FakeTwilio::start().await;
    let _ = &twilio;
    let mut guest = TgGuest::new(&app, &telegram, 7501);
    let update = guest.text_update("/start");
    telegram.push_update(update.clone());
    let welcome = telegram.wait_for(7501, "").await;
    assert!(buttons_of(&welcome).iter().any(|(_, d)| d == "city:Almaty"));
    // The same update polled again (Telegram repeats until the offset moves) is answered once.
    telegram.push_update(update);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(telegram.sent_to(7501).len(), 1);
    // The webhook is not open in polling mode.
    let help = guest.text_update("/help");
    assert_eq!(guest.post(help, SECRET).await, 401);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_payment_link_is_retried_on_the_same_booking() {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let Some(app) = bot_app(
        "a_failed_payment_link_is_retried_on_the_same_booking",
        &telegram,
        &twilio,
    )
    .await
    else {
        return;
    };
    let flat = listing(&app, "Квартира в центре", 21_000).await;
    let mut guest = TgGuest::new(&app, &telegram, 7601);
    let confirm = up_to_confirmation(&mut guest, flat).await;
    let sandbox = app.state.kaspi.sandbox.as_ref().unwrap();
    sandbox.set_faults(kaspi_sandbox::Faults {
        fail_requests: 100,
        ..kaspi_sandbox::Faults::default()
    });
    let failed = guest.tap(&button(&confirm, "book")).await;
    assert!(!all_buttons(&failed)
        .iter()
        .any(|(_, d)| d.contains("/pay/")));
    sandbox.set_faults(kaspi_sandbox::Faults::default());
    let again = guest.tap(&button(&failed, "book")).await;
    assert!(
        all_buttons(&again).iter().any(|(_, d)| d.contains("/pay/")),
        "the held booking gets its link: {:#?}",
        again.iter().map(text_of).collect::<Vec<_>>()
    );
    // Still one booking.
    let token = app.token(
        Role::Guest,
        bot_guest(&app, domain::Channel::Telegram, "7601"),
    );
    let mut count = 0;
    for _ in 0..50 {
        let (_, list) = app.get("/api/v1/bookings", Some(&token)).await;
        count = list["items"].as_array().map_or(0, |a| a.len());
        if count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count, 1);
    app.finish().await;
}
