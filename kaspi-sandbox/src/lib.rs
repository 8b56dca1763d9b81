//! A Kaspi that runs here, over real HTTP, so development, demos and tests run the production
//! client ([`kaspi::KaspiClient`]): the API shapes the client expects, a payment page at each
//! payment link, and the biller-protocol callback to us when the guest pays (first
//! `command=check`, then `command=pay`, as Kaspi's biller does). Tests steer it with
//! [`Faults`] through [`Sandbox::set_faults`]: answer 500, answer slowly, or never call back.
//! There is no HTTP route for faults: whoever reaches the sandbox could otherwise make every
//! payment link fail.
//!
//! Anyone who can reach a payment page can pay it (that is what a sandbox is for), so payment
//! ids are random 63-bit numbers: a page cannot be found by counting from one's own.
//!
//! Its own crate because it is an axum server: the command side, which only pays through
//! [`kaspi::PaymentProvider`], builds without it. `zhilego serve` mounts [`Sandbox::router`]
//! under `/kaspi-sandbox` in sandbox mode.
#![forbid(unsafe_code)]

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use kaspi::biller::{Command, ResultCode};
use kaspi::retry::{self, Retryable};
use kaspi::API_PREFIX;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Misbehaviour on request, for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// The next this many API requests answer 500.
    #[serde(default)]
    pub fail_requests: u32,
    /// Every API answer waits this long.
    #[serde(default)]
    pub delay_ms: u64,
    /// Payments succeed but no callback is sent (reconciliation must find them).
    #[serde(default)]
    pub drop_callbacks: bool,
}

/// Where the sandbox sends its callbacks.
#[derive(Clone, Debug)]
pub struct Callback {
    pub url: String,
    /// HTTP basic credentials, as configured for the callback endpoint.
    pub credentials: Option<(String, String)>,
}

#[derive(Clone, Debug)]
struct Payment {
    id: i64,
    external_id: String,
    amount: i64,
    paid: bool,
    /// We refused the `pay` notification (final answer other than 0): Kaspi gives the money
    /// back to the payer and reports the payment as `Error`.
    reversed: bool,
    expires: DateTime<Utc>,
    returned: i64,
}

#[derive(Default)]
struct Book {
    payments: HashMap<i64, Payment>,
    by_external: HashMap<String, i64>,
    /// Returns by their external id: (operation id, amount).
    returns: HashMap<String, (i64, i64)>,
}

