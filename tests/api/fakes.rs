//! Fake outside services on loopback, for the bots: a Telegram Bot API and Twilio's Messages
//! API. They record every call and can answer 429 with a `retry_after` for a while.
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One call the bot made: the method and its parameters as JSON.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub params: Value,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Answer this many more message sends with 429.
    throttle: u32,
    throttled: u32,
    next_message_id: i64,
    /// Updates waiting for `getUpdates` (long polling).
    updates: Vec<Value>,
}

/// A Telegram Bot API at `url`: `POST /bot<token>/<method>`.
#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
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

async fn bot_api(
    State(fake): State<FakeTelegram>,
    Path((_token, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
        // A long poll: answers what is queued from the offset on, or waits a little.
        let offset = params["offset"].as_i64().unwrap_or(0);
        for _ in 0..10 {
            let ready: Vec<Value> = {
                let mut inner = fake.inner.lock().unwrap();
                inner
                    .updates
                    .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                inner.updates.clone()
            };
            if !ready.is_empty() {
                return Json(json!({"ok": true, "result": ready})).into_response();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return Json(json!({"ok": true, "result": []})).into_response();
    }
    let sends = matches!(
        method.as_str(),
        "sendMessage" | "sendPhoto" | "sendMediaGroup"
    );
    let mut inner = fake.inner.lock().unwrap();
    if sends && inner.throttle > 0 {
        inner.throttle -= 1;
        inner.throttled += 1;
        return Json(json!({
            "ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1}
        }))
        .into_response();
    }
    inner.next_message_id += 1;
    let id = inner.next_message_id;
    inner.calls.push(Call {
        method: method.clone(),
        params: params.clone(),
    });
    let chat = params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let result = match method.as_str() {
        "sendMessage" => json!({
            "message_id": id, "date": 1_800_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "Guest"},
            "text": params["text"]
        }),
        "sendPhoto" => json!({
            "message_id": id, "date": 1_800_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "Guest"},
            "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
            "caption": params["caption"]
        }),
        "sendMediaGroup" => {
            let media = match &params["media"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                other => other.clone(),
            };
            let photos = media.as_array().map_or(1, |m| m.len());
            let messages: Vec<Value> = (0..photos as i64)
                .map(|k| {
                    json!({
                        "message_id": id * 100 + k, "date": 1_800_000_000,
                        "chat": {"id": chat, "type": "private", "first_name": "Guest"},
                        "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
                    })
                })
                .collect();
            json!(messages)
        }
        "getUpdates" => json!([]),
        _ => json!(true),
    };
    Json(json!({"ok": true, "result": result})).into_response()
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeTelegram {
            url: format!("http://{}", listener.local_addr().unwrap()),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = Router::new()
            .route("/{token}/{method}", post(bot_api))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// The messages (text or photo captions) sent to `chat`, in order.
    pub fn sent_to(&self, chat: i64) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| {
                matches!(
                    c.method.as_str(),
                    "sendMessage" | "sendPhoto" | "sendMediaGroup"
                )
            })
            .filter(|c| {
                c.params["chat_id"].as_i64() == Some(chat)
                    || c.params["chat_id"].as_str() == Some(&chat.to_string())
            })
            .collect()
    }

    /// Queues an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.inner.lock().unwrap().updates.push(update);
    }

    /// Answer the next `n` sends with 429 (retry after 1 s).
    pub fn throttle(&self, n: u32) {
        self.inner.lock().unwrap().throttle = n;
    }

    pub fn throttled(&self) -> u32 {
        self.inner.lock().unwrap().throttled
    }

    /// Waits until `chat` has received a message whose text contains `needle`.
    pub async fn wait_for(&self, chat: i64, needle: &str) -> Call {
        for _ in 0..200 {
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

/// The text (or caption) of a sent message.
pub fn text_of(c: &Call) -> String {
    c.params["text"]
        .as_str()
        .or_else(|| c.params["caption"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The inline keyboard's buttons of a sent message: (label, callback data or url).
pub fn buttons_of(c: &Call) -> Vec<(String, String)> {
    let markup = match &c.params["reply_markup"] {
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

/// Twilio's Messages API at `url`: `POST /2010-04-01/Accounts/<sid>/Messages.json`.
#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn messages_api(
    State(fake): State<FakeTwilio>,
    Path(_sid): Path<String>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut inner = fake.inner.lock().unwrap();
    if inner.throttle > 0 {
        inner.throttle -= 1;
        inner.throttled += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", "1")],
            Json(json!({"code": 20429, "message": "Too Many Requests"})),
        )
            .into_response();
    }
    inner.next_message_id += 1;
    let sid = format!("SM{:032}", inner.next_message_id);
    inner.calls.push(Call {
        method: "Messages".into(),
        params: json!(form),
    });
    (
        StatusCode::CREATED,
        Json(json!({"sid": sid, "status": "queued"})),
    )
        .into_response()
}

impl FakeTwilio {
    pub async fn start() -> FakeTwilio {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeTwilio {
            url: format!("http://{}", listener.local_addr().unwrap()),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(messages_api),
            )
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Bodies sent to `to` (`whatsapp:+7…`), in order.
    pub fn sent_to(&self, to: &str) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.params["To"] == to)
            .map(|c| {
                c.params["Body"]
                    .as_str()
                    .or_else(|| c.params["ContentVariables"].as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    pub fn throttle(&self, n: u32) {
        self.inner.lock().unwrap().throttle = n;
    }

    pub fn throttled(&self) -> u32 {
        self.inner.lock().unwrap().throttled
    }

    pub async fn wait_for(&self, to: &str, needle: &str) -> String {
        for _ in 0..200 {
            if let Some(b) = self.sent_to(to).into_iter().find(|b| b.contains(needle)) {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{to} never got {needle:?}; got: {:#?}", self.sent_to(to));
    }
}
