//! WhatsApp through Twilio: `POST /whatsapp/webhook/` (form-encoded, `X-Twilio-Signature`
//! checked: base64 HMAC-SHA1 keyed with the auth token over the URL followed by every posted
//! parameter's name and value, sorted by name), numbered menus instead of keyboards, and
//! replies through Twilio's Messages API (at most 100/s, retried after 429/5xx). Outside the
//! 24-hour window only the approved template may be sent.
//!
//! Numbered menus: the turn's choice buttons are numbered 1…n in order and their encoded
//! [`bots::Choice`]s kept with the chat, so a typed number is that button's choice.
use super::{bot_off, Chats};
use crate::error::ApiError;
use crate::settings::{Secret, TwilioSettings};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bots::{Command, Input, Reply};
use domain::user::Language;
use domain::Channel;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use kaspi::retry::{self, Retryable};
use sha1::Sha1;
use std::num::NonZeroU32;
use std::time::Duration;

pub struct WhatsApp {
    http: reqwest::Client,
    account_sid: String,
    auth_token: Secret,
    api_url: String,
    from: String,
    template_sid: Option<String>,
    /// `ZHILEGO_PUBLIC_URL`: the webhook URL Twilio signs is this + the path.
    public_url: Option<String>,
    limiter: DefaultDirectRateLimiter,
    /// Senders take their turn at the limiter first come, first served.
    queue: tokio::sync::Mutex<()>,
}

/// The signature Twilio sends for a request to `url` with these form parameters.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
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

/// A message's words: a command (with or without `/`, in Russian, Kazakh or English), a menu
/// number, or text.
pub fn parse_body(body: &str, menu: &[String]) -> Input {
    let t = body.trim();
    let word = t.trim_start_matches('/').to_lowercase();
    let command = match word.as_str() {
        "start" | "старт" | "начать" | "бастау" | "hi" | "привет" | "сәлем" => {
            Some(Command::Start)
        }
        "help" | "помощь" | "көмек" => Some(Command::Help),
        "lang" | "язык" | "тіл" | "language" => Some(Command::Lang),
        "mybookings" | "мои брони" | "брони" | "bookings" => Some(Command::MyBookings),
        "cancel" | "отмена" | "болдырмау" => Some(Command::Cancel),
        _ => None,
    };
    if let Some(c) = command {
        return Input::Command(c);
    }
    if let Ok(n) = t.parse::<usize>() {
        if n >= 1 && n <= menu.len() {
            return Input::button(&menu[n - 1]);
        }
    }
    Input::Text(t.to_string())
}

/// A reply as WhatsApp text: the words, then the choices numbered (continuing from `first`)
/// and links spelled out. Gives the text and the next number.
pub fn render(reply: &Reply, first: usize, lang: Language) -> (String, usize) {
    let mut text = reply.text.clone();
    let mut n = first;
    let mut numbered = false;
    for b in reply.buttons.iter().flatten() {
        match &b.url {
            Some(url) => text.push_str(&format!("\n{}: {url}", b.label)),
            None => {
                text.push_str(&format!("\n{n}. {}", b.label));
                n += 1;
                numbered = true;
            }
        }
    }
    if numbered {
        text.push_str(&format!("\n\n{}", bots::texts::menu_hint(lang)));
    }
    (text, n)
}