struct Inner {
    api_key: String,
    /// Base URL of the payment pages (where the sandbox is reachable).
    public_url: Mutex<String>,
    callback: Mutex<Option<Callback>>,
    book: Mutex<Book>,
    faults: Mutex<Faults>,
    http: reqwest::Client,
    link_lifetime: Duration,
    /// Log every payment link at warn level (a sandbox allowed in production mode).
    loud: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct Sandbox(Arc<Inner>);

fn envelope(data: Value) -> Json<Value> {
    Json(json!({"StatusCode": 0, "Message": "OK", "Data": data}))
}

fn refusal(code: i64, message: &str) -> Json<Value> {
    Json(json!({"StatusCode": code, "Message": message}))
}

impl Sandbox {
    pub fn new(api_key: impl Into<String>) -> Self {
        Sandbox(Arc::new(Inner {
            api_key: api_key.into(),
            public_url: Mutex::new(String::new()),
            callback: Mutex::new(None),
            book: Mutex::new(Book::default()),
            faults: Mutex::new(Faults::default()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            link_lifetime: Duration::minutes(20),
            loud: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Says at warn level, for every payment link made, that it is the sandbox's (no money
    /// moves): for a sandbox run where real guests may see it.
    pub fn warn_on_every_link(&self) {
        self.0
            .loud
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Where payment pages are reached (links are `<public_url>/pay/<id>`).
    pub fn set_public_url(&self, url: impl Into<String>) {
        *self.0.public_url.lock().unwrap() = url.into().trim_end_matches('/').to_string();
    }

    pub fn set_callback(&self, callback: Callback) {
        *self.0.callback.lock().unwrap() = Some(callback);
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.0.faults.lock().unwrap() = faults;
    }

    /// The sandbox's routes: the API under [`API_PREFIX`] and payment pages under `/pay`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(&format!("{API_PREFIX}/qr/create-link"), post(create_link))
            .route(&format!("{API_PREFIX}/payments/status/{{id}}"), get(status))
            .route(&format!("{API_PREFIX}/payments/details"), get(details))
            .route(&format!("{API_PREFIX}/payments/return"), post(refund))
            .route("/pay/{id}", get(page).post(pay))
            .with_state(self.clone())
    }

    /// Serves the sandbox on `listener` until the task is dropped; sets the public URL to the
    /// listener's address.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        self.set_public_url(format!("http://{addr}"));
        axum::serve(listener, self.router()).await
    }

    /// Pays payment `id` as a guest pressing Pay would. Returns whether it was payable.
    pub async fn pay(&self, id: i64) -> bool {
        let paid = {
            let mut book = self.0.book.lock().unwrap();
            match book.payments.get_mut(&id) {
                Some(p) if !p.paid && Utc::now() < p.expires => {
                    p.paid = true;
                    Some(p.clone())
                }
                _ => None,
            }
        };
        let Some(payment) = paid else { return false };
        let drop_callback = self.0.faults.lock().unwrap().drop_callbacks;
        let callback = self.0.callback.lock().unwrap().clone();
        if let (false, Some(callback)) = (drop_callback, callback) {
            let sandbox = self.clone();
            tokio::spawn(async move {
                let result = notify(&sandbox.0.http, &callback, &payment).await;
                if result.is_some_and(|r| r != ResultCode::Ok && !r.is_retried_by_kaspi()) {
                    tracing::info!(
                        id = payment.id,
                        ?result,
                        "sandbox: pay refused; money goes back to the payer"
                    );
                    if let Some(p) = sandbox.0.book.lock().unwrap().payments.get_mut(&payment.id) {
                        p.reversed = true;
                    }
                }
            });
        }
        true
    }

    /// Kaspi's view of payment `id`: `Wait`, `Processed`, `Error` or `Expired`.
    pub fn status(&self, id: i64) -> Option<&'static str> {
        self.0.book.lock().unwrap().payments.get(&id).map(status_of)
    }

    /// How much of payment `id` was returned.
    pub fn returned(&self, id: i64) -> Option<i64> {
        self.0
            .book
            .lock()
            .unwrap()
            .payments
            .get(&id)
            .map(|p| p.returned)
    }

    /// How many payments were created (each external id makes one).
    pub fn payment_count(&self) -> usize {
        self.0.book.lock().unwrap().payments.len()
    }

    /// Fails, delays or passes an API request, as the faults say; checks the API key.
    async fn admit(&self, headers: &HeaderMap) -> Result<(), Response> {
        let (fail, delay) = {
            let mut faults = self.0.faults.lock().unwrap();
            let fail = faults.fail_requests > 0;
            if fail {
                faults.fail_requests -= 1;
            }
            (fail, faults.delay_ms)
        };
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if fail {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "sandbox: failing as told",
            )
                .into_response());
        }
        let key = headers.get("Api-Key").and_then(|v| v.to_str().ok());
        if key != Some(self.0.api_key.as_str()) {
            return Err((StatusCode::UNAUTHORIZED, "sandbox: wrong Api-Key").into_response());
        }
        Ok(())
    }
}

/// The biller protocol: `check`, then `pay` if the check says 0; each tried up to 5 times
/// (`kaspi::retry`: backoff with jitter, or the `Retry-After` our endpoint asks for) while it
/// fails or we answer 4 or 5. Gives `pay`'s final result, if one came.
async fn notify(http: &reqwest::Client, callback: &Callback, p: &Payment) -> Option<ResultCode> {
    // Distinct from the payment id, as Kaspi's are; a string, since ids use all 63 bits.
    let txn_id = format!("{}7", p.id);
    let txn_date = Utc::now().format("%Y%m%d%H%M%S").to_string();
    for command in [Command::Check, Command::Pay] {
        let call = || notify_once(http, callback, command, &txn_id, &txn_date, p);
        let answered = match call
            .retry(retry::backoff(std::time::Duration::from_millis(200), 5))
            .when(|missed| !matches!(missed, Missed::Unreadable))
            .adjust(|missed, next| match missed {
                Missed::Refused(_, asked) => retry::pause(*asked, next),
                _ => next,
            })
            .notify(|missed, pause| {
                tracing::warn!(
                    command = command.as_str(),
                    problem = %missed,
                    retry_in_ms = pause.as_millis() as u64,
                    "sandbox callback not done"
                )
            })
            .await
        {
            Ok(result) | Err(Missed::Answered(result)) => Some(result),
            Err(Missed::Unreadable | Missed::Refused(..) | Missed::Failed(_)) => None,
        };
        match command {
            Command::Check if answered != Some(ResultCode::Ok) => {
                tracing::warn!(
                    ?answered,
                    "sandbox: the check did not pass; no pay callback"
                );
                // Kaspi does not take money for an account the biller refused.
                return answered.filter(|r| !r.is_retried_by_kaspi());
            }
            Command::Check => {}
            Command::Pay => return answered,
        }
    }
    None
}

/// Why one callback gave no final result.
#[derive(Debug)]
enum Missed {
    /// We answered 4 or 5: Kaspi asks again.
    Answered(ResultCode),
    /// An answer that is not the biller's (not retried: it may have been acted on).
    Unreadable,
    /// An HTTP error status, with the wait our endpoint asked for.
    Refused(StatusCode, Option<std::time::Duration>),
    /// No answer at all.
    Failed(reqwest::Error),
}

impl std::fmt::Display for Missed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missed::Answered(r) => write!(f, "answered {}", r.code()),
            Missed::Unreadable => f.write_str("an unreadable answer"),
            Missed::Refused(status, _) => write!(f, "HTTP {status}"),
            Missed::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// One `check` or `pay` callback.
async fn notify_once(
    http: &reqwest::Client,
    callback: &Callback,
    command: Command,
    txn_id: &str,
    txn_date: &str,
    p: &Payment,
) -> Result<ResultCode, Missed> {
    /// The part of our answer Kaspi acts on.
    #[derive(Deserialize)]
    struct Reply {
        result: ResultCode,
    }
    let mut request = http.get(&callback.url).query(&[
        ("command", command.as_str()),
        ("txn_id", txn_id),
        ("account", p.external_id.as_str()),
        ("sum", &p.amount.to_string()),
        ("txn_date", txn_date),
    ]);
    if let Some((user, password)) = &callback.credentials {
        request = request.basic_auth(user, Some(password));
    }
    let res = request.send().await.map_err(Missed::Failed)?;
    if !res.status().is_success() {
        return Err(Missed::Refused(
            res.status(),
            retry::retry_after(res.headers()),
        ));
    }
    match res.json::<Reply>().await {
        Ok(Reply { result }) if result.is_retried_by_kaspi() => Err(Missed::Answered(result)),
        Ok(Reply { result }) => Ok(result),
        Err(_) => Err(Missed::Unreadable),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateLink {
    amount: i64,
    external_id: String,
}

async fn create_link(
    State(s): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<CreateLink>,
) -> Response {
    if let Err(refused) = s.admit(&headers).await {
        return refused;
    }
    if body.amount <= 0 {
        return refusal(-1501, "Amount must be positive").into_response();
    }
    let public = s.0.public_url.lock().unwrap().clone();
    let mut book = s.0.book.lock().unwrap();
    let id = match book.by_external.get(&body.external_id) {
        Some(id) => *id,
        None => {
            let id = fresh_id(|id| book.payments.contains_key(&id));
            if s.0.loud.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    payment_id = id,
                    "KASPI SANDBOX payment link: no money moves, anyone with the link can pay it"
                );
            }
            book.by_external.insert(body.external_id.clone(), id);
            book.payments.insert(
                id,
                Payment {
                    id,
                    external_id: body.external_id,
                    amount: body.amount,
                    paid: false,
                    reversed: false,
                    expires: Utc::now() + s.0.link_lifetime,
                    returned: 0,
                },
            );
            id
        }
    };
    let p = &book.payments[&id];
    envelope(json!({
        "PaymentId": p.id,
        "PaymentLink": format!("{public}/pay/{}", p.id),
        "ExpireDate": p.expires,
    }))
    .into_response()
}

/// A positive random 63-bit id that `taken` does not know: Kaspi's ids never repeat, and
/// these cannot be guessed from another one (a restarted sandbox does not reuse them either).
fn fresh_id(taken: impl Fn(i64) -> bool) -> i64 {
    loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 && !taken(id) {
            return id;
        }
    }
}

fn status_of(p: &Payment) -> &'static str {
    if p.reversed {
        "Error"
    } else if p.paid {
        "Processed"
    } else if Utc::now() >= p.expires {
        "Expired"
    } else {
        "Wait"
    }
}

