//! A fake Twilio Messages API on loopback: `POST /2010-04-01/Accounts/<sid>/Messages.json`
//! (form-encoded), answered 201 with a message sid, or 429 with `Retry-After` for a while.
use crate::outbox::{Call, Message, Outbox};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Twilio's Messages API at `url`; the chats are the `To` numbers (`whatsapp:+7…`).
#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    pub outbox: Outbox,
    task: crate::Served,
}

async fn messages_api(
    State(fake): State<FakeTwilio>,
    Path(_sid): Path<String>,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if fake.outbox.refuse_throttled() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", "1")],
            Json(json!({"code": 20429, "message": "Too Many Requests"})),
        )
            .into_response();
    }
    let message = Message {
        at,
        photo: form.contains_key("MediaUrl"),
        text: form
            .get("Body")
            .or_else(|| form.get("ContentVariables"))
            .cloned()
            .unwrap_or_default(),
        buttons: Vec::new(),
    };
    let to = form.get("To").cloned().unwrap_or_default();
    let call = Call {
        method: "Messages".into(),
        params: json!(form),
        at,
    };
    let id = fake.outbox.record_message(to, call, message);
    (
        StatusCode::CREATED,
        Json(json!({"sid": format!("SM{id:032}"), "status": "queued"})),
    )
        .into_response()
}

impl FakeTwilio {
    /// Starts the fake on a free loopback port; panics when it cannot bind (tests).
    pub async fn start() -> FakeTwilio {
        FakeTwilio::try_start()
            .await
            .expect("binding the fake Twilio")
    }

    /// Starts the fake on a free loopback port.
    pub async fn try_start() -> std::io::Result<FakeTwilio> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let fake = FakeTwilio {
            url: format!("http://{}", listener.local_addr()?),
            outbox: Outbox::default(),
            task: Default::default(),
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(messages_api),
            )
            .with_state(fake.clone());
        fake.task.start(listener, app);
        Ok(fake)
    }

    /// Stops serving (the bench, between backends).
    pub fn stop(&self) {
        self.task.stop();
    }

    /// Bodies (or template variables) sent to `to` (`whatsapp:+7…`), in order.
    pub fn sent_to(&self, to: &str) -> Vec<String> {
        self.outbox
            .since(to, 0)
            .into_iter()
            .map(|m| m.text)
            .collect()
    }

    /// Answer the next `n` sends with 429 (`Retry-After: 1`).
    pub fn throttle(&self, n: u32) {
        self.outbox.throttle(n);
    }

    pub fn throttled(&self) -> u32 {
        self.outbox.throttled()
    }

    /// Waits until nothing more has been sent to `to` for half a second (the replies and
    /// notices still on their way have arrived), at most 30 s; the count then.
    pub async fn settled(&self, to: &str) -> usize {
        let mut seen = self.sent_to(to).len();
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.sent_to(to).len();
            if now == seen {
                return now;
            }
            seen = now;
        }
        seen
    }

    /// Waits until `to` has received a body containing `needle`.
    pub async fn wait_for(&self, to: &str, needle: &str) -> String {
        // 30 s: CI runs the suite beside the stack, browser and schemathesis tests on 2 cores.
        for _ in 0..600 {
            if let Some(b) = self.sent_to(to).into_iter().find(|b| b.contains(needle)) {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{to} never got {needle:?}; got: {:#?}", self.sent_to(to));
    }
}
