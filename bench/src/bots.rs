//! `zhilego-bench bots`: the Telegram and WhatsApp bots of the real `zhilego` service, driven
//! by many guests at once over loopback, on the embedded SQLite store and on PostgreSQL.
//!
//! ```text
//! cd /work/main
//! cargo build --release -p zhilego -p zhilego-bench      # the service binary too!
//! B=$CARGO_TARGET_DIR/release/zhilego-bench
//! $B bots --pg-admin-url postgres://postgres@127.0.0.1:5432/postgres
//! $B bots --backend sqlite --telegram 100 --whatsapp 0 --concurrency 32
//! $B bots --together                     # both channels' guests at the same time
//! ```
//!
//! For each backend (SQLite, then PostgreSQL, unless `--backend` picks one; PostgreSQL is
//! skipped with a note when `--pg-admin-url` does not answer) the bench:
//!
//! 1. starts a fake Telegram Bot API (`POST /bot<token>/<method>`, answering
//!    `sendMessage`/`sendPhoto` with a Message, `sendMediaGroup` with one Message per photo,
//!    and every other method with `true`; an album counts as one message) and a fake
//!    Twilio Messages API (`POST /2010-04-01/Accounts/<sid>/Messages.json`, answering 201) on
//!    `127.0.0.1:0` inside this process; both record every message per chat with the instant
//!    it arrived;
//! 2. starts `zhilego serve` as a separate process with `ZHILEGO_LISTEN=127.0.0.1:0`,
//!    `ZHILEGO_RATE_LIMIT=0`, `KASPI_MODE=sandbox`, `KASPI_REQUESTS_PER_SECOND=1000` (the
//!    service's Kaspi client makes at most 10 calls a second by default, and every booking in
//!    a bot is one payment-link call), `ZHILEGO_RECONCILE_AFTER_SECONDS=3600`, the bot settings
//!    (`TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_URL`, `TELEGRAM_WEBHOOK_SECRET`, `TWILIO_*` pointing
//!    at the fakes) — for SQLite with a fresh temporary `ZHILEGO_DATA_DIR`, for PostgreSQL in
//!    production mode with a fresh `zhilego_bench_*` store (dropped afterwards with its
//!    `_read` database);
//! 3. creates `--listings` listings in Almaty, each with one photo (results are photo cards)
//!    and its own nightly price, and waits until the availability search shows them all;
//! 4. **solo**: `--solo` guests per channel, one at a time, each pausing `--solo-pause-ms`
//!    before every action so that the service's send limiter is full again: the reply time
//!    without any queueing;
//! 5. **crowd**: `--telegram` Telegram guests, then `--whatsapp` WhatsApp guests (or both at
//!    once with `--together`), `--concurrency` at a time, each pausing `--think-ms` before every
//!    action (default none: as fast as the replies come). Every guest goes from `/start` to a
//!    paid booking: Telegram: `/start`, tap Almaty, tap the check-in day (turning the calendar
//!    to the next month when the day is not in the month shown), tap the check-out day, tap
//!    `2` guests, tap the first (cheapest) offer's «book» (the results are an album of photo
//!    cards and one message with a button per card), tap «book and pay», then press
//!    the Kaspi button (`POST` of its `…/kaspi-sandbox/pay/<id>` URL, as the sandbox's page
//!    does). WhatsApp: `start`, the number of «Алматы», the check-in and check-out typed as
//!    `DD.MM.YYYY`, the number of `2`, the number on the first card, the number of «book»,
//!    then the link. Updates are posted to `/telegram/webhook/` with
//!    `X-Telegram-Bot-Api-Secret-Token`, messages to `/whatsapp/webhook/` signed with
//!    `X-Twilio-Signature`; a webhook answers only after every reply reached the (fake) API,
//!    so its HTTP latency is the bot's reply time.
//!
//!    Bookings never collide: every worker (there are `--concurrency`) books one-night stays
//!    on a night of its own (Telegram: tomorrow + worker, WhatsApp: tomorrow + concurrency +
//!    worker), so two guests in flight never want the same night, and each guest takes the
//!    cheapest flat still free that night — the first card. Should the bot's search still
//!    offer a flat just booked (a lagging read model), the booking ends in «dates taken» with
//!    alternatives: the guest takes the first alternative, and the report counts it as a
//!    detour;
//! 6. after each crowd, waits for the confirmation message (the notifier's «paid, confirmed»
//!    notice, which names the flat) in every paying guest's chat: pay → notice latency;
//! 7. reads the service's VmHWM/VmRSS from `/proc/<pid>/status` after every phase, stops it
//!    with SIGTERM, counts the WARN/ERROR lines of its log and drops the scratch databases.
//!
//! Reported per channel: reply time p50/p95/p99/max over every webhook (goal p99 < 300 ms)
//! and per step, taps (Telegram, goal ≤ 10) or messages (WhatsApp, goal ≤ 12) from `/start`
//! to the paid booking with the Pay press counted, journeys completed, confirmations,
//! detours, webhooks/s and paid journeys/s, the messages the fake APIs received (and at most
//! how many in any one second: the service sends at most 30 a second to Telegram and 100 a
//! second to Twilio), CPU by process, and the peak RSS. The report is printed and written to
//! `bench/results/bots.txt` (or `--out`).
use crate::server::{self, Memory, Server};
use crate::{cpu, kz_today, pg, publish, verdict, zhilego_binary, Common};
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use chrono::{Datelike, Duration as Days, NaiveDate};
use clap::ValueEnum;
use hmac::{Hmac, Mac};
use reqwest::Client;
use serde_json::{json, Value};
use sha1::Sha1;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

const BOT_TOKEN: &str = "123456:BENCH";
const TWILIO_SID: &str = "AC00000000000000000000000000bench";
const TWILIO_FROM: &str = "whatsapp:+14155238886";
/// Goal for the bots' reply time (p99), in ms.
const REPLY_GOAL_MS: f64 = 300.0;
/// Goal for the taps from `/start` to a paid booking in Telegram.
const TAPS_GOAL: usize = 10;
/// Goal for the messages from `start` to a paid booking in WhatsApp.
const MESSAGES_GOAL: usize = 12;
/// Goal for the service's peak resident memory, in MB (10^6 bytes), as in `booking`.
const RSS_GOAL_MB: f64 = 150.0;
/// The service's own limits on messages sent (api/src/bots/telegram/send.rs and
/// api/src/bots/whatsapp.rs).
const TELEGRAM_SENDS_PER_SECOND: usize = 30;
const TWILIO_SENDS_PER_SECOND: usize = 100;
/// How often a guest whose booking ended in «dates taken» tries an alternative.
const MAX_DETOURS: usize = 3;
/// How long the bench waits for the confirmation notices after a crowd.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(90);
/// First Telegram user id of the bench's guests.
const FIRST_TELEGRAM_USER: i64 = 710_000_000;
/// Every flat's title is this and a four-digit number.
const TITLE_PREFIX: &str = "Bench flat ";

