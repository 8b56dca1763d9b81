//! A person's profile. Users exist from their first token on; the profile is what they tell us.
//! Names and phone numbers travel in events only sealed (see [`Sealed`]).
mod aggregate;
#[cfg(test)]
mod tests;

pub use aggregate::{
    Language, PersonName, PhoneNumber, Sealed, User, UserCommand, UserError, UserEvent,
};