impl WhatsApp {
    /// The WhatsApp bot, when the Twilio account, token and sender are set.
    pub fn from_settings(s: &TwilioSettings, public_url: Option<String>) -> Option<WhatsApp> {
        let (Some(sid), Some(token), Some(from)) =
            (&s.account_sid, &s.auth_token, &s.whatsapp_from)
        else {
            return None;
        };
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for Twilio; the WhatsApp bot is off");
                return None;
            }
        };
        Some(WhatsApp {
            http,
            account_sid: sid.clone(),
            auth_token: token.clone(),
            api_url: s.api_url.clone(),
            from: from.clone(),
            template_sid: s.template_sid.clone(),
            public_url,
            limiter: RateLimiter::direct(Quota::per_second(NonZeroU32::new(100).expect("100"))),
            queue: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether the request to `received_url` with `params` carries Twilio's signature. The
    /// signed URL is `ZHILEGO_PUBLIC_URL` + path when set, else the URL as received.
    pub fn signed(
        &self,
        path: &str,
        received_url: &str,
        params: &[(String, String)],
        header: Option<&str>,
    ) -> bool {
        let url = match &self.public_url {
            Some(base) => format!("{base}{path}"),
            None => received_url.to_string(),
        };
        let expected = signature(self.auth_token.expose(), &url, params);
        header.is_some_and(|h| crate::auth::same_secret(&expected, h))
    }

    /// Handles one inbound message once (a repeated `MessageSid` is skipped).
    pub async fn handle(&self, chats: &Chats, params: &[(String, String)]) -> anyhow::Result<()> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(sid), Some(from)) = (get("MessageSid"), get("From")) else {
            anyhow::bail!("MessageSid and From are required");
        };
        if !chats.first_delivery(Channel::Whatsapp, sid).await? {
            metrics::counter!("zhilego_bot_duplicates_total", "channel" => "whatsapp").increment(1);
            return Ok(());
        }
        let started = std::time::Instant::now();
        let result = async {
            let menu = chats.menu(Channel::Whatsapp, from).await;
            let input = parse_body(get("Body").unwrap_or(""), &menu);
            let user_id = chats
                .guest(
                    Channel::Whatsapp,
                    from,
                    from.trim_start_matches("whatsapp:"),
                )
                .await?;
            let turn = chats
                .converse(
                    Channel::Whatsapp,
                    from,
                    user_id,
                    input,
                    Some((commands::InputSource::WhatsappMessage, sid)),
                )
                .await?;
            let mut n = 1;
            for reply in &turn.replies {
                let (text, next) = render(reply, n, turn.lang);
                n = next;
                self.send(from, &text, reply.photo.as_deref(), None).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if result.is_err() {
            chats.forget_delivery(Channel::Whatsapp, sid).await;
        }
        metrics::histogram!("zhilego_bot_reply_seconds", "channel" => "whatsapp")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// A notice to a guest: free text inside the 24-hour window, else the approved template
    /// (skipped when none is configured).
    pub async fn deliver(
        &self,
        to: &str,
        reply: &Reply,
        lang: Language,
        window_open: bool,
    ) -> anyhow::Result<()> {
        let (text, _) = render(reply, 1, lang);
        if window_open {
            return self.send(to, &text, reply.photo.as_deref(), None).await;
        }
        match &self.template_sid {
            Some(template) => self.send(to, &text, None, Some(template)).await,
            None => {
                tracing::info!(
                    "a WhatsApp notice outside the 24-hour window was skipped: no TWILIO_TEMPLATE_SID"
                );
                Ok(())
            }
        }
    }

    /// One message through the Messages API, retried (`kaspi::retry`) after 429 and 5xx, as
    /// long as Twilio's `Retry-After` says, and after network errors; at most 6 attempts.
    async fn send(
        &self,
        to: &str,
        body: &str,
        media: Option<&str>,
        template: Option<&str>,
    ) -> anyhow::Result<()> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.api_url, self.account_sid
        );
        let mut form = vec![("From", self.from.clone()), ("To", to.to_string())];
        match template {
            Some(sid) => {
                form.push(("ContentSid", sid.to_string()));
                form.push((
                    "ContentVariables",
                    serde_json::json!({ "1": body }).to_string(),
                ));
            }
            None => {
                form.push(("Body", body.to_string()));
                if let Some(m) = media {
                    form.push(("MediaUrl", m.to_string()));
                }
            }
        }
        let attempt = || async {
            {
                let _in_line = self.queue.lock().await;
                self.limiter.until_ready().await;
            }
            let res = self
                .http
                .post(&url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
                .form(&form)
                .send()
                .await
                .map_err(Undelivered::Failed)?;
            let status = res.status();
            if status.is_success() {
                return Ok(());
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                return Err(Undelivered::Later(
                    status,
                    retry::retry_after(res.headers()),
                ));
            }
            let text = res.text().await.unwrap_or_default();
            Err(Undelivered::Refused(status, text))
        };
        let sent = attempt
            .retry(retry::backoff(Duration::from_millis(200), 6))
            .when(|e| !matches!(e, Undelivered::Refused(..)))
            .adjust(|e, next| match e {
                Undelivered::Later(_, asked) => retry::pause(*asked, next),
                _ => next,
            })
            .notify(|e, pause| {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "sending to Twilio failed; retrying")
            })
            .await;
        match sent {
            Ok(()) => {
                metrics::counter!("zhilego_bot_messages_sent_total", "channel" => "whatsapp")
                    .increment(1);
                Ok(())
            }
            Err(Undelivered::Refused(status, text)) => {
                anyhow::bail!("Twilio refused the message: {status} {text}")
            }
            Err(e) => anyhow::bail!("Twilio kept refusing the message: {e}"),
        }
    }
}

