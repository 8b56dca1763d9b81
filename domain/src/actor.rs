//! Who acts, in which role, through which channel.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Guest,
    Host,
    Admin,
    Analyst,
    Auditor,
    /// Background work of the service itself (hold expiry, process managers).
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Host => "host",
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "guest" => Role::Guest,
            "host" => Role::Host,
            "admin" => Role::Admin,
            "analyst" => Role::Analyst,
            "auditor" => Role::Auditor,
            "system" => Role::System,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Telegram,
    Whatsapp,
    Web,
    Mobile,
    Api,
    System,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Whatsapp => "whatsapp",
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::Api => "api",
            Channel::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Some(match s {
            "telegram" => Channel::Telegram,
            "whatsapp" => Channel::Whatsapp,
            "web" => Channel::Web,
            "mobile" => Channel::Mobile,
            "api" => Channel::Api,
            "system" => Channel::System,
            _ => return None,
        })
    }
}

/// The principal behind a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Uuid,
    pub role: Role,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            user_id: Uuid::nil(),
            role: Role::System,
        }
    }
}
