//! A person's profile. Users exist from their first token on; the profile is what they tell us.
mod aggregate;
#[cfg(test)]
mod tests;

pub use aggregate::{Language, PhoneNumber, User, UserCommand, UserError, UserEvent};
