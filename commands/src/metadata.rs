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
        m
    }
}
