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
use crate::harness::{self, Backend, Outcome, Scratch, Stopped};
use crate::report::{chain, clip, latency_line, ms, pct, per_second, verdict, Report, Section};
use crate::server::{Memory, Server};
use crate::{cpu, kz_today, zhilego_binary, Common};
use anyhow::{Context, Result};
use chrono::{Datelike, Duration as Days, NaiveDate};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use uuid::Uuid;
use zhilego_testkit::guests::{
    numbered, option_number, TelegramGuest, WhatsAppGuest, WHATSAPP_BOT_NUMBER,
};
use zhilego_testkit::{FakeTelegram, FakeTwilio, Message, Outbox};

const BOT_TOKEN: &str = "123456:BENCH";
const TWILIO_SID: &str = "AC00000000000000000000000000bench";
/// Goal for the bots' reply time (p99), in ms.
const REPLY_GOAL_MS: f64 = 300.0;
/// Goal for the taps from `/start` to a paid booking in Telegram.
const TAPS_GOAL: usize = 10;
/// Goal for the messages from `start` to a paid booking in WhatsApp.
const MESSAGES_GOAL: usize = 12;
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
    telegram: FakeTelegram,
    twilio: FakeTwilio,
    secret: String,
    twilio_token: String,
    update_ids: AtomicI64,
    next_guest: AtomicI64,
    /// Listing → title.
    titles: HashMap<Uuid, String>,
}

