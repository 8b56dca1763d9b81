use super::*;
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

type UserTest = TestFramework<User>;

fn user_id() -> Uuid {
    Uuid::from_u128(0x6E57)
}

fn sealed(s: &str) -> Sealed {
    Sealed(s.to_string())
}

fn updated(name: Option<&str>, phone: Option<&str>, language: Language) -> UserEvent {
    UserEvent::ProfileUpdated {
        user_id: user_id(),
        name: name.map(sealed),
        phone: phone.map(sealed),
        language,
    }
}

fn update(name: Option<&str>, phone: Option<&str>, language: Option<Language>) -> UserCommand {
    UserCommand::UpdateProfile {
        user_id: user_id(),
        name: name.map(sealed),
        phone: phone.map(sealed),
        language,
    }
}

#[test]
fn phone_numbers_are_normalised_to_e164() {
    assert_eq!(
        PhoneNumber::parse("+7 701 123 45 67").unwrap().as_str(),
        "+77011234567"
    );
    assert_eq!(
        PhoneNumber::parse("8 (701) 123-45-67").unwrap().as_str(),
        "+77011234567"
    );
    assert_eq!(
        PhoneNumber::parse("+44 20 7946 0958").unwrap().as_str(),
        "+442079460958"
    );
}

#[test]
fn garbage_phone_numbers_are_refused() {
    for bad in [
        "",
        "call me",
        "87011234",
        "+7701abc4567",
        "+1234567",
        "+1234567890123456",
        "7011234567",
    ] {
        assert_eq!(PhoneNumber::parse(bad), Err(UserError::Phone), "{bad}");
    }
}

#[test]
fn names_are_trimmed_and_bounded() {
    assert_eq!(PersonName::parse("  Айгерим ").unwrap().as_str(), "Айгерим");
    assert_eq!(PersonName::parse("   "), Err(UserError::Name));
    assert_eq!(PersonName::parse(&"я".repeat(101)), Err(UserError::Name));
    assert_eq!(PersonName::parse("a\u{0}b"), Err(UserError::Name));
    assert!(PersonName::parse(&"я".repeat(100)).is_ok());
}

#[test]
fn the_first_update_creates_the_profile() {
    UserTest::with(())
        .given_no_previous_events()
        .when(update(Some("n1"), None, None))
        .then_expect_events(vec![updated(Some("n1"), None, Language::Ru)]);
}

#[test]
fn a_first_update_with_nothing_in_it_still_records_the_user() {
    UserTest::with(())
        .given_no_previous_events()
        .when(update(None, None, None))
        .then_expect_events(vec![updated(None, None, Language::Ru)]);
}

#[test]
fn fields_left_out_keep_their_sealed_values() {
    UserTest::with(())
        .given(vec![updated(Some("n1"), Some("p1"), Language::Ru)])
        .when(update(None, Some("p2"), Some(Language::Kk)))
        .then_expect_events(vec![updated(Some("n1"), Some("p2"), Language::Kk)]);
}

#[test]
fn an_update_that_changes_nothing_emits_nothing() {
    UserTest::with(())
        .given(vec![updated(Some("n1"), None, Language::En)])
        .when(update(None, None, Some(Language::En)))
        .then_expect_events(vec![]);
}

#[test]
fn erasure_forgets_the_sealed_data_once() {
    UserTest::with(())
        .given(vec![updated(Some("n1"), Some("p1"), Language::Kk)])
        .when(UserCommand::ErasePersonalData { user_id: user_id() })
        .then_expect_events(vec![UserEvent::PersonalDataErased { user_id: user_id() }]);
    UserTest::with(())
        .given(vec![
            updated(Some("n1"), Some("p1"), Language::Kk),
            UserEvent::PersonalDataErased { user_id: user_id() },
        ])
        .when(UserCommand::ErasePersonalData { user_id: user_id() })
        .then_expect_events(vec![]);
}

#[test]
fn erasure_keeps_the_language_and_a_new_profile_can_follow() {
    let mut user = User::default();
    user.apply(updated(Some("n1"), Some("p1"), Language::Kk));
    user.apply(UserEvent::PersonalDataErased { user_id: user_id() });
    assert_eq!(
        (
            user.name.clone(),
            user.phone.clone(),
            user.language,
            user.erased
        ),
        (None, None, Language::Kk, true)
    );
    user.apply(updated(Some("n2"), None, Language::Kk));
    assert!(!user.erased);
    assert_eq!(user.name, Some(sealed("n2")));
}

