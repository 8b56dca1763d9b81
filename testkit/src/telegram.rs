//! A fake Telegram Bot API on loopback: `POST /bot<token>/<method>`, as teloxide calls it.
//! `sendMessage`/`sendPhoto` are answered with a Message, `sendMediaGroup` (an album, recorded
//! as one message) with one Message per photo, `getUpdates` from a queue, every other method
//! with `true`. It can answer message sends with 429 and a `retry_after` for a while.
use crate::outbox::{Call, Message, Outbox};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Telegram Bot API at `url`.
#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    pub outbox: Outbox,
    /// Updates waiting for `getUpdates` (long polling).
    updates: Arc<Mutex<Vec<Value>>>,
    task: crate::Served,
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

/// A JSON parameter teloxide may send as a string inside multipart (`media`, `reply_markup`).
fn json_param(value: &Value) -> Value {
    match value {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// The inline keyboard of a call's parameters: (label, callback data or URL).
pub fn keyboard_of(params: &Value) -> Vec<(String, String)> {
    json_param(&params["reply_markup"])["inline_keyboard"]
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

/// The inline keyboard's buttons of a sent message: (label, callback data or url).
pub fn buttons_of(c: &Call) -> Vec<(String, String)> {
    keyboard_of(&c.params)
}

/// The text (or caption) of a sent message.
pub fn text_of(c: &Call) -> String {
    c.params["text"]
        .as_str()
        .or_else(|| c.params["caption"].as_str())
        .unwrap_or("")
        .to_string()
}

fn is_send(method: &str) -> bool {
    matches!(method, "sendMessage" | "sendPhoto" | "sendMediaGroup")
}

/// A long poll: what is queued from the offset on, or after a short wait nothing.
async fn get_updates(fake: &FakeTelegram, params: &Value) -> Response {
    let offset = params["offset"].as_i64().unwrap_or(0);
    for _ in 0..10 {
        let ready: Vec<Value> = {
            let mut updates = fake.updates.lock().unwrap_or_else(|e| e.into_inner());
            updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            updates.clone()
        };
        if !ready.is_empty() {
            return Json(json!({"ok": true, "result": ready})).into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Json(json!({"ok": true, "result": []})).into_response()
}

async fn bot_api(
    State(fake): State<FakeTelegram>,
    Path((_token, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    // Bot API method names are case-insensitive; teloxide sends `SendMessage`.
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
    if method == "getUpdates" {
        return get_updates(&fake, &params).await;
    }
    if !is_send(&method) {
        fake.outbox.record_other(Call { method, params, at });
        return Json(json!({"ok": true, "result": true})).into_response();
    }
    if fake.outbox.refuse_throttled() {
        return Json(json!({
            "ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1}
        }))
        .into_response();
    }
    let chat = params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let album = method == "sendMediaGroup";
    let media = json_param(&params["media"])
        .as_array()
        .cloned()
        .unwrap_or_default();
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
    let message = Message {
        at,
        photo: album || method == "sendPhoto",
        text,
        buttons: keyboard_of(&params),
    };
    let call = Call {
        method: method.clone(),
        params: params.clone(),
        at,
    };
    let id = fake.outbox.record_message(chat.to_string(), call, message);
    let base = json!({
        "message_id": id, "date": 1_800_000_000,
        "chat": {"id": chat, "type": "private", "first_name": "Guest"},
    });
    let photo = json!([{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]);
    let result = match method.as_str() {
        "sendMediaGroup" => {
            let messages: Vec<Value> = (0..media.len().max(1) as i64)
                .map(|k| {
                    let mut m = base.clone();
                    m["message_id"] = json!(id * 100 + k);
                    m["media_group_id"] = json!(id.to_string());
                    m["photo"] = photo.clone();
                    m
                })
                .collect();
            json!(messages)
        }
        "sendPhoto" => {
            let mut m = base;
            m["photo"] = photo;
            m["caption"] = params["caption"].clone();
            m
        }
        _ => {
            let mut m = base;
            m["text"] = params["text"].clone();
            m
        }
    };
    Json(json!({"ok": true, "result": result})).into_response()
}

impl FakeTelegram {
    /// Starts the fake on a free loopback port; panics when it cannot bind (tests).
    pub async fn start() -> FakeTelegram {
        FakeTelegram::try_start()
            .await
            .expect("binding the fake Bot API")
    }

    /// Starts the fake on a free loopback port.
    pub async fn try_start() -> std::io::Result<FakeTelegram> {
        let mut fake = FakeTelegram {
            url: String::new(),
            outbox: Outbox::default(),
            updates: Arc::default(),
            task: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        fake.url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/{token}/{method}", post(bot_api))
            .with_state(fake.clone());
        fake.task.start(listener, app);
        Ok(fake)
    }

    /// Stops serving (the bench, between backends).
    pub fn stop(&self) {
        self.task.stop();
    }

    /// Every call recorded, in order (messages and other methods; not `getUpdates`).
    pub fn calls(&self) -> Vec<Call> {
        self.outbox.calls()
    }

    /// The messages (text, photo or album) sent to `chat`, in order.
    pub fn sent_to(&self, chat: i64) -> Vec<Call> {
        self.outbox.calls_to(&chat.to_string())
    }

    /// Queues an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(update);
    }

    /// Answer the next `n` sends with 429 (retry after 1 s).
    pub fn throttle(&self, n: u32) {
        self.outbox.throttle(n);
    }

    pub fn throttled(&self) -> u32 {
        self.outbox.throttled()
    }

    /// Waits until `chat` has received a message whose text contains `needle`.
    pub async fn wait_for(&self, chat: i64, needle: &str) -> Call {
        // 30 s: CI runs the suite beside the stack, browser and schemathesis tests on 2 cores.
        for _ in 0..600 {
            if let Some(c) = self
                .sent_to(chat)
                .into_iter()
                .find(|c| text_of(c).contains(needle))
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "chat {chat} never got {needle:?}; got: {:#?}",
            self.sent_to(chat).iter().map(text_of).collect::<Vec<_>>()
        );
    }
}