/// Why Twilio did not take a message.
#[derive(Debug, thiserror::Error)]
enum Undelivered {
    /// 429 or 5xx, perhaps with the wait Twilio asks for (`Retry-After`): try again.
    #[error("HTTP {0}")]
    Later(reqwest::StatusCode, Option<Duration>),
    /// Nothing came back: try again.
    #[error("{0}")]
    Failed(reqwest::Error),
    /// Twilio said no (4xx): final.
    #[error("HTTP {0}: {1}")]
    Refused(reqwest::StatusCode, String),
}

/// `POST /whatsapp/webhook/`: a message from Twilio, checked by its signature.
#[utoipa::path(post, path = "/whatsapp/webhook/", tag = "webhooks", operation_id = "whatsapp_webhook",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's message fields (`From`, `Body`, `MessageSid`, …)"),
    responses((status = 200, content_type = "text/xml", body = String, description = "An empty TwiML `<Response>`"),
        (status = 403, body = crate::error::Problem, description = "`forbidden`: the Twilio signature is missing or wrong"),
        (status = 404, body = crate::error::Problem, description = "`bot_not_configured`: the WhatsApp bot is off here"),
        (status = 503, body = crate::error::Problem, description = "`bot_failed`: not handled now; Twilio sends it again")),
    security(("twilio_signature" = [])))]
#[tracing::instrument(skip_all)]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let Some(whatsapp) = &state.whatsapp else {
        return bot_off("WhatsApp");
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let received = format!("{scheme}://{host}{uri}");
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    if !whatsapp.signed(uri.path(), &received, &params, signature) {
        metrics::counter!("zhilego_bot_webhooks_refused_total", "channel" => "whatsapp")
            .increment(1);
        return ApiError::forbidden("the Twilio signature is missing or wrong").into_response();
    }
    match whatsapp.handle(&state.chats, &params).await {
        Ok(()) => (
            [(header::CONTENT_TYPE, "text/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a WhatsApp message failed; Twilio will retry");
            ApiError::unavailable("bot_failed", "the message could not be handled now", 1)
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_signatures_match_the_documented_example() {
        // Twilio's documented example (auth token 12345).
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
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn numbers_pick_from_the_last_menu_and_words_are_commands() {
        let menu = vec!["city:Almaty".to_string(), "city:Astana".to_string()];
        assert_eq!(
            parse_body("2", &menu),
            Input::Choice(bots::Choice::City("Astana".into()))
        );
        assert_eq!(parse_body("3", &menu), Input::Text("3".into()));
        assert_eq!(parse_body("Старт", &menu), Input::Command(Command::Start));
        assert_eq!(
            parse_body("/cancel", &menu),
            Input::Command(Command::Cancel)
        );
        assert_eq!(parse_body("Шымкент", &menu), Input::Text("Шымкент".into()));
    }
}