impl Ctx {
    fn fake(&self, channel: Channel) -> &Outbox {
        match channel {
            Channel::Telegram => &self.telegram.outbox,
            Channel::WhatsApp => &self.twilio.outbox,
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

    /// A command (`/start`) as a message, anything else as a button press.
    fn telegram_update(&self, input: &str) -> Value {
        let id = self.ctx.update_ids.fetch_add(1, Ordering::Relaxed);
        let guest = TelegramGuest::new(self.user);
        if input.starts_with('/') {
            guest.text_update(id, input)
        } else {
            guest.tap_update(id, input)
        }
    }

    /// Sends `input` (a Telegram command or button data, or a WhatsApp message) to the
    /// service's webhook; gives the replies the bot sent before it answered.
    async fn send(&mut self, step: Step, input: &str) -> Result<Vec<Message>, String> {
        self.pause().await;
        let ctx = self.ctx;
        let fake = ctx.fake(self.channel);
        let answer = match self.channel {
            Channel::Telegram => {
                let guest = TelegramGuest::new(self.user);
                let update = self.telegram_update(input);
                guest
                    .post(&ctx.client, &ctx.base, &ctx.secret, fake, &update)
                    .await
            }
            Channel::WhatsApp => {
                let url = format!("{}/whatsapp/webhook/", ctx.base);
                let sid = format!("SM{}", Uuid::new_v4().simple());
                let guest = WhatsAppGuest {
                    number: self.chat.clone(),
                    account_sid: TWILIO_SID.into(),
                };
                let params = guest.params(input, &sid);
                guest
                    .post(&ctx.client, &url, &ctx.twilio_token, fake, &params)
                    .await
            }
        };
        let what = || format!("{} ({input:?})", step.name());
        let answer = answer.map_err(|e| format!("{}: {}", what(), chain(&e)))?;
        self.steps.push((step, answer.elapsed));
        self.actions += 1;
        if answer.status != StatusCode::OK {
            return Err(format!(
                "{}: the webhook answered {}: {}",
                what(),
                answer.status,
                clip(&answer.body)
            ));
        }
        let replies = fake.since(&self.chat, answer.before);
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
        mut replies: Vec<Message>,
        day: NaiveDate,
        step: Step,
    ) -> Result<Vec<Message>, String> {
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
fn buttons(replies: &[Message]) -> impl Iterator<Item = &str> {
    replies
        .iter()
        .flat_map(|s| s.buttons.iter().map(|(_, d)| d.as_str()))
}

/// The first button whose data satisfies `wanted`.
fn button(
    replies: &[Message],
    step: Step,
    wanted: impl Fn(&str) -> bool,
) -> Result<String, String> {
    buttons(replies)
        .find(|d| wanted(d))
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no such button in {}", step.name(), describe(replies)))
}

/// The number of the first option whose label satisfies `wanted`.
fn option(
    replies: &[Message],
    step: Step,
    wanted: impl Fn(&str) -> bool,
) -> Result<String, String> {
    option_number(replies.iter().map(|s| s.text.as_str()), wanted)
        .map(|n| n.to_string())
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
fn describe(replies: &[Message]) -> String {
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
async fn await_notices(fake: &Outbox, journeys: &[Journey]) -> Vec<Option<Duration>> {
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
    stopped: Stopped,
    cleanup_warnings: Vec<String>,
}

impl BackendReport {
    fn all_met(&self) -> bool {
        self.solo.iter().chain(&self.crowd).all(Phase::all_met)
    }
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

    let report = header(&args, &bin);
    let out = args.common.out.as_deref();
    harness::each_backend(report, "bots.txt", out, args.backend, |backend| {
        let (args, bin) = (&args, &bin);
        async move { Ok(run_backend(args, bin, backend).await?.map(|r| render(&r))) }
    })
    .await
}

async fn run_backend(
    args: &BotsArgs,
    bin: &Path,
    backend: Backend,
) -> Result<Outcome<Box<BackendReport>>> {
    let admin = &args.common.pg_admin_url;
    // PostgreSQL is skipped when it does not answer, unless `--backend postgres` asks for it.
    let may_skip = args.backend != Some(Backend::Postgres);
    let mut scratch = match Scratch::create("bots", backend, admin, may_skip).await? {
        Outcome::Measured(s) => s,
        Outcome::Skipped(why) => return Ok(Outcome::Skipped(why)),
    };
    let mut env = scratch.env.clone();
    let telegram = FakeTelegram::try_start()
        .await
        .context("starting the fake Bot API")?;
    let twilio = FakeTwilio::try_start()
        .await
        .context("starting the fake Twilio")?;
    let secret = Uuid::new_v4().simple().to_string();
    let twilio_token = Uuid::new_v4().simple().to_string();
    env.extend([
        ("TELEGRAM_BOT_TOKEN".to_string(), BOT_TOKEN.to_string()),
        ("TELEGRAM_API_URL".into(), telegram.url.clone()),
        ("TELEGRAM_WEBHOOK_SECRET".into(), secret.clone()),
        ("TWILIO_ACCOUNT_SID".into(), TWILIO_SID.into()),
        ("TWILIO_AUTH_TOKEN".into(), twilio_token.clone()),
        ("TWILIO_API_URL".into(), twilio.url.clone()),
        ("TWILIO_WHATSAPP_FROM".into(), WHATSAPP_BOT_NUMBER.into()),
        ("KASPI_REQUESTS_PER_SECOND".into(), "1000".into()),
        ("ZHILEGO_RECONCILE_AFTER_SECONDS".into(), "3600".into()),
    ]);
    env.extend(args.server_env.iter().cloned());

    let fakes = Fakes {
        telegram: telegram.clone(),
        twilio: twilio.clone(),
        secret,
        twilio_token,
    };
    let measured = measure(args, bin, backend, env, &scratch, fakes).await;
    telegram.stop();
    twilio.stop();

    let mut warnings: Vec<String> = scratch.drop_database().await.into_iter().collect();
    let mut report = measured.map_err(|e| scratch.kept(e))?;
    let off = !report.all_met() || report.stopped.log_problems > 0;
    warnings.extend(scratch.remove_files(off));
    report.cleanup_warnings = warnings;
    Ok(Outcome::Measured(Box::new(report)))
}

/// The fake APIs and the secrets the service shares with them.
struct Fakes {
    telegram: FakeTelegram,
    twilio: FakeTwilio,
    secret: String,
    twilio_token: String,
}

async fn measure(
    args: &BotsArgs,
    bin: &Path,
    backend: Backend,
    env: Vec<(String, String)>,
    scratch: &Scratch,
    fakes: Fakes,
) -> Result<BackendReport> {
    let log = scratch.log();
    let next = format!("creating {} listings", args.listings);
    let server = harness::start(bin, env, log.clone(), None, &next).await?;
    let result = exercise(args, &server, backend, scratch.store.clone(), fakes).await;
    let stopped = harness::stop(server).await;
    let mut report = result.with_context(|| format!("service log: {}", log.display()))?;
    report.stopped = stopped;
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
        stopped: Stopped::default(),
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

fn header(args: &BotsArgs, bin: &Path) -> Report {
    let mut s = Report::new("bots benchmark");
    s.line(format!(
        "service: {} (separate process, rate limit off, KASPI_MODE=sandbox, \
         KASPI_REQUESTS_PER_SECOND=1000 instead of the default 10: each bot booking makes one \
         payment-link call)",
        bin.display()
    ));
    s.line(
        "fakes: Telegram Bot API and Twilio Messages API in the bench process on loopback; a \
         webhook answers after every reply reached them, so its latency is the reply time",
    );
    s.line(format!(
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
    ));
    s.settings(&args.server_env);
    s
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

fn render_solo(s: &mut Section, p: &Phase) {
    let lat = p.latencies_us();
    let name = p.channel.name();
    let (lo, hi) = range_of(
        p.journeys
            .iter()
            .filter(|j| j.outcome.is_ok())
            .map(|j| j.actions),
    );
    s.row(
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
    s.row("", format!("steps p50/p99 ms: {}", steps_line(p)));
    if let Some(e) = p.journeys.iter().find_map(|j| j.outcome.as_ref().err()) {
        s.row("", format!("first failure: {e}"));
    }
}

fn render_crowd(s: &mut Section, p: &Phase, together: bool) {
    let name = p.channel.name();
    let n = p.journeys.len();
    let failed = n - p.paid();
    let detours: usize = p.journeys.iter().map(|j| j.detours).sum();
    s.row(
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
        s.row("", format!("first failure: {e}"));
    }
    let lat = p.latencies_us();
    let p99 = ms(pct(&lat, 99.0));
    s.row(
        &format!("{name} reply"),
        format!(
            "{} webhooks: {} (POST to the webhook until its answer)",
            lat.len(),
            latency_line(&lat)
        ),
    );
    s.row("", format!("steps p50/p99 ms: {}", steps_line(p)));
    s.row(
        &format!("{name} goal"),
        format!(
            "reply p99 {p99:.1} ms with {} guests in flight (goal < {REPLY_GOAL_MS:.0} ms): {}",
            p.workers,
            verdict(p99 < REPLY_GOAL_MS)
        ),
    );
    let (actions, _) = actions_line(p);
    s.row(&format!("{name} {}", p.channel.action()), actions);

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
    s.row(
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
    s.row(
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
        s.row(
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
        s.row(&format!("{name} CPU"), split.line());
    }
}

fn render(r: &BackendReport) -> Section {
    let mut s = Section::new(r.backend.name(), &r.store, 17);
    s.row(
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

    harness::rss_rows(&mut s, &r.memory, "");
    s.row(
        "service",
        format!(
            "{}; log {:.1} MB, {} WARN/ERROR lines",
            r.stopped.how,
            r.stopped.log_bytes as f64 / 1e6,
            r.stopped.log_problems
        ),
    );
    if let Some(l) = &r.stopped.first_log_problem {
        s.row("", format!("first: {l}"));
    }
    for w in &r.cleanup_warnings {
        s.row("warning", w);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
