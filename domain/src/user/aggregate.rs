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

#[derive(Debug, Clone)]
pub enum UserCommand {
    UpdateProfile {
        user_id: Uuid,
        name: Option<String>,
        phone: Option<PhoneNumber>,
        language: Option<Language>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    ProfileUpdated {
        user_id: Uuid,
        name: Option<String>,
        phone: Option<PhoneNumber>,
        language: Language,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        "ProfileUpdated".to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    #[error("phone must be an international number such as +77011234567")]
    Phone,
    #[error("name must be 1 to 100 characters")]
    Name,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub phone: Option<PhoneNumber>,
    pub language: Language,
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
        let UserCommand::UpdateProfile {
            user_id,
            name,
            phone,
            language,
        } = command;
        if let Some(n) = &name {
            let len = n.trim().chars().count();
            if len == 0 || len > 100 {
                return Err(UserError::Name);
            }
        }
        let name = name
            .map(|n| n.trim().to_string())
            .or_else(|| self.name.clone());
        let phone = phone.or_else(|| self.phone.clone());
        let language = language.unwrap_or(self.language);
        if self.id.is_some()
            && name == self.name
            && phone == self.phone
            && language == self.language
        {
            return Ok(());
        }
        sink.write(
            UserEvent::ProfileUpdated {
                user_id,
                name,
                phone,
                language,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        let UserEvent::ProfileUpdated {
            user_id,
            name,
            phone,
            language,
        } = event;
        self.id = Some(user_id);
        self.name = name;
        self.phone = phone;
        self.language = language;
    }
}
