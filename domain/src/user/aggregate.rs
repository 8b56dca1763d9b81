use crate::actor::Role;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    Ru,
    Kk,
    En,
}

impl Language {
    /// The ISO 639-1 code, as stored and sent (`ru`, `kk`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Language::Ru => "ru",
            Language::Kk => "kk",
            Language::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "ru" => Some(Language::Ru),
            "kk" => Some(Language::Kk),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

/// A phone number in E.164 form (`+77011234567`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts `+` and 8–15 digits, ignoring spaces, dashes and brackets; a Kazakh number
    /// written as `8 7xx …` becomes `+7 7xx …`.
    pub fn parse(raw: &str) -> Result<PhoneNumber, UserError> {
        let cleaned: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let digits = if let Some(rest) = cleaned.strip_prefix('+') {
            rest.to_string()
        } else if cleaned.len() == 11 && cleaned.starts_with('8') {
            format!("7{}", &cleaned[1..])
        } else {
            return Err(UserError::Phone);
        };
        if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(UserError::Phone);
        }
        Ok(PhoneNumber(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = UserError;
    fn try_from(s: String) -> Result<Self, UserError> {
        PhoneNumber::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

/// A person's name as they give it: 1 to 100 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<PersonName, UserError> {
        let name = raw.trim();
        let len = name.chars().count();
        if len == 0 || len > 100 || name.chars().any(char::is_control) {
            return Err(UserError::Name);
        }
        Ok(PersonName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Personal data as events carry it: encrypted with the user's own key (outside the domain),
/// so that destroying the key erases it while the history stays replayable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(pub String);

#[derive(Debug, Clone)]
pub enum UserCommand {
    /// `None` leaves a field as it is.
    UpdateProfile {
        user_id: Uuid,
        name: Option<Sealed>,
        phone: Option<Sealed>,
        language: Option<Language>,
    },
    /// Forget the user's personal data (their key is destroyed alongside).
    ErasePersonalData { user_id: Uuid },
    /// An admin's action on the account (role, block, API key); see [`super::admin`].
    Admin(super::admin::AdminCommand),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    ProfileUpdated {
        user_id: Uuid,
        name: Option<Sealed>,
        phone: Option<Sealed>,
        language: Language,
    },
    PersonalDataErased {
        user_id: Uuid,
    },
    /// An admin gave the user another role; `by` is the admin.
    RoleChanged {
        user_id: Uuid,
        role: Role,
        reason: String,
        by: Uuid,
    },
    /// An admin blocked the account: its tokens and API keys are refused from now on.
    UserBlocked {
        user_id: Uuid,
        reason: String,
        by: Uuid,
    },
    UserUnblocked {
        user_id: Uuid,
        reason: String,
        by: Uuid,
    },
    /// An API key for a service client: the client is a user of its own (`user_id` is the key
    /// id). Only the SHA-256 of the key is recorded, never the key.
    ApiKeyIssued {
        user_id: Uuid,
        name: String,
        role: Role,
        /// The listings the key may act on; `None`: all the role may.
        listing_ids: Option<Vec<Uuid>>,
        key_hash: String,
        reason: String,
        by: Uuid,
    },
    ApiKeyRevoked {
        user_id: Uuid,
        reason: String,
        by: Uuid,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::ProfileUpdated { .. } => "ProfileUpdated",
            UserEvent::PersonalDataErased { .. } => "PersonalDataErased",
            UserEvent::RoleChanged { .. } => "RoleChanged",
            UserEvent::UserBlocked { .. } => "UserBlocked",
            UserEvent::UserUnblocked { .. } => "UserUnblocked",
            UserEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            UserEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::version_of("User", &self.event_type())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    #[error("phone must be an international number such as +77011234567")]
    Phone,
    #[error("name must be 1 to 100 characters")]
    Name,
    #[error("reason must be 1 to 500 characters")]
    Reason,
    #[error("the role {0} cannot be given")]
    RoleNotGiven(&'static str),
    #[error("an admin cannot block or demote themselves")]
    OwnAccount,
    #[error("this API key already exists")]
    KeyExists,
    #[error("no such API key")]
    NoSuchKey,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Option<Uuid>,
    pub name: Option<Sealed>,
    pub phone: Option<Sealed>,
    pub language: Language,
    /// The personal data was erased (and nothing new given since).
    pub erased: bool,
    /// The role an admin gave, overriding the one in the user's tokens.
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub blocked: bool,
    /// Set when the user is a service client's API key.
    #[serde(default)]
    pub api_key: Option<super::admin::ApiKeyState>,
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UserCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), UserError> {
        match command {
            UserCommand::UpdateProfile {
                user_id,
                name,
                phone,
                language,
            } => {
                let new_language = language.unwrap_or(self.language);
                if self.id.is_some()
                    && name.is_none()
                    && phone.is_none()
                    && new_language == self.language
                {
                    return Ok(());
                }
                let event = UserEvent::ProfileUpdated {
                    user_id,
                    name: name.or_else(|| self.name.clone()),
                    phone: phone.or_else(|| self.phone.clone()),
                    language: new_language,
                };
                sink.write(event, self).await;
            }
            UserCommand::ErasePersonalData { user_id } => {
                if self.erased && self.name.is_none() && self.phone.is_none() {
                    return Ok(());
                }
                sink.write(UserEvent::PersonalDataErased { user_id }, self)
                    .await;
            }
            UserCommand::Admin(command) => {
                if let Some(event) = super::admin::decide(self, command)? {
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::ProfileUpdated {
                user_id,
                name,
                phone,
                language,
            } => {
                self.id = Some(user_id);
                self.name = name;
                self.phone = phone;
                self.language = language;
                self.erased = false;
            }
            UserEvent::PersonalDataErased { user_id } => {
                self.id = Some(user_id);
                self.name = None;
                self.phone = None;
                self.erased = true;
            }
            other => super::admin::apply(self, other),
        }
    }
}
