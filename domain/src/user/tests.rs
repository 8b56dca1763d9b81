use super::*;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type UserTest = TestFramework<User>;

fn user_id() -> Uuid {
    Uuid::from_u128(0x6E57)
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

fn update(
    name: Option<&str>,
    phone: Option<PhoneNumber>,
    language: Option<Language>,
) -> UserCommand {
    UserCommand::UpdateProfile {
        user_id: user_id(),
        name: name.map(str::to_string),
        phone,
        language,
    }
}

fn profile(name: Option<&str>, phone: Option<PhoneNumber>, language: Language) -> UserEvent {
    UserEvent::ProfileUpdated {
        user_id: user_id(),
        name: name.map(str::to_string),
        phone,
        language,
    }
}

fn aigerim() -> UserEvent {
    profile(Some("Aigerim"), Some(phone("+77011234567")), Language::Kk)
}

// ---------------------------------------------------------------------------------------------
// Phone numbers
// ---------------------------------------------------------------------------------------------

#[test]
fn an_international_number_is_kept_as_is() {
    assert_eq!(phone("+77011234567").as_str(), "+77011234567");
    assert_eq!(phone("+4915112345678").as_str(), "+4915112345678");
}

#[test]
fn spaces_dashes_and_brackets_are_ignored() {
    assert_eq!(phone("+7 (701) 123-45-67").as_str(), "+77011234567");
}

#[test]
fn a_kazakh_number_written_with_8_becomes_plus_7() {
    assert_eq!(phone("8 701 123 45 67").as_str(), "+77011234567");
    assert_eq!(phone("87011234567").as_str(), "+77011234567");
}

#[test]
fn garbage_is_not_a_phone_number() {
    for raw in ["", "hello", "+7701abc4567", "+", "8-701-ABC-45-67"] {
        assert_eq!(PhoneNumber::parse(raw), Err(UserError::Phone), "{raw:?}");
    }
}

#[test]
fn a_number_without_plus_that_is_not_an_8_number_is_refused() {
    assert_eq!(PhoneNumber::parse("77011234567"), Err(UserError::Phone));
    // 8 followed by the wrong number of digits.
    assert_eq!(PhoneNumber::parse("8701123456"), Err(UserError::Phone));
    assert_eq!(PhoneNumber::parse("870112345678"), Err(UserError::Phone));
}

#[test]
fn a_number_has_8_to_15_digits() {
    assert_eq!(PhoneNumber::parse("+1234567"), Err(UserError::Phone));
    assert_eq!(phone("+12345678").as_str(), "+12345678");
    assert_eq!(phone("+123456789012345").as_str(), "+123456789012345");
    assert_eq!(
        PhoneNumber::parse("+1234567890123456"),
        Err(UserError::Phone)
    );
}

#[test]
fn deserializing_a_phone_number_parses_it() {
    let p: PhoneNumber = serde_json::from_value(serde_json::json!("8 (701) 123-45-67")).unwrap();
    assert_eq!(p.as_str(), "+77011234567");
    assert!(serde_json::from_value::<PhoneNumber>(serde_json::json!("call me")).is_err());
}

// ---------------------------------------------------------------------------------------------
// Profile updates
// ---------------------------------------------------------------------------------------------

#[test]
fn the_first_update_records_the_profile() {
    UserTest::with(())
        .given_no_previous_events()
        .when(update(
            Some("Aigerim"),
            Some(phone("+77011234567")),
            Some(Language::Kk),
        ))
        .then_expect_events(vec![aigerim()]);
}

#[test]
fn the_first_update_records_the_user_even_without_fields() {
    UserTest::with(())
        .given_no_previous_events()
        .when(update(None, None, None))
        .then_expect_events(vec![profile(None, None, Language::Ru)]);
}

#[test]
fn a_name_is_stored_trimmed() {
    UserTest::with(())
        .given_no_previous_events()
        .when(update(Some("  Aigerim  "), None, None))
        .then_expect_events(vec![profile(Some("Aigerim"), None, Language::Ru)]);
}

#[test]
fn a_blank_name_is_refused() {
    UserTest::with(())
        .given(vec![aigerim()])
        .when(update(Some("   "), None, None))
        .then_expect_error(UserError::Name);
}

#[test]
fn a_name_may_have_at_most_100_characters() {
    UserTest::with(())
        .given_no_previous_events()
        .when(update(Some(&"Ә".repeat(101)), None, None))
        .then_expect_error(UserError::Name);
    let hundred = "Ә".repeat(100);
    UserTest::with(())
        .given_no_previous_events()
        .when(update(Some(&hundred), None, None))
        .then_expect_events(vec![profile(Some(&hundred), None, Language::Ru)]);
}

#[test]
fn fields_left_out_keep_their_values() {
    UserTest::with(())
        .given(vec![aigerim()])
        .when(update(None, None, Some(Language::En)))
        .then_expect_events(vec![profile(
            Some("Aigerim"),
            Some(phone("+77011234567")),
            Language::En,
        )]);
}

#[test]
fn changing_the_phone_records_the_new_one() {
    UserTest::with(())
        .given(vec![aigerim()])
        .when(update(None, Some(phone("8 777 000 11 22")), None))
        .then_expect_events(vec![profile(
            Some("Aigerim"),
            Some(phone("+77770001122")),
            Language::Kk,
        )]);
}

#[test]
fn an_unchanged_profile_emits_nothing() {
    UserTest::with(())
        .given(vec![aigerim()])
        // Same values, the name padded and the phone written differently.
        .when(update(
            Some(" Aigerim "),
            Some(phone("8 (701) 123-45-67")),
            Some(Language::Kk),
        ))
        .then_expect_events(vec![]);
}