#[derive(clap::Args, Debug)]
pub struct BotsArgs {
    /// The store to measure; both, SQLite first, when left out.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Telegram guests in the crowd, each from /start to a paid booking.
    #[arg(long, default_value_t = 50)]
    telegram: usize,
    /// WhatsApp guests in the crowd, each from `start` to a paid booking.
    #[arg(long, default_value_t = 50)]
    whatsapp: usize,
    /// Guests in flight at the same time (per channel).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Guests per channel who go one at a time before the crowd (the unqueued reply time).
    #[arg(long, default_value_t = 3)]
    solo: usize,
    /// The solo guests' pause before each tap or message, so that the service's send limiter
    /// (30/s to Telegram, in bursts of at most 30) is full again: no queueing at all.
    #[arg(long, default_value_t = 500)]
    solo_pause_ms: u64,
    /// The crowd's pause before each tap or message (a guest reading the reply); 0: as fast as
    /// the replies come.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Listings in Almaty, each with a photo and its own price.
    #[arg(long, default_value_t = 100)]
    listings: usize,
    /// Run the Telegram and the WhatsApp crowd at the same time instead of one after the other.
    #[arg(long)]
    together: bool,
    /// Extra setting for the service, e.g. `ZHILEGO_DB_MAX_CONNECTIONS=8` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::booking::parse_key_value)]
    server_env: Vec<(String, String)>,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Telegram,
    WhatsApp,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::WhatsApp => "whatsapp",
        }
    }

    /// What a guest does to move on: a tap or a message.
    fn action(self) -> &'static str {
        match self {
            Channel::Telegram => "taps",
            Channel::WhatsApp => "messages",
        }
    }

    /// The first message of a journey.
    fn start_word(self) -> &'static str {
        match self {
            Channel::Telegram => "/start",
            Channel::WhatsApp => "start",
        }
    }

    fn goal(self) -> usize {
        match self {
            Channel::Telegram => TAPS_GOAL,
            Channel::WhatsApp => MESSAGES_GOAL,
        }
    }

    fn sends_limit(self) -> usize {
        match self {
            Channel::Telegram => TELEGRAM_SENDS_PER_SECOND,
            Channel::WhatsApp => TWILIO_SENDS_PER_SECOND,
        }
    }
}

// ----- the fake outside APIs -----

/// One message the service sent to a chat.
#[derive(Clone, Debug)]
struct Sent {
    at: Instant,
    /// A photo card or album (Telegram `sendPhoto` or `sendMediaGroup`, Twilio `MediaUrl`).
    photo: bool,
    /// The text or caption (an album's captions, one after the other).
    text: String,
    /// Telegram's inline keyboard: (label, callback data or URL).
    buttons: Vec<(String, String)>,
}

#[derive(Default)]
struct Recorded {
    by_chat: HashMap<String, Vec<Sent>>,
    /// When every message arrived, in order.
    sends: Vec<Instant>,
    /// Calls other than messages, by method.
    other: BTreeMap<String, usize>,
    next_id: i64,
}

/// A fake API on loopback that records the messages sent through it.
#[derive(Clone)]
struct Fake {
    url: String,
    inner: Arc<Mutex<Recorded>>,
}

impl Fake {
    /// Serves `router` (with this fake as its state) on a free loopback port.
    async fn start(router: Router<Fake>) -> Result<(Fake, JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let fake = Fake {
            url: format!("http://{}", listener.local_addr()?),
            inner: Arc::new(Mutex::new(Recorded::default())),
        };
        let app = router.with_state(fake.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((fake, task))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a message; gives its id.
    fn record(&self, chat: String, sent: Sent) -> i64 {
        let mut r = self.lock();
        r.next_id += 1;
        r.sends.push(sent.at);
        r.by_chat.entry(chat).or_default().push(sent);
        r.next_id
    }

    fn other(&self, method: &str) {
        *self.lock().other.entry(method.to_string()).or_default() += 1;
    }

    fn count(&self, chat: &str) -> usize {
        self.lock().by_chat.get(chat).map_or(0, Vec::len)
    }

    /// The messages sent to `chat` from the `from`-th on.
    fn since(&self, chat: &str, from: usize) -> Vec<Sent> {
        self.lock()
            .by_chat
            .get(chat)
            .map(|v| v.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }

    /// The arrival instants of every message in `[from, to]`.
    fn sends_between(&self, from: Instant, to: Instant) -> Vec<Instant> {
        self.lock()
            .sends
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect()
    }

    fn other_calls(&self) -> BTreeMap<String, usize> {
        self.lock().other.clone()
    }
}

/// Fields of a `multipart/form-data` body, crudely (enough for teloxide's text fields).
fn multipart_fields(headers: &HeaderMap, body: &[u8]) -> Value {
    let boundary = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("boundary=").nth(1))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|n| n.split('"').next())
        else {
            continue;
        };
        let value = value.trim_end_matches("\r\n").to_string();
        let parsed = serde_json::from_str::<Value>(&value)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .unwrap_or(Value::String(value));
        fields.insert(name.to_string(), parsed);
    }
    Value::Object(fields)
}