async fn status(State(s): State<Sandbox>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(refused) = s.admit(&headers).await {
        return refused;
    }
    let book = s.0.book.lock().unwrap();
    match book.payments.get(&id) {
        Some(p) => envelope(json!({"Status": status_of(p)})).into_response(),
        None => refusal(-1601, "Payment not found").into_response(),
    }
}

async fn details(
    State(s): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = s.admit(&headers).await {
        return refused;
    }
    let id: Option<i64> = q.get("QrPaymentId").and_then(|v| v.parse().ok());
    let book = s.0.book.lock().unwrap();
    match id.and_then(|id| book.payments.get(&id)) {
        Some(p) => envelope(json!({
            "QrPaymentId": p.id,
            "TotalAmount": p.amount,
            "AvailableReturnAmount": if p.paid && !p.reversed { p.amount - p.returned } else { 0 },
        }))
        .into_response(),
        None => refusal(-1601, "Payment not found").into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Return {
    qr_payment_id: i64,
    return_amount: i64,
    external_id: String,
}

async fn refund(
    State(s): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Return>,
) -> Response {
    if let Err(refused) = s.admit(&headers).await {
        return refused;
    }
    let mut book = s.0.book.lock().unwrap();
    if let Some((op, _)) = book.returns.get(&body.external_id) {
        return envelope(json!({"ReturnOperationId": op})).into_response();
    }
    let op = fresh_id(|id| book.returns.values().any(|(op, _)| *op == id));
    let Some(p) = book.payments.get_mut(&body.qr_payment_id) else {
        return refusal(-1601, "Payment not found").into_response();
    };
    if !p.paid || p.reversed {
        return refusal(-1602, "Payment is not processed").into_response();
    }
    if body.return_amount <= 0 || body.return_amount > p.amount - p.returned {
        return refusal(-1501, "ReturnAmount exceeds AvailableReturnAmount").into_response();
    }
    p.returned += body.return_amount;
    book.returns
        .insert(body.external_id, (op, body.return_amount));
    envelope(json!({"ReturnOperationId": op})).into_response()
}

async fn page(State(s): State<Sandbox>, Path(id): Path<i64>) -> Response {
    let book = s.0.book.lock().unwrap();
    let Some(p) = book.payments.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>Платёж не найден</h1>".to_string()),
        )
            .into_response();
    };
    let state = status_of(p);
    let action = if state == "Wait" {
        format!(
            r#"<form method="post" action=""><button type="submit">Оплатить {} ₸</button></form>"#,
            p.amount
        )
    } else {
        format!("<p>Статус: {state}</p>")
    };
    Html(format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>Kaspi sandbox</title></head>\
         <body><h1>Kaspi sandbox</h1><p>Платёж №{id} на {} ₸</p>{action}</body></html>",
        p.amount
    ))
    .into_response()
}

async fn pay(State(s): State<Sandbox>, Path(id): Path<i64>) -> Response {
    if s.status(id).is_none() {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>Платёж не найден</h1>".to_string()),
        )
            .into_response();
    }
    if s.pay(id).await {
        Html("<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\"></head><body><h1>Оплачено</h1></body></html>".to_string()).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            Html("<h1>Платёж нельзя оплатить</h1>".to_string()),
        )
            .into_response()
    }
}
