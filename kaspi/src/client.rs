//! The Kaspi QR / remote-payment API as this service calls it. Every answer is
//! `{"StatusCode": 0, "Message": "…", "Data": {…}}`; a non-zero `StatusCode` is Kaspi refusing.
//! The calls themselves are the [`PaymentProvider`] methods.
use crate::provider::PaymentProvider;
use crate::retry::{self, Retryable};
use crate::API_PREFIX;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::Kzt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct KaspiConfig {
    /// The API's base URL (`KASPI_API_URL`; the sandbox's in embedded mode).
    pub api_url: String,
    pub api_key: String,
    /// The registered device (trade point) that takes the payments.
    pub device_token: String,
    pub organization_bin: String,
    /// Per request.
    pub timeout: Duration,
    /// Attempts for a request that failed in transit, with a 5xx or a 429.
    pub attempts: u32,
    /// Kaspi's limit on our requests.
    pub requests_per_second: u32,
}

impl KaspiConfig {
    pub fn new(api_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        KaspiConfig {
            api_url: api_url.into().trim_end_matches('/').to_string(),
            api_key: api_key.into(),
            device_token: "zhilego-device".to_string(),
            organization_bin: "000000000000".to_string(),
            timeout: Duration::from_secs(10),
            attempts: 4,
            requests_per_second: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KaspiError {
    /// Kaspi answered and said no (`StatusCode` ≠ 0, or a 4xx).
    #[error("Kaspi refused: {code} {message}")]
    Refused { code: i64, message: String },
    /// Kaspi did not answer usefully after every attempt (timeouts, 5xx, 429, broken
    /// answers), or asked for a longer wait than `retry::MAX_RETRY_AFTER`.
    #[error("Kaspi is unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        attempts: u32,
        /// What went wrong on the last attempt.
        #[source]
        last: Failure,
    },
    /// The HTTP client could not be set up (no TLS backend, for one).
    #[error("the HTTP client for Kaspi cannot be built: {0}")]
    Client(#[source] reqwest::Error),
}

/// Why one request to Kaspi gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing came back: no connection, a timeout, a reset.
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// Kaspi answered with a server error or 429, perhaps naming a wait (`Retry-After`).
    #[error("HTTP {status}")]
    Status {
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
    },
    /// The body was not the envelope Kaspi sends.
    #[error("unreadable answer: {0}")]
    Unreadable(#[source] reqwest::Error),
    /// `StatusCode` 0 without the `Data` it promises.
    #[error("an answer without Data")]
    NoData,
}

/// A payment link for a guest to pay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentLink {
    pub payment_id: i64,
    pub payment_link: String,
    pub expire_date: DateTime<Utc>,
}

/// Where a payment stands at Kaspi.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Created, not paid yet.
    Wait,
    /// Paid.
    Processed,
    /// Failed.
    Error,
    /// Not paid in time.
    Expired,
    Other(String),
}

impl PaymentStatus {
    pub fn as_str(&self) -> &str {
        match self {
            PaymentStatus::Wait => "Wait",
            PaymentStatus::Processed => "Processed",
            PaymentStatus::Error => "Error",
            PaymentStatus::Expired => "Expired",
            PaymentStatus::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> PaymentStatus {
        match s {
            "Wait" => PaymentStatus::Wait,
            "Processed" => PaymentStatus::Processed,
            "Error" => PaymentStatus::Error,
            "Expired" => PaymentStatus::Expired,
            other => PaymentStatus::Other(other.to_string()),
        }
    }
}

/// What was paid and what can still be returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentDetails {
    pub qr_payment_id: i64,
    pub total_amount: Kzt,
    pub available_return_amount: Kzt,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<T> {
    status_code: i64,
    #[serde(default)]
    message: String,
    data: Option<T>,
}

#[derive(Clone)]
pub struct KaspiClient {
    http: reqwest::Client,
    config: Arc<KaspiConfig>,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl KaspiClient {
    pub fn new(config: KaspiConfig) -> Result<Self, KaspiError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(KaspiError::Client)?;
        let rate = NonZeroU32::new(config.requests_per_second.max(1)).expect("positive");
        Ok(KaspiClient {
            http,
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            config: Arc::new(config),
        })
    }

    /// One API call: waits its turn under the rate limit, retries what failed in transit,
    /// with a 5xx or a 429 (`crate::retry`: 200 ms, 400 ms, 800 ms … with jitter between
    /// attempts, or the `Retry-After` Kaspi asks for), and unwraps the envelope.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, KaspiError> {
        let url = format!("{}{API_PREFIX}{path}", self.config.api_url);
        let attempts = self.config.attempts.max(1);
        let made = AtomicU32::new(0);
        let attempt = || {
            made.fetch_add(1, Ordering::Relaxed);
            self.attempt::<T>(&method, &url, body.as_ref())
        };
        let answer = attempt
            .retry(retry::backoff(Duration::from_millis(200), attempts))
            .when(|outcome| matches!(outcome, Attempt::Failed(_)))
            .adjust(|outcome, next| match outcome {
                Attempt::Failed(failure) => retry::pause(failure.retry_after(), next),
                Attempt::Final(_) => None,
            })
            .notify(|outcome, pause| {
                if let Attempt::Failed(failure) = outcome {
                    tracing::warn!(
                        attempt = made.load(Ordering::Relaxed),
                        error = %failure,
                        path,
                        retry_in_ms = pause.as_millis() as u64,
                        "Kaspi request failed"
                    );
                }
            })
            .await;
        let attempts = made.load(Ordering::Relaxed);
        match answer {
            Ok(data) => Ok(data),
            Err(Attempt::Final(KaspiError::Unavailable { last, .. })) => {
                Err(KaspiError::Unavailable { attempts, last })
            }
            Err(Attempt::Final(e)) => Err(e),
            Err(Attempt::Failed(last)) => {
                tracing::warn!(attempt = attempts, error = %last, path, "Kaspi request failed; giving up");
                Err(KaspiError::Unavailable { attempts, last })
            }
        }
    }

    /// One request, once.
    async fn attempt<T: DeserializeOwned>(
        &self,
        method: &reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, Attempt> {
        self.limiter.until_ready().await;
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("Api-Key", &self.config.api_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let res = request
            .send()
            .await
            .map_err(|e| Attempt::Failed(Failure::Transport(e)))?;
        let status = res.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Attempt::Failed(Failure::Status {
                status,
                retry_after: retry::retry_after(res.headers()),
            }));
        }
        if status.is_client_error() {
            let text = res.text().await.unwrap_or_default();
            return Err(Attempt::Final(KaspiError::Refused {
                code: i64::from(status.as_u16()),
                message: text,
            }));
        }
        match res.json::<Envelope<T>>().await {
            Ok(envelope) if envelope.status_code == 0 => {
                envelope.data.ok_or(Attempt::Final(KaspiError::Unavailable {
                    attempts: 0,
                    last: Failure::NoData,
                }))
            }
            Ok(envelope) => Err(Attempt::Final(KaspiError::Refused {
                code: envelope.status_code,
                message: envelope.message,
            })),
            Err(e) => Err(Attempt::Failed(Failure::Unreadable(e))),
        }
    }
}

/// How one attempt ended when it brought no data.
enum Attempt {
    /// Worth another attempt.
    Failed(Failure),
    /// The answer, for good: Kaspi refused, or answered without data.
    Final(KaspiError),
}

impl Failure {
    /// The wait Kaspi asked for with this failure, if any.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[async_trait]
impl PaymentProvider for KaspiClient {
    async fn create_link(&self, external_id: &str, amount: Kzt) -> Result<PaymentLink, KaspiError> {
        let body = serde_json::json!({
            "OrganizationBin": self.config.organization_bin,
            "DeviceToken": self.config.device_token,
            "Amount": amount,
            "ExternalId": external_id,
        });
        self.call(reqwest::Method::POST, "/qr/create-link", Some(body))
            .await
    }

    async fn status(&self, payment_id: i64) -> Result<PaymentStatus, KaspiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Status {
            status: String,
        }
        let s: Status = self
            .call(
                reqwest::Method::GET,
                &format!("/payments/status/{payment_id}"),
                None,
            )
            .await?;
        Ok(PaymentStatus::parse(&s.status))
    }

    async fn details(&self, payment_id: i64) -> Result<PaymentDetails, KaspiError> {
        self.call(
            reqwest::Method::GET,
            &format!(
                "/payments/details?QrPaymentId={payment_id}&DeviceToken={}",
                self.config.device_token
            ),
            None,
        )
        .await
    }

    async fn refund(
        &self,
        payment_id: i64,
        amount: Kzt,
        external_id: &str,
    ) -> Result<i64, KaspiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Returned {
            return_operation_id: i64,
        }
        let body = serde_json::json!({
            "OrganizationBin": self.config.organization_bin,
            "DeviceToken": self.config.device_token,
            "QrPaymentId": payment_id,
            "ReturnAmount": amount,
            "ExternalId": external_id,
        });
        let r: Returned = self
            .call(reqwest::Method::POST, "/payments/return", Some(body))
            .await?;
        Ok(r.return_operation_id)
    }
}