/// The inline keyboard of a Bot API call's parameters: (label, callback data or URL).
fn keyboard_of(params: &Value) -> Vec<(String, String)> {
    let markup = match &params["reply_markup"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    markup["inline_keyboard"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                .map(|b| {
                    let label = b["text"].as_str().unwrap_or("").to_string();
                    let data = b["callback_data"]
                        .as_str()
                        .or_else(|| b["url"].as_str())
                        .unwrap_or("")
                        .to_string();
                    (label, data)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /bot<token>/<method>`, as teloxide calls it (`SendMessage`, `SendPhoto` and
/// `SendMediaGroup`, an album, which is recorded as one message, `AnswerCallbackQuery`, …).
async fn bot_api(
    State(fake): State<Fake>,
    UrlPath((_token, method)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let method = {
        let mut m = method;
        if let Some(first) = m.get_mut(0..1) {
            first.make_ascii_lowercase();
        }
        m
    };
    let params = if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/"))
    {
        multipart_fields(&headers, &body)
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let album = method == "sendMediaGroup";
    let photo = album || method == "sendPhoto";
    if !(photo || method == "sendMessage") {
        fake.other(&method);
        return Json(json!({"ok": true, "result": true})).into_response();
    }
    let chat = params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    // An album: its photos and their captions.
    let media = match &params["media"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let media = media.as_array().cloned().unwrap_or_default();
    let text = if album {
        media
            .iter()
            .filter_map(|m| m["caption"].as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    } else {
        params["text"]
            .as_str()
            .or_else(|| params["caption"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let id = fake.record(
        chat.to_string(),
        Sent {
            at,
            photo,
            text,
            buttons: keyboard_of(&params),
        },
    );
    let base = json!({
        "message_id": id, "date": 1_800_000_000,
        "chat": {"id": chat, "type": "private", "first_name": "Guest"},
    });
    if album {
        let messages: Vec<Value> = (0..media.len().max(1) as i64)
            .map(|k| {
                let mut m = base.clone();
                m["message_id"] = json!(id * 100 + k);
                m["media_group_id"] = json!(id.to_string());
                m["photo"] =
                    json!([{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]);
                m
            })
            .collect();
        return Json(json!({"ok": true, "result": messages})).into_response();
    }
    let mut message = base;
    if photo {
        message["photo"] =
            json!([{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]);
        message["caption"] = params["caption"].clone();
    } else {
        message["text"] = params["text"].clone();
    }
    Json(json!({"ok": true, "result": message})).into_response()
}

/// `POST /2010-04-01/Accounts/<sid>/Messages.json` (form-encoded).
async fn messages_api(
    State(fake): State<Fake>,
    UrlPath(_sid): UrlPath<String>,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let text = form
        .get("Body")
        .or_else(|| form.get("ContentVariables"))
        .cloned()
        .unwrap_or_default();
    let id = fake.record(
        form.get("To").cloned().unwrap_or_default(),
        Sent {
            at,
            photo: form.contains_key("MediaUrl"),
            text,
            buttons: Vec::new(),
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({"sid": format!("SM{id:032}"), "status": "queued"})),
    )
        .into_response()
}

/// The signature Twilio sends for a request to `url` with these form parameters: base64 of
/// HMAC-SHA1 keyed with the auth token over the URL and every parameter's name and value,
/// sorted by name.
fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

// ----- guests -----

/// What a guest did, for the per-step latencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Start,
    City,
    MonthTurn,
    CheckIn,
    CheckOut,
    Results,
    Pick,
    Book,
    Alternative,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Start => "start",
            Step::City => "city",
            Step::MonthTurn => "month turn",
            Step::CheckIn => "check-in",
            Step::CheckOut => "check-out",
            Step::Results => "guests→results",
            Step::Pick => "pick",
            Step::Book => "book→link",
            Step::Alternative => "alternative",
        }
    }
}

/// Everything the bench's guests share.
struct Ctx {
    client: Client,
    base: String,
    telegram: Fake,
    twilio: Fake,
    secret: String,
    twilio_token: String,
    update_ids: AtomicI64,
    next_guest: AtomicI64,
    /// Listing → title.
    titles: HashMap<Uuid, String>,
}

impl Ctx {
    fn fake(&self, channel: Channel) -> &Fake {
        match channel {
            Channel::Telegram => &self.telegram,
            Channel::WhatsApp => &self.twilio,
        }
    }
}

/// The guest's Pay press.
#[derive(Clone, Debug)]
struct Paid {
    title: String,
    pressed: Instant,
    /// Messages in the chat when Pay was pressed.
    seen: usize,
}

/// One guest's way from `/start` to a paid booking.
struct Journey {
    chat: String,
    /// Every webhook's latency, by step.
    steps: Vec<(Step, Duration)>,
    /// Taps or messages, the Pay press included.
    actions: usize,
    month_turns: usize,
    detours: usize,
    /// Messages the bot sent to the chat until the payment link.
    bot_messages: usize,
    outcome: Result<Paid, String>,
}

struct Guest<'a> {
    ctx: &'a Ctx,
    channel: Channel,
    /// Telegram: the user (and private chat) id; WhatsApp: `whatsapp:+7…`.
    chat: String,
    user: i64,
    steps: Vec<(Step, Duration)>,
    actions: usize,
    month_turns: usize,
    detours: usize,
    bot_messages: usize,
    /// Pause before every action but the first.
    think: Duration,
}

impl<'a> Guest<'a> {
    fn new(ctx: &'a Ctx, channel: Channel, think: Duration) -> Self {
        let n = ctx.next_guest.fetch_add(1, Ordering::Relaxed);
        let user = FIRST_TELEGRAM_USER + n;
        let chat = match channel {
            Channel::Telegram => user.to_string(),
            Channel::WhatsApp => format!("whatsapp:+7701{:07}", n),
        };
        Guest {
            ctx,
            channel,
            chat,
            user,
            steps: Vec::new(),
            actions: 0,
            month_turns: 0,
            detours: 0,
            bot_messages: 0,
            think,
        }
    }

    fn finish(self, outcome: Result<Paid, String>) -> Journey {
        Journey {
            chat: self.chat,
            steps: self.steps,
            actions: self.actions,
            month_turns: self.month_turns,
            detours: self.detours,
            bot_messages: self.bot_messages,
            outcome,
        }
    }

    fn telegram_update(&self, input: &str) -> Value {
        let id = self.ctx.update_ids.fetch_add(1, Ordering::Relaxed);
        let chat = json!({"id": self.user, "type": "private", "first_name": "Айгерим"});
        let from = json!({"id": self.user, "is_bot": false, "first_name": "Айгерим",
                          "language_code": "ru"});
        if input.starts_with('/') {
            json!({"update_id": id, "message": {
                "message_id": id, "date": 1_800_000_000, "chat": chat, "from": from,
                "text": input}})
        } else {
            json!({"update_id": id, "callback_query": {
                "id": format!("cq{id}"), "from": from, "chat_instance": "ci", "data": input,
                "message": {"message_id": 1, "date": 1_800_000_000, "chat": chat, "text": "…"}}})
        }
    }

    /// Sends `input` (a Telegram command or button data, or a WhatsApp message) to the
    /// service's webhook; gives the replies the bot sent before it answered.
    async fn send(&mut self, step: Step, input: &str) -> Result<Vec<Sent>, String> {
        self.pause().await;
        let ctx = self.ctx;
        let fake = ctx.fake(self.channel);
        let before = fake.count(&self.chat);
        let request = match self.channel {
            Channel::Telegram => ctx
                .client
                .post(format!("{}/telegram/webhook/", ctx.base))
                .header("X-Telegram-Bot-Api-Secret-Token", &ctx.secret)
                .json(&self.telegram_update(input)),
            Channel::WhatsApp => {
                let url = format!("{}/whatsapp/webhook/", ctx.base);
                let sid = format!("SM{}", Uuid::new_v4().simple());
                let params: Vec<(String, String)> = [
                    ("AccountSid", TWILIO_SID),
                    ("Body", input),
                    ("From", self.chat.as_str()),
                    ("MessageSid", sid.as_str()),
                    ("NumMedia", "0"),
                    ("To", TWILIO_FROM),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let signature = twilio_signature(&ctx.twilio_token, &url, &params);
                ctx.client
                    .post(url)
                    .header("X-Twilio-Signature", signature)
                    .form(&params)
            }
        };
        let started = Instant::now();
        let answer = request.send().await;
        let what = || format!("{} ({input:?})", step.name());
        let res = answer.map_err(|e| format!("{}: {}", what(), chain(&e)))?;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        self.steps.push((step, started.elapsed()));
        self.actions += 1;
        if status != StatusCode::OK {
            return Err(format!(
                "{}: the webhook answered {status}: {}",
                what(),
                clip(&body)
            ));
        }
        let replies = fake.since(&self.chat, before);
        self.bot_messages += replies.len();
        if replies.is_empty() {
            return Err(format!("{}: the bot sent nothing", what()));
        }
        Ok(replies)
    }

    /// The guest's pause before an action (none before the first).
    async fn pause(&self) {
        if self.actions > 0 && !self.think.is_zero() {
            tokio::time::sleep(self.think).await;
        }
    }

    /// Taps `day:<day>` in the calendar `replies` show, turning months until it is there.
    async fn pick_day(
        &mut self,
        mut replies: Vec<Sent>,
        day: NaiveDate,
        step: Step,
    ) -> Result<Vec<Sent>, String> {
        let wanted = format!("day:{}", day.format("%Y-%m-%d"));
        let target_month = day.with_day(1).unwrap_or(day);
        for _ in 0..25 {
            if buttons(&replies).any(|d| d == wanted) {
                return self.send(step, &wanted).await;
            }
            let months: Vec<NaiveDate> = buttons(&replies)
                .filter_map(|d| d.strip_prefix("month:")?.parse().ok())
                .collect();
            let turn = months
                .iter()
                .filter(|m| **m <= target_month)
                .max()
                .or_else(|| months.iter().filter(|m| **m > target_month).min())
                .ok_or_else(|| {
                    format!(
                        "{}: no {wanted} and no month button in {}",
                        step.name(),
                        describe(&replies)
                    )
                })?;
            let data = format!("month:{}", turn.format("%Y-%m-%d"));
            replies = self.send(Step::MonthTurn, &data).await?;
            self.month_turns += 1;
        }
        Err(format!(
            "{}: {wanted} never came up in the calendar",
            step.name()
        ))
    }

    /// Presses Pay: `POST` of the sandbox's payment URL.
    async fn pay(&mut self, url: &str, title: String) -> Result<Paid, String> {
        self.pause().await;
        let fake = self.ctx.fake(self.channel);
        let seen = fake.count(&self.chat);
        let pressed = Instant::now();
        let res = self
            .ctx
            .client
            .post(url)
            .send()
            .await
            .map_err(|e| format!("pay: POST {url}: {}", chain(&e)))?;
        self.actions += 1;
        let status = res.status();
        if status != StatusCode::OK {
            let body = res.text().await.unwrap_or_default();
            return Err(format!(
                "pay: POST {url} answered {status}: {}",
                clip(&body)
            ));
        }
        Ok(Paid {
            title,
            pressed,
            seen,
        })
    }

    async fn telegram(&mut self, check_in: NaiveDate) -> Result<Paid, String> {
        let start = self.send(Step::Start, "/start").await?;
        let city = button(&start, Step::Start, |d| d == "city:Almaty")?;
        let calendar = self.send(Step::City, &city).await?;
        let out = self.pick_day(calendar, check_in, Step::CheckIn).await?;
        let guests = self
            .pick_day(out, check_in + Days::days(1), Step::CheckOut)
            .await?;
        let two = button(&guests, Step::CheckOut, |d| d == "guests:2")?;
        let mut offers = self.send(Step::Results, &two).await?;
        if !offers.iter().any(|s| s.photo) {
            return Err(format!(
                "{}: no photo cards in {}",
                Step::Results.name(),
                describe(&offers)
            ));
        }
        let mut step = Step::Pick;
        for _ in 0..=MAX_DETOURS {
            let pick = button(&offers, step, |d| d.starts_with("pick:"))?;
            let listing = pick
                .strip_prefix("pick:")
                .and_then(|id| id.parse::<Uuid>().ok())
                .ok_or_else(|| format!("{}: odd button {pick}", step.name()))?;
            let title = self
                .ctx
                .titles
                .get(&listing)
                .cloned()
                .ok_or_else(|| format!("{}: {listing} is not a bench listing", step.name()))?;
            let confirm = self.send(step, &pick).await?;
            let book = button(&confirm, step, |d| d == "book")?;
            let link = self.send(Step::Book, &book).await?;
            if let Some(url) = buttons(&link).find(|d| d.contains("/kaspi-sandbox/pay/")) {
                let url = url.to_string();
                return self.pay(&url, title).await;
            }
            if !buttons(&link).any(|d| d.starts_with("pick:")) {
                return Err(format!(
                    "{}: neither a payment link nor alternatives: {}",
                    Step::Book.name(),
                    describe(&link)
                ));
            }
            self.detours += 1;
            offers = link;
            step = Step::Alternative;
        }
        Err(format!("no payment link after {MAX_DETOURS} alternatives"))
    }

    async fn whatsapp(&mut self, check_in: NaiveDate) -> Result<Paid, String> {
        let typed = |d: NaiveDate| d.format("%d.%m.%Y").to_string();
        let start = self.send(Step::Start, "start").await?;
        let city = option(&start, Step::Start, |l| l.contains("Алматы"))?;
        self.send(Step::City, &city).await?;
        self.send(Step::CheckIn, &typed(check_in)).await?;
        let guests = self
            .send(Step::CheckOut, &typed(check_in + Days::days(1)))
            .await?;
        let two = option(&guests, Step::CheckOut, |l| l.trim() == "2")?;
        let mut offers = self.send(Step::Results, &two).await?;
        let mut step = Step::Pick;
        for _ in 0..=MAX_DETOURS {
            // The first card: its title and its numbered «book» option.
            let card = offers
                .iter()
                .find(|s| title_in(&s.text).is_some() && !numbered(&s.text).is_empty())
                .ok_or_else(|| {
                    format!("{}: no offer card in {}", step.name(), describe(&offers))
                })?;
            let title = title_in(&card.text).unwrap_or_default();
            let pick = numbered(&card.text)[0].0.to_string();
            let confirm = self.send(step, &pick).await?;
            let book = option(&confirm, step, |_| true)?;
            let link = self.send(Step::Book, &book).await?;
            if let Some(url) = link
                .iter()
                .flat_map(|s| s.text.split_whitespace())
                .find(|w| w.contains("/kaspi-sandbox/pay/"))
            {
                let url = url.to_string();
                return self.pay(&url, title).await;
            }
            if !link.iter().any(|s| title_in(&s.text).is_some()) {
                return Err(format!(
                    "{}: neither a payment link nor alternatives: {}",
                    Step::Book.name(),
                    describe(&link)
                ));
            }
            self.detours += 1;
            offers = link;
            step = Step::Alternative;
        }
        Err(format!("no payment link after {MAX_DETOURS} alternatives"))
    }
}

/// Every button's data (or URL) in `replies`, in order.
fn buttons(replies: &[Sent]) -> impl Iterator<Item = &str> {
    replies
        .iter()
        .flat_map(|s| s.buttons.iter().map(|(_, d)| d.as_str()))
}

/// The first button whose data satisfies `wanted`.
fn button(replies: &[Sent], step: Step, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
    buttons(replies)
        .find(|d| wanted(d))
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no such button in {}", step.name(), describe(replies)))
}

/// The numbered options of a WhatsApp text: (`3`, `Алматы`) for a line `3. Алматы`.
fn numbered(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .filter_map(|l| {
            let (n, rest) = l.split_once(". ")?;
            let n = n.trim();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((n.parse().ok()?, rest.to_string()))
        })
        .collect()
}

/// The number of the first option whose label satisfies `wanted`.
fn option(replies: &[Sent], step: Step, wanted: impl Fn(&str) -> bool) -> Result<String, String> {
    replies
        .iter()
        .flat_map(|s| numbered(&s.text))
        .find(|(_, label)| wanted(label))
        .map(|(n, _)| n.to_string())
        .ok_or_else(|| format!("{}: no such option in {}", step.name(), describe(replies)))
}

/// The bench flat a text names (`Bench flat 0042`).
fn title_in(text: &str) -> Option<String> {
    let at = text.find(TITLE_PREFIX)?;
    let digits: String = text[at + TITLE_PREFIX.len()..].chars().take(4).collect();
    (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{TITLE_PREFIX}{digits}"))
}

/// The replies, shortly, for error messages.
fn describe(replies: &[Sent]) -> String {
    let parts: Vec<String> = replies
        .iter()
        .map(|s| {
            let b: Vec<&str> = s.buttons.iter().map(|(_, d)| d.as_str()).collect();
            format!("{:?} {:?}", clip(&s.text), b)
        })
        .collect();
    clip(&format!("[{}]", parts.join(", ")))
}

async fn journey(ctx: &Ctx, channel: Channel, check_in: NaiveDate, think: Duration) -> Journey {
    let mut guest = Guest::new(ctx, channel, think);
    let outcome = match channel {
        Channel::Telegram => guest.telegram(check_in).await,
        Channel::WhatsApp => guest.whatsapp(check_in).await,
    };
    guest.finish(outcome)
}

/// `count` journeys from `nights.len()` workers; worker `w` books the night `nights[w]`.
async fn guests(
    ctx: &Arc<Ctx>,
    channel: Channel,
    count: usize,
    nights: &[NaiveDate],
    think: Duration,
) -> Vec<Journey> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for &night in nights.iter().take(count.max(1)) {
        let (ctx, next) = (ctx.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return done;
                }
                done.push((i, journey(&ctx, channel, night, think).await));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("a bench guest panicked"));
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, j)| j).collect()
}

// ----- phases -----

/// One channel's guests in one phase, and what the bench saw of them.
struct Phase {
    channel: Channel,
    /// Guests in flight at once.
    workers: usize,
    /// Each guest's pause before an action.
    think: Duration,
    nights: (NaiveDate, NaiveDate),
    journeys: Vec<Journey>,
    /// From the first guest's `/start` to the last guest's Pay press.
    elapsed: Duration,
    /// Pay press → confirmation notice, per journey (None: not paid, or no notice).
    notices: Vec<Option<Duration>>,
    /// Messages the fake API received during the phase (notices included).
    sends: Vec<Instant>,
    other_calls: BTreeMap<String, usize>,
    cpu: Option<cpu::Split>,
}

impl Phase {
    fn paid(&self) -> usize {
        self.journeys.iter().filter(|j| j.outcome.is_ok()).count()
    }

    fn confirmed(&self) -> usize {
        self.notices.iter().filter(|n| n.is_some()).count()
    }

    fn latencies_us(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .journeys
            .iter()
            .flat_map(|j| j.steps.iter().map(|(_, d)| d.as_micros() as u64))
            .collect();
        v.sort_unstable();
        v
    }

    fn webhooks(&self) -> usize {
        self.journeys.iter().map(|j| j.steps.len()).sum()
    }

    fn all_met(&self) -> bool {
        self.paid() == self.journeys.len() && self.confirmed() == self.journeys.len()
    }
}

/// Runs a phase: `count` guests of `channel` over `nights.len()` workers, then waits for the
/// notices.
async fn phase(
    ctx: &Arc<Ctx>,
    channel: Channel,
    count: usize,
    nights: Vec<NaiveDate>,
    think: Duration,
) -> Phase {
    let fake = ctx.fake(channel).clone();
    let other_before = fake.other_calls();
    let started = Instant::now();
    let journeys = guests(ctx, channel, count, &nights, think).await;
    let elapsed = started.elapsed();
    let notices = await_notices(&fake, &journeys).await;
    let sends = fake.sends_between(started, Instant::now());
    let mut other_calls = fake.other_calls();
    for (k, n) in other_calls.iter_mut() {
        *n -= other_before.get(k).copied().unwrap_or(0);
    }
    other_calls.retain(|_, n| *n > 0);
    Phase {
        channel,
        workers: nights.len().min(count.max(1)),
        think,
        nights: (
            nights.first().copied().unwrap_or_default(),
            nights.last().copied().unwrap_or_default(),
        ),
        journeys,
        elapsed,
        notices,
        sends,
        other_calls,
        cpu: None,
    }
}

/// Waits until every paying guest's chat has the message naming their flat that came after
/// the Pay press: the notifier's confirmation.
async fn await_notices(fake: &Fake, journeys: &[Journey]) -> Vec<Option<Duration>> {
    let mut notices: Vec<Option<Duration>> = vec![None; journeys.len()];
    let started = Instant::now();
    loop {
        let mut pending = 0;
        for (j, notice) in journeys.iter().zip(notices.iter_mut()) {
            let Ok(paid) = &j.outcome else { continue };
            if notice.is_some() {
                continue;
            }
            match fake
                .since(&j.chat, paid.seen)
                .iter()
                .find(|s| s.text.contains(&paid.title))
            {
                Some(s) => *notice = Some(s.at.saturating_duration_since(paid.pressed)),
                None => pending += 1,
            }
        }
        if pending == 0 || started.elapsed() > NOTICE_TIMEOUT {
            return notices;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything measured for one backend.
struct BackendReport {
    backend: Backend,
    store: String,
    listings: usize,
    listings_time: Duration,
    solo: Vec<Phase>,
    crowd: Vec<Phase>,
    /// Whether the crowds ran at the same time.
    together: bool,
    memory: Vec<(&'static str, Memory)>,
    stopped: String,
    log_bytes: u64,
    log_problems: usize,
    first_log_problem: Option<String>,
    cleanup_warnings: Vec<String>,
}

impl BackendReport {
    fn all_met(&self) -> bool {
        self.solo.iter().chain(&self.crowd).all(Phase::all_met)
    }
}

enum Outcome {
    Measured(Box<BackendReport>),
    Skipped(String),
}

pub async fn run(args: BotsArgs) -> Result<()> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be positive");
    anyhow::ensure!(
        args.telegram + args.whatsapp + args.solo > 0,
        "no guests: set --telegram, --whatsapp or --solo"
    );
    let per_night = args.solo + args.telegram.max(args.whatsapp).div_ceil(args.concurrency);
    anyhow::ensure!(
        args.listings >= per_night + 5,
        "--listings {} is too few: a night gets up to {per_night} bookings, and a results page \
         needs 5 more free flats (use at least {})",
        args.listings,
        per_night + 5
    );
    anyhow::ensure!(
        2 * args.concurrency < 700,
        "--concurrency {} would need nights past the booking horizon",
        args.concurrency
    );
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let backends = match args.backend {
        Some(b) => vec![b],
        None => vec![Backend::Sqlite, Backend::Postgres],
    };

    let mut report = header(&args, &bin);
    let mut failed = false;
    for backend in backends {
        eprintln!("== {}: starting", backend.name());
        let block = match run_backend(&args, &bin, backend).await {
            Ok(Outcome::Measured(r)) => render(&r),
            Ok(Outcome::Skipped(why)) => format!("[{}]\n  skipped: {why}\n", backend.name()),
            Err(e) => {
                failed = true;
                format!("[{}]\n  FAILED: {e:#}\n", backend.name())
            }
        };
        report.push('\n');
        report.push_str(&block);
    }
    publish("bots", &report, args.common.out.as_deref())?;
    anyhow::ensure!(!failed, "a backend run failed (see the report)");
    Ok(())
}

async fn run_backend(args: &BotsArgs, bin: &Path, backend: Backend) -> Result<Outcome> {
    let work_dir = crate::work_dir("bots")?;
    let mut env = vec![
        ("ZHILEGO_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("ZHILEGO_RATE_LIMIT".to_string(), "0".to_string()),
        // The benchmark is one source posting as fast as it can; the metrics listener takes a
        // free port so runs side by side do not collide.
        ("ZHILEGO_WEBHOOK_RATE_LIMIT".to_string(), "0".to_string()),
        (
            "ZHILEGO_METRICS_ADDR".to_string(),
            "127.0.0.1:0".to_string(),
        ),
    ];
    let mut database = None;
    let store = match backend {
        Backend::Sqlite => {
            let data = work_dir.join("data");
            env.push(("ZHILEGO_DATA_DIR".into(), data.display().to_string()));
            env.push(("KASPI_MODE".into(), "sandbox".into()));
            format!("embedded SQLite in {}", data.display())
        }
        Backend::Postgres => {
            let admin = &args.common.pg_admin_url;
            if let Err(why) = pg::reachable(admin).await {
                let _ = std::fs::remove_dir_all(&work_dir);
                if args.backend == Some(Backend::Postgres) {
                    anyhow::bail!("PostgreSQL at {admin} is not reachable: {why}");
                }
                return Ok(Outcome::Skipped(format!(
                    "PostgreSQL at {admin} is not reachable ({why})"
                )));
            }
            let db = pg::scratch_name("zhilego_bench");
            pg::create_database(admin, &db).await?;
            let url = pg::database_url(admin, &db)?;
            // Production mode: random JWT secret and master key, KASPI_MODE=sandbox.
            env = server::production_env(&url);
            database = Some(db);
            format!("PostgreSQL {url}")
        }
    };

    let (telegram, telegram_task) =
        Fake::start(Router::new().route("/{token}/{method}", post(bot_api))).await?;
    let (twilio, twilio_task) = Fake::start(Router::new().route(
        "/2010-04-01/Accounts/{sid}/Messages.json",
        post(messages_api),
    ))
    .await?;
    let secret = Uuid::new_v4().simple().to_string();
    let twilio_token = Uuid::new_v4().simple().to_string();
    env.extend([
        ("TELEGRAM_BOT_TOKEN".to_string(), BOT_TOKEN.to_string()),
        ("TELEGRAM_API_URL".into(), telegram.url.clone()),
        ("TELEGRAM_WEBHOOK_SECRET".into(), secret.clone()),
        ("TWILIO_ACCOUNT_SID".into(), TWILIO_SID.into()),
        ("TWILIO_AUTH_TOKEN".into(), twilio_token.clone()),
        ("TWILIO_API_URL".into(), twilio.url.clone()),
        ("TWILIO_WHATSAPP_FROM".into(), TWILIO_FROM.into()),
        ("KASPI_REQUESTS_PER_SECOND".into(), "1000".into()),
        ("ZHILEGO_RECONCILE_AFTER_SECONDS".into(), "3600".into()),
    ]);
    env.extend(args.server_env.iter().cloned());

    let fakes = Fakes {
        telegram,
        twilio,
        secret,
        twilio_token,
    };
    let measured = measure(args, bin, backend, env, &work_dir, store, fakes).await;
    telegram_task.abort();
    twilio_task.abort();

    let mut warnings = Vec::new();
    if let Some(db) = &database {
        if let Err(e) = pg::drop_store(&args.common.pg_admin_url, db).await {
            warnings.push(format!("could not drop {db}: {e:#}"));
        }
    }
    let mut report = match measured {
        Ok(r) => r,
        Err(e) => return Err(e.context(format!("files kept in {}", work_dir.display()))),
    };
    if !report.all_met() || report.log_problems > 0 {
        warnings.push(format!(
            "something was off: the service log is kept in {}",
            work_dir.display()
        ));
    } else if let Err(e) = std::fs::remove_dir_all(&work_dir) {
        warnings.push(format!("could not remove {}: {e}", work_dir.display()));
    }
    report.cleanup_warnings = warnings;
    Ok(Outcome::Measured(Box::new(report)))
}

/// The fake APIs and the secrets the service shares with them.
struct Fakes {
    telegram: Fake,
    twilio: Fake,
    secret: String,
    twilio_token: String,
}

async fn measure(
    args: &BotsArgs,
    bin: &Path,
    backend: Backend,
    env: Vec<(String, String)>,
    work_dir: &Path,
    store: String,
    fakes: Fakes,
) -> Result<BackendReport> {
    let log = work_dir.join("zhilego.log");
    let server = Server::start(bin, env, log.clone()).await?;
    eprintln!(
        "   service pid {} at {}; creating {} listings",
        server.pid(),
        server.base_url,
        args.listings
    );
    let result = exercise(args, &server, backend, store, fakes).await;
    let stopped = server.stop().await;
    let mut report = result.with_context(|| format!("service log: {}", log.display()))?;
    report.stopped = stopped.unwrap_or_else(|e| format!("stop failed: {e:#}"));
    report.log_bytes = std::fs::metadata(&log).map_or(0, |m| m.len());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    report.log_problems = problems.len();
    report.first_log_problem = problems.first().map(|l| clip(l));
    Ok(report)
}

async fn exercise(
    args: &BotsArgs,
    server: &Server,
    backend: Backend,
    store: String,
    fakes: Fakes,
) -> Result<BackendReport> {
    let host = server.token("host", Uuid::new_v4()).await?;
    let client = Client::builder()
        .pool_max_idle_per_host(args.concurrency * 4)
        .timeout(Duration::from_secs(120))
        .build()?;
    let base = server.base_url.clone();
    let mut memory = Vec::new();

    let started = Instant::now();
    let titles = create_listings(&client, &base, &host, args.listings).await?;
    let tomorrow = kz_today() + Days::days(1);
    wait_searchable(&client, &base, tomorrow, args.listings).await?;
    let listings_time = started.elapsed();
    memory.push(("after listings", server.memory()?));

    let ctx = Arc::new(Ctx {
        client,
        base,
        telegram: fakes.telegram,
        twilio: fakes.twilio,
        secret: fakes.secret,
        twilio_token: fakes.twilio_token,
        update_ids: AtomicI64::new(1),
        next_guest: AtomicI64::new(0),
        titles,
    });
    let c = args.concurrency;
    // Worker w's night: Telegram tomorrow + w, WhatsApp tomorrow + c + w.
    let nights = |first: i64| -> Vec<NaiveDate> {
        (0..c as i64)
            .map(|w| tomorrow + Days::days(first + w))
            .collect()
    };
    let counts = [
        (Channel::Telegram, args.telegram, nights(0)),
        (Channel::WhatsApp, args.whatsapp, nights(c as i64)),
    ];

    let solo_pause = Duration::from_millis(args.solo_pause_ms);
    let think = Duration::from_millis(args.think_ms);
    let mut solo = Vec::new();
    if args.solo > 0 {
        for (channel, _, nights) in &counts {
            eprintln!("   {}: {} guests one at a time", channel.name(), args.solo);
            solo.push(phase(&ctx, *channel, args.solo, vec![nights[0]], solo_pause).await);
        }
        memory.push(("after solo", server.memory()?));
    }

    let mut crowd = Vec::new();
    if args.together {
        eprintln!(
            "   {} Telegram and {} WhatsApp guests at the same time, {c} at a time each",
            args.telegram, args.whatsapp
        );
        let before = cpu::Sample::take();
        let (t, w) = tokio::join!(
            phase(
                &ctx,
                Channel::Telegram,
                args.telegram,
                counts[0].2.clone(),
                think
            ),
            phase(
                &ctx,
                Channel::WhatsApp,
                args.whatsapp,
                counts[1].2.clone(),
                think
            ),
        );
        let split = cpu::Sample::take().since(&before);
        for mut p in [t, w] {
            if !p.journeys.is_empty() {
                p.cpu = Some(split.clone());
                crowd.push(p);
            }
        }
        memory.push(("after both", server.memory()?));
    } else {
        for (channel, count, nights) in counts {
            if count == 0 {
                continue;
            }
            eprintln!(
                "   {}: {count} guests, {} at a time",
                channel.name(),
                c.min(count)
            );
            let before = cpu::Sample::take();
            let mut p = phase(&ctx, channel, count, nights, think).await;
            p.cpu = Some(cpu::Sample::take().since(&before));
            crowd.push(p);
            memory.push((
                match channel {
                    Channel::Telegram => "after telegram",
                    Channel::WhatsApp => "after whatsapp",
                },
                server.memory()?,
            ));
        }
    }

    Ok(BackendReport {
        backend,
        store,
        listings: args.listings,
        listings_time,
        solo,
        crowd,
        together: args.together,
        memory,
        stopped: String::new(),
        log_bytes: 0,
        log_problems: 0,
        first_log_problem: None,
        cleanup_warnings: Vec::new(),
    })
}

/// The nightly price of listing `i`: all different, so the results' order is fixed.
fn price(i: usize) -> i64 {
    15_000 + 100 * i as i64
}

/// `count` listings in Almaty, each with a photo and its own price; listing → title.
async fn create_listings(
    client: &Client,
    base: &str,
    host: &str,
    count: usize,
) -> Result<HashMap<Uuid, String>> {
    let made = futures::future::join_all((0..count).map(|i| async move {
        let title = format!("{TITLE_PREFIX}{i:04}");
        let body = json!({
            "title": title,
            "city": "Almaty",
            "address": format!("Abay avenue {}, apt {}", 10 + i / 100, i % 100 + 1),
            "location": {"lat": 43.238, "lon": 76.945},
            "rooms": 2,
            "max_guests": 4,
            "nightly_price_kzt": price(i),
            "cleaning_fee_kzt": 0,
            "min_nights": 1,
            "photos": [format!("https://cdn.zhilego.kz/p/bench-{i}.jpg")],
        });
        let res = client
            .post(format!("{base}/api/v1/listings"))
            .bearer_auth(host)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "creating a listing answered {status}: {}",
            clip(&text)
        );
        let value: Value = serde_json::from_str(&text)?;
        let id = value["id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
            .context("a created listing without an id")?;
        Ok::<_, anyhow::Error>((id, title))
    }))
    .await;
    made.into_iter().collect()
}

/// Waits until the availability search shows every listing for tomorrow's night (pages of
/// 100, the search's largest).
async fn wait_searchable(
    client: &Client,
    base: &str,
    night: NaiveDate,
    count: usize,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let mut found = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("city", "Almaty".to_string()),
                ("check_in", night.to_string()),
                ("check_out", (night + Days::days(1)).to_string()),
                ("guests", "2".to_string()),
                ("limit", "100".to_string()),
            ];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let res = client
                .get(format!("{base}/api/v1/availability"))
                .query(&query)
                .send()
                .await?;
            let status = res.status();
            let page: Value = res.json().await.unwrap_or_default();
            anyhow::ensure!(
                status == StatusCode::OK,
                "GET /api/v1/availability answered {status}: {}",
                clip(&page.to_string())
            );
            found += page["items"].as_array().map_or(0, Vec::len);
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        if found >= count {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the availability search shows {found} of {count} listings after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- the report -----

fn header(args: &BotsArgs, bin: &Path) -> String {
    let mut s = crate::header("bots benchmark");
    let _ = writeln!(
        s,
        "service: {} (separate process, rate limit off, KASPI_MODE=sandbox, \
         KASPI_REQUESTS_PER_SECOND=1000 instead of the default 10: each bot booking makes one \
         payment-link call)",
        bin.display()
    );
    let _ = writeln!(
        s,
        "fakes: Telegram Bot API and Twilio Messages API in the bench process on loopback; a \
         webhook answers after every reply reached them, so its latency is the reply time"
    );
    let _ = writeln!(
        s,
        "load: {} listings in Almaty (one photo each, {}–{} KZT a night); {} solo guests per \
         channel one at a time ({} ms pause before each action); then {} Telegram and {} \
         WhatsApp guests, {} at a time{}, {}, each from /start to a paid booking; worker w books \
         one-night stays on a night of its own (Telegram tomorrow+w, WhatsApp tomorrow+{}+w), \
         the cheapest flat still free",
        args.listings,
        price(0),
        price(args.listings.saturating_sub(1)),
        args.solo,
        args.solo_pause_ms,
        args.telegram,
        args.whatsapp,
        args.concurrency,
        if args.together {
            " per channel, both channels at the same time"
        } else {
            ", Telegram first, then WhatsApp"
        },
        if args.think_ms == 0 {
            "no pause between a reply and the next action".to_string()
        } else {
            format!("a {} ms pause before each action", args.think_ms)
        },
        args.concurrency
    );
    for (k, v) in &args.server_env {
        let _ = writeln!(s, "service setting: {k}={v}");
    }
    s
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_line(sorted_us: &[u64]) -> String {
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(sorted_us, 50.0)),
        ms(pct(sorted_us, 95.0)),
        ms(pct(sorted_us, 99.0)),
        ms(pct(sorted_us, 100.0))
    )
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// The most instants in any one-second window.
fn busiest_second(sorted: &[Instant]) -> usize {
    let mut best = 0;
    let mut from = 0;
    for (to, t) in sorted.iter().enumerate() {
        while t.duration_since(sorted[from]) >= Duration::from_secs(1) {
            from += 1;
        }
        best = best.max(to - from + 1);
    }
    best
}

/// `min–max` (`n` when they are equal) of some counts.
fn range_of(values: impl Iterator<Item = usize>) -> (usize, usize) {
    values.fold((usize::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

fn span(lo: usize, hi: usize) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}–{hi}")
    }
}

/// One line of the journeys' actions: `8–9 taps (median 9; …)`.
fn actions_line(p: &Phase) -> (String, bool) {
    let paid: Vec<&Journey> = p.journeys.iter().filter(|j| j.outcome.is_ok()).collect();
    if paid.is_empty() {
        return ("no journey reached a paid booking".into(), false);
    }
    let (lo, hi) = range_of(paid.iter().map(|j| j.actions));
    let mut sorted: Vec<usize> = paid.iter().map(|j| j.actions).collect();
    sorted.sort_unstable();
    let median = sorted[(sorted.len() - 1) / 2];
    let turned = paid.iter().filter(|j| j.month_turns > 0).count();
    let detoured = paid.iter().filter(|j| j.detours > 0).count();
    let mut notes = vec![format!("median {median}")];
    if turned > 0 {
        notes.push(format!(
            "{turned} turned the calendar to the next month for their check-in"
        ));
    }
    if detoured > 0 {
        notes.push(format!(
            "{detoured} took an alternative after «dates taken»"
        ));
    }
    let goal = p.channel.goal();
    (
        format!(
            "{} {} per journey from {} to the paid booking, the Pay press included ({}) \
             (goal ≤ {goal}): {}",
            span(lo, hi),
            p.channel.action(),
            p.channel.start_word(),
            notes.join("; "),
            verdict(hi <= goal)
        ),
        hi <= goal,
    )
}

fn steps_line(p: &Phase) -> String {
    let mut by: BTreeMap<Step, Vec<u64>> = BTreeMap::new();
    for j in &p.journeys {
        for (step, d) in &j.steps {
            by.entry(*step).or_default().push(d.as_micros() as u64);
        }
    }
    by.into_iter()
        .map(|(step, mut v)| {
            v.sort_unstable();
            format!(
                "{} {:.0}/{:.0}",
                step.name(),
                ms(pct(&v, 50.0)),
                ms(pct(&v, 99.0))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `  label            text`
fn line(s: &mut String, label: &str, text: impl std::fmt::Display) {
    let _ = writeln!(s, "  {label:<17} {text}");
}

fn pause_words(p: &Phase) -> String {
    if p.think.is_zero() {
        "no pause between a reply and the next action".into()
    } else {
        format!(
            "a {} ms pause before each {}",
            p.think.as_millis(),
            &p.channel.action()[..p.channel.action().len() - 1]
        )
    }
}

fn render_solo(s: &mut String, p: &Phase) {
    let lat = p.latencies_us();
    let name = p.channel.name();
    let (lo, hi) = range_of(
        p.journeys
            .iter()
            .filter(|j| j.outcome.is_ok())
            .map(|j| j.actions),
    );
    line(
        s,
        &format!("{name} solo"),
        format!(
            "{} guests one at a time, {}: {} paid, {} confirmed, {} {}; {} webhooks: {}",
            p.journeys.len(),
            pause_words(p),
            p.paid(),
            p.confirmed(),
            if p.paid() > 0 {
                span(lo, hi)
            } else {
                "-".into()
            },
            p.channel.action(),
            lat.len(),
            latency_line(&lat),
        ),
    );
    line(s, "", format!("steps p50/p99 ms: {}", steps_line(p)));
    if let Some(e) = p.journeys.iter().find_map(|j| j.outcome.as_ref().err()) {
        line(s, "", format!("first failure: {e}"));
    }
}

fn render_crowd(s: &mut String, p: &Phase, together: bool) {
    let name = p.channel.name();
    let n = p.journeys.len();
    let failed = n - p.paid();
    let detours: usize = p.journeys.iter().map(|j| j.detours).sum();
    line(
        s,
        &format!("{name} crowd"),
        format!(
            "{n} guests, {} at a time, {} (nights {} … {}){}: {} reached the Kaspi link and \
             paid, {} confirmation notices, {detours} detours, {failed} failed, in {:.1} s: {}",
            p.workers,
            pause_words(p),
            p.nights.0,
            p.nights.1,
            if together {
                ", with the other channel's crowd"
            } else {
                ""
            },
            p.paid(),
            p.confirmed(),
            p.elapsed.as_secs_f64(),
            verdict(p.all_met())
        ),
    );
    if let Some(e) = p.journeys.iter().find_map(|j| j.outcome.as_ref().err()) {
        line(s, "", format!("first failure: {e}"));
    }
    let lat = p.latencies_us();
    let p99 = ms(pct(&lat, 99.0));
    line(
        s,
        &format!("{name} reply"),
        format!(
            "{} webhooks: {} (POST to the webhook until its answer)",
            lat.len(),
            latency_line(&lat)
        ),
    );
    line(s, "", format!("steps p50/p99 ms: {}", steps_line(p)));
    line(
        s,
        &format!("{name} goal"),
        format!(
            "reply p99 {p99:.1} ms with {} guests in flight (goal < {REPLY_GOAL_MS:.0} ms): {}",
            p.workers,
            verdict(p99 < REPLY_GOAL_MS)
        ),
    );
    let (actions, _) = actions_line(p);
    line(s, &format!("{name} {}", p.channel.action()), actions);

    let paid: Vec<&Journey> = p.journeys.iter().filter(|j| j.outcome.is_ok()).collect();
    let (lo, hi) = range_of(paid.iter().map(|j| j.bot_messages));
    let mut sends = p.sends.clone();
    sends.sort_unstable();
    let sends_span = match (sends.first(), sends.last()) {
        (Some(a), Some(b)) => b.duration_since(*a),
        _ => Duration::ZERO,
    };
    let other = p
        .other_calls
        .iter()
        .map(|(k, n)| format!("{n} x {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let limit = p.channel.sends_limit();
    line(
        s,
        &format!("{name} sends"),
        format!(
            "{} bot messages per journey until the link; the fake API got {} messages \
             (notices included) in {:.1} s: {:.1}/s, at most {} in any one second (the \
             service's send limiter: {limit}/s, bursts of up to {limit}){}",
            if paid.is_empty() {
                "-".into()
            } else {
                span(lo, hi)
            },
            sends.len(),
            sends_span.as_secs_f64(),
            per_second(sends.len(), sends_span),
            busiest_second(&sends),
            if other.is_empty() {
                String::new()
            } else {
                format!("; also {other}")
            }
        ),
    );
    let per_journey = sends.len() as f64 / paid.len().max(1) as f64;
    line(
        s,
        &format!("{name} rate"),
        format!(
            "{} webhooks in {:.1} s: {:.1} webhooks/s, {:.2} paid journeys/s (at {:.1} messages \
             a journey the send limiter allows {:.2} journeys/s){}",
            p.webhooks(),
            p.elapsed.as_secs_f64(),
            per_second(p.webhooks(), p.elapsed),
            per_second(p.paid(), p.elapsed),
            per_journey,
            limit as f64 / per_journey.max(1.0),
            if together {
                "; both channels at the same time"
            } else {
                ""
            }
        ),
    );
    let mut notices: Vec<u64> = p
        .notices
        .iter()
        .flatten()
        .map(|d| d.as_micros() as u64)
        .collect();
    notices.sort_unstable();
    if !notices.is_empty() {
        line(
            s,
            &format!("{name} notice"),
            format!(
                "Pay pressed → the confirmation message at the fake API: {}",
                latency_line(&notices)
            ),
        );
    }
    if let Some(cpu) = &p.cpu {
        let mut split = cpu.clone();
        split
            .by_command
            .retain(|(name, _)| !name.starts_with("kworker"));
        line(s, &format!("{name} CPU"), split.line());
    }
}

fn render(r: &BackendReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[{}] {}", r.backend.name(), r.store);
    line(
        &mut s,
        "prepare",
        format!(
            "{} listings created and searchable in {:.1} s",
            r.listings,
            r.listings_time.as_secs_f64()
        ),
    );
    for p in &r.solo {
        render_solo(&mut s, p);
    }
    for p in &r.crowd {
        render_crowd(&mut s, p, r.together);
    }

    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    let phases = r
        .memory
        .iter()
        .map(|(when, m)| format!("{when} {:.1}", mb(m.peak_kib)))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some((_, last)) = r.memory.last() {
        let peak = mb(last.peak_kib);
        line(
            &mut s,
            "server RSS",
            format!(
                "peak {peak:.1} MB (VmHWM; {phases} MB), at end {:.1} MB (VmRSS)",
                mb(last.current_kib)
            ),
        );
        line(
            &mut s,
            "goal",
            format!(
                "peak RSS {peak:.1} MB (goal < {RSS_GOAL_MB:.0} MB): {}",
                verdict(peak < RSS_GOAL_MB)
            ),
        );
    }
    line(
        &mut s,
        "service",
        format!(
            "{}; log {:.1} MB, {} WARN/ERROR lines",
            r.stopped,
            r.log_bytes as f64 / 1e6,
            r.log_problems
        ),
    );
    if let Some(l) = &r.first_log_problem {
        line(&mut s, "", format!("first: {l}"));
    }
    for w in &r.cleanup_warnings {
        line(&mut s, "warning", w);
    }
    s
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// An error and its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        source = cause.source();
    }
    s
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_signatures_match_the_documented_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn numbered_options_are_read_from_whatsapp_texts() {
        let text = "Когда заезд? 28.11.2026\n1. Алматы\n2. Астана\n12. Назад\nx. no";
        assert_eq!(
            numbered(text),
            vec![
                (1, "Алматы".to_string()),
                (2, "Астана".to_string()),
                (12, "Назад".to_string())
            ]
        );
    }

    #[test]
    fn titles_are_found_in_cards() {
        assert_eq!(
            title_in("Bench flat 0042\nАлматы\n19 200 ₸ / ночь").as_deref(),
            Some("Bench flat 0042")
        );
        assert_eq!(title_in("«Bench flat 7»"), None);
    }

    #[test]
    fn the_busiest_second_counts_a_sliding_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let v = vec![at(0), at(100), at(900), at(1000), at(1050), at(2500)];
        assert_eq!(busiest_second(&v), 4);
        assert_eq!(busiest_second(&[]), 0);
    }
}
