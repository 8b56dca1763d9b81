//! Metadata stored with every event.
use chrono::{DateTime, Utc};
use domain::{Actor, Channel};
use std::collections::HashMap;
use uuid::Uuid;

/// Who asked for a change, through what, and as part of which larger piece of work.
#[derive(Clone, Debug)]
pub struct CommandMeta {
    pub command_id: Uuid,
    /// Shared by every command and event of one user action (and its log lines).
    pub correlation_id: Uuid,
    /// The command or event that led to this one, if any.
    pub causation_id: Option<Uuid>,
    pub actor: Actor,
    pub channel: Channel,
    pub request_time: DateTime<Utc>,
    /// The correlation id the client sent (`X-Correlation-Id`), kept apart from ours so a
    /// client cannot join its requests to another's work; checked for length and charset at
    /// the edge.
    pub client_correlation_id: Option<String>,
    /// What from outside started this command (kept on the command it started, not on its
    /// follow-ups: the audit's correlation tree shows where work came in).
    pub input: Option<Input>,
}

/// An outside input that starts work, as the audit trail names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub source: InputSource,
    pub id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputSource {
    /// A Telegram update (`update_id`).
    TelegramUpdate,
    /// A WhatsApp message through Twilio (`MessageSid`).
    WhatsappMessage,
    /// A Kaspi biller notification (`txn_id`).
    KaspiTxn,
    /// An API request (the client's `X-Request-Id` / `X-Correlation-Id`, else ours).
    ApiRequest,
}

impl InputSource {
    pub fn as_str(self) -> &'static str {
        match self {
            InputSource::TelegramUpdate => "telegram_update",
            InputSource::WhatsappMessage => "whatsapp_message",
            InputSource::KaspiTxn => "kaspi_txn",
            InputSource::ApiRequest => "api_request",
        }
    }
}

impl CommandMeta {
    pub fn new(actor: Actor, channel: Channel, correlation_id: Uuid) -> Self {
        CommandMeta {
            command_id: Uuid::now_v7(),
            correlation_id,
            causation_id: None,
            actor,
            channel,
            request_time: Utc::now(),
            client_correlation_id: None,
            input: None,
        }
    }

    /// The same metadata, recording the outside input that started the work.
    pub fn with_input(mut self, source: InputSource, id: impl Into<String>) -> Self {
        self.input = Some(Input {
            source,
            id: id.into(),
        });
        self
    }

    /// The same metadata, joining the work of an earlier correlation (a Kaspi notification
    /// continues the booking's).
    pub fn in_correlation(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// Another command started by the same input (the bots' book → pay in one message): same
    /// correlation and input, a new command id.
    pub fn sibling(&self) -> Self {
        CommandMeta {
            command_id: Uuid::now_v7(),
            ..self.clone()
        }
    }

    /// The same metadata, recording the correlation id the client sent.
    pub fn with_client_correlation(mut self, client: Option<String>) -> Self {
        self.client_correlation_id = client;
        self
    }

    /// Metadata for background work of the service itself.
    pub fn system() -> Self {
        CommandMeta::new(Actor::system(), Channel::System, Uuid::now_v7())
    }

    /// A follow-up command caused by this one: same correlation, new command id.
    pub fn follow_up(&self) -> Self {
        CommandMeta {
            command_id: Uuid::now_v7(),
            correlation_id: self.correlation_id,
            causation_id: Some(self.command_id),
            actor: self.actor,
            channel: self.channel,
            request_time: self.request_time,
            client_correlation_id: self.client_correlation_id.clone(),
            input: None,
        }
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::with_capacity(8);
        m.insert("command_id".into(), self.command_id.to_string());
        m.insert("correlation_id".into(), self.correlation_id.to_string());
        if let Some(c) = self.causation_id {
            m.insert("causation_id".into(), c.to_string());
        }
        m.insert("actor".into(), self.actor.user_id.to_string());
        m.insert("role".into(), self.actor.role.as_str().into());
        m.insert("channel".into(), self.channel.as_str().into());
        m.insert("request_time".into(), self.request_time.to_rfc3339());
        if let Some(client) = &self.client_correlation_id {
            m.insert("client_correlation_id".into(), client.clone());
        }
        if let Some(input) = &self.input {
            m.insert("input_source".into(), input.source.as_str().into());
            m.insert("input_id".into(), input.id.clone());
        }
        // The span writing the event (the executor's, inside the request's): the relay and
        // the consumers continue this trace. Absent when traces are off.
        if let Some(traceparent) = store::trace::current() {
            m.insert(store::trace::TRACEPARENT.into(), traceparent);
        }
        m
    }
}
