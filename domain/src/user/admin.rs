//! What admins decide about an account: its role, blocking, and the API keys of service
//! clients. Every decision names the admin (`by`) and a reason, so the history says who did
//! what and why (the command's metadata adds the request's correlation id).
use super::aggregate::{User, UserError, UserEvent};
use crate::actor::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest reason an admin may give.
pub const MAX_REASON_CHARS: usize = 500;
/// The longest name of an API key.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// An admin's reason: 1 to 500 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn parse(raw: &str) -> Result<Reason, UserError> {
        let r = raw.trim();
        let len = r.chars().count();
        if len == 0 || len > MAX_REASON_CHARS || r.chars().any(|c| c.is_control() && c != '\n') {
            return Err(UserError::Reason);
        }
        Ok(Reason(r.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A role an admin may give: any but the service's own.
pub fn grantable(role: Role) -> Result<Role, UserError> {
    match role {
        Role::System => Err(UserError::RoleNotGiven("system")),
        r => Ok(r),
    }
}

#[derive(Debug, Clone)]
pub enum AdminCommand {
    ChangeRole {
        user_id: Uuid,
        role: Role,
        reason: Reason,
        by: Uuid,
    },
    Block {
        user_id: Uuid,
        reason: Reason,
        by: Uuid,
    },
    Unblock {
        user_id: Uuid,
        reason: Reason,
        by: Uuid,
    },
    IssueApiKey {
        key_id: Uuid,
        name: String,
        role: Role,
        listing_ids: Option<Vec<Uuid>>,
        key_hash: String,
        reason: Reason,
        by: Uuid,
    },
    RevokeApiKey {
        key_id: Uuid,
        reason: Reason,
        by: Uuid,
    },
}

/// An API key as the User aggregate of its service client holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyState {
    pub name: String,
    pub role: Role,
    pub listing_ids: Option<Vec<Uuid>>,
    pub key_hash: String,
    pub revoked: bool,
}

/// The event an admin command makes, or `None` when the account is already as asked.
pub(super) fn decide(user: &User, command: AdminCommand) -> Result<Option<UserEvent>, UserError> {
    Ok(match command {
        AdminCommand::ChangeRole {
            user_id,
            role,
            reason,
            by,
        } => {
            let role = grantable(role)?;
            if by == user_id && role != Role::Admin {
                return Err(UserError::OwnAccount);
            }
            (user.role != Some(role)).then(|| UserEvent::RoleChanged {
                user_id,
                role,
                reason: reason.into_string(),
                by,
            })
        }
        AdminCommand::Block {
            user_id,
            reason,
            by,
        } => {
            if by == user_id {
                return Err(UserError::OwnAccount);
            }
            (!user.blocked).then(|| UserEvent::UserBlocked {
                user_id,
                reason: reason.into_string(),
                by,
            })
        }
        AdminCommand::Unblock {
            user_id,
            reason,
            by,
        } => user.blocked.then(|| UserEvent::UserUnblocked {
            user_id,
            reason: reason.into_string(),
            by,
        }),
        AdminCommand::IssueApiKey {
            key_id,
            name,
            role,
            listing_ids,
            key_hash,
            reason,
            by,
        } => {
            if user.id.is_some() {
                return Err(UserError::KeyExists);
            }
            let name = name.trim().to_string();
            let len = name.chars().count();
            if len == 0 || len > MAX_KEY_NAME_CHARS || name.chars().any(char::is_control) {
                return Err(UserError::Name);
            }
            Some(UserEvent::ApiKeyIssued {
                user_id: key_id,
                name,
                role: grantable(role)?,
                listing_ids,
                key_hash,
                reason: reason.into_string(),
                by,
            })
        }
        AdminCommand::RevokeApiKey { key_id, reason, by } => match &user.api_key {
            None => return Err(UserError::NoSuchKey),
            Some(k) if k.revoked => None,
            Some(_) => Some(UserEvent::ApiKeyRevoked {
                user_id: key_id,
                reason: reason.into_string(),
                by,
            }),
        },
    })
}

pub(super) fn apply(user: &mut User, event: UserEvent) {
    match event {
        UserEvent::RoleChanged { user_id, role, .. } => {
            user.id = Some(user_id);
            user.role = Some(role);
        }
        UserEvent::UserBlocked { user_id, .. } => {
            user.id = Some(user_id);
            user.blocked = true;
        }
        UserEvent::UserUnblocked { user_id, .. } => {
            user.id = Some(user_id);
            user.blocked = false;
        }
        UserEvent::ApiKeyIssued {
            user_id,
            name,
            role,
            listing_ids,
            key_hash,
            ..
        } => {
            user.id = Some(user_id);
            user.api_key = Some(ApiKeyState {
                name,
                role,
                listing_ids,
                key_hash,
                revoked: false,
            });
        }
        UserEvent::ApiKeyRevoked { user_id, .. } => {
            user.id = Some(user_id);
            if let Some(k) = &mut user.api_key {
                k.revoked = true;
            }
        }
        UserEvent::ProfileUpdated { .. } | UserEvent::PersonalDataErased { .. } => {}
    }
}
