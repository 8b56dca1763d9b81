//! A person's profile. Users exist from their first token on; the profile is what they tell us.
//! Names and phone numbers travel in events only sealed (see [`Sealed`]).
pub mod admin;
mod aggregate;
#[cfg(test)]
mod tests;

pub use admin::{AdminCommand, ApiKeyState, Reason};
pub use aggregate::{
    Language, PersonName, PhoneNumber, Sealed, User, UserCommand, UserError, UserEvent,
};