#[test]
fn sealed_values_serialize_as_plain_strings() {
    let json = serde_json::to_value(updated(Some("x1:abc"), None, Language::Ru)).unwrap();
    assert_eq!(json["ProfileUpdated"]["name"], "x1:abc");
    assert_eq!(json["ProfileUpdated"]["language"], "ru");
}

mod admin {
    use super::*;
    use crate::actor::Role;
    use crate::user::{AdminCommand, Reason};

    fn admin_id() -> Uuid {
        Uuid::from_u128(0xAD)
    }

    fn reason(s: &str) -> Reason {
        Reason::parse(s).unwrap()
    }

    fn block() -> UserCommand {
        UserCommand::Admin(AdminCommand::Block {
            user_id: user_id(),
            reason: reason("fraud"),
            by: admin_id(),
        })
    }

    fn blocked() -> UserEvent {
        UserEvent::UserBlocked {
            user_id: user_id(),
            reason: "fraud".into(),
            by: admin_id(),
        }
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(Reason::parse("  ").is_err());
        assert!(Reason::parse(&"x".repeat(501)).is_err());
        assert_eq!(Reason::parse(" spam ").unwrap().as_str(), "spam");
    }

    #[test]
    fn blocking_records_the_admin_and_the_reason() {
        UserTest::with(())
            .given_no_previous_events()
            .when(block())
            .then_expect_events(vec![blocked()]);
    }

    #[test]
    fn blocking_a_blocked_user_writes_nothing() {
        UserTest::with(())
            .given(vec![blocked()])
            .when(block())
            .then_expect_events(vec![]);
    }

    #[test]
    fn unblocking_only_a_blocked_user() {
        let unblock = || {
            UserCommand::Admin(AdminCommand::Unblock {
                user_id: user_id(),
                reason: reason("appeal"),
                by: admin_id(),
            })
        };
        UserTest::with(())
            .given_no_previous_events()
            .when(unblock())
            .then_expect_events(vec![]);
        UserTest::with(())
            .given(vec![blocked()])
            .when(unblock())
            .then_expect_events(vec![UserEvent::UserUnblocked {
                user_id: user_id(),
                reason: "appeal".into(),
                by: admin_id(),
            }]);
    }

    #[test]
    fn an_admin_cannot_block_themselves() {
        UserTest::with(())
            .given_no_previous_events()
            .when(UserCommand::Admin(AdminCommand::Block {
                user_id: admin_id(),
                reason: reason("oops"),
                by: admin_id(),
            }))
            .then_expect_error(UserError::OwnAccount);
    }

    #[test]
    fn the_system_role_is_never_given() {
        UserTest::with(())
            .given_no_previous_events()
            .when(UserCommand::Admin(AdminCommand::ChangeRole {
                user_id: user_id(),
                role: Role::System,
                reason: reason("x"),
                by: admin_id(),
            }))
            .then_expect_error(UserError::RoleNotGiven("system"));
    }

    #[test]
    fn a_revoked_key_stays_revoked_and_a_key_is_issued_once() {
        let issued = UserEvent::ApiKeyIssued {
            user_id: user_id(),
            name: "pms".into(),
            role: Role::Analyst,
            listing_ids: None,
            key_hash: "ab".into(),
            reason: "sync".into(),
            by: admin_id(),
        };
        let revoke = || {
            UserCommand::Admin(AdminCommand::RevokeApiKey {
                key_id: user_id(),
                reason: reason("leaked"),
                by: admin_id(),
            })
        };
        UserTest::with(())
            .given(vec![issued.clone()])
            .when(revoke())
            .then_expect_events(vec![UserEvent::ApiKeyRevoked {
                user_id: user_id(),
                reason: "leaked".into(),
                by: admin_id(),
            }]);
        UserTest::with(())
            .given_no_previous_events()
            .when(revoke())
            .then_expect_error(UserError::NoSuchKey);
        UserTest::with(())
            .given(vec![issued])
            .when(UserCommand::Admin(AdminCommand::IssueApiKey {
                key_id: user_id(),
                name: "again".into(),
                role: Role::Host,
                listing_ids: None,
                key_hash: "cd".into(),
                reason: reason("x"),
                by: admin_id(),
            }))
            .then_expect_error(UserError::KeyExists);
    }
}
