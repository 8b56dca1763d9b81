//! What a fake API was sent: every call in order, and the messages per chat with the instant
//! each arrived (the bench measures reply times and send rates from them).
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// One call the service made: the method and its parameters as JSON.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub params: Value,
    /// When it arrived at the fake.
    pub at: Instant,
}

/// One message the service sent to a chat, as the guest sees it.
#[derive(Clone, Debug)]
pub struct Message {
    pub at: Instant,
    /// A photo card or album (Telegram `sendPhoto` or `sendMediaGroup`, Twilio `MediaUrl`).
    pub photo: bool,
    /// The text or caption (an album's captions, one after the other).
    pub text: String,
    /// Telegram's inline keyboard: (label, callback data or URL).
    pub buttons: Vec<(String, String)>,
}

#[derive(Default)]
struct Recorded {
    calls: Vec<Call>,
    /// Per chat: each message with the index of its call in `calls`.
    chats: HashMap<String, Vec<(usize, Message)>>,
    /// When every message arrived, in order.
    sends: Vec<Instant>,
    /// Calls other than messages, by method.
    other: BTreeMap<String, usize>,
    /// Answer this many more message sends with 429.
    throttle: u32,
    throttled: u32,
    next_id: i64,
}

/// The record of one fake API; clones share it.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Arc<Mutex<Recorded>>,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A test that panicked while holding the lock leaves a record still worth reading.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this send is to be refused with 429 (and counts it).
    pub(crate) fn refuse_throttled(&self) -> bool {
        let mut r = self.lock();
        if r.throttle == 0 {
            return false;
        }
        r.throttle -= 1;
        r.throttled += 1;
        true
    }

    /// Records a message to `chat`; gives its id (1, 2, …).
    pub(crate) fn record_message(&self, chat: String, call: Call, message: Message) -> i64 {
        let mut r = self.lock();
        r.next_id += 1;
        let index = r.calls.len();
        r.calls.push(call);
        r.sends.push(message.at);
        r.chats.entry(chat).or_default().push((index, message));
        r.next_id
    }

    /// Records a call that sends no message (`answerCallbackQuery`, `setWebhook`, …).
    pub(crate) fn record_other(&self, call: Call) {
        let mut r = self.lock();
        *r.other.entry(call.method.clone()).or_default() += 1;
        r.calls.push(call);
    }

    /// Every call recorded, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls that sent a message to `chat`, in order.
    pub fn calls_to(&self, chat: &str) -> Vec<Call> {
        let r = self.lock();
        r.chats
            .get(chat)
            .map(|v| v.iter().map(|(i, _)| r.calls[*i].clone()).collect())
            .unwrap_or_default()
    }

    /// How many messages `chat` has received.
    pub fn count(&self, chat: &str) -> usize {
        self.lock().chats.get(chat).map_or(0, Vec::len)
    }

    /// The messages sent to `chat` from the `from`-th on.
    pub fn since(&self, chat: &str, from: usize) -> Vec<Message> {
        self.lock()
            .chats
            .get(chat)
            .map(|v| {
                v.get(from..)
                    .unwrap_or_default()
                    .iter()
                    .map(|(_, m)| m.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The arrival instants of every message in `[from, to]`.
    pub fn sends_between(&self, from: Instant, to: Instant) -> Vec<Instant> {
        self.lock()
            .sends
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect()
    }

    /// Calls other than messages so far, by method.
    pub fn other_calls(&self) -> BTreeMap<String, usize> {
        self.lock().other.clone()
    }

    /// Answer the next `n` message sends with 429 (retry after 1 s).
    pub fn throttle(&self, n: u32) {
        self.lock().throttle = n;
    }

    /// How many sends were answered 429.
    pub fn throttled(&self) -> u32 {
        self.lock().throttled
    }
}
