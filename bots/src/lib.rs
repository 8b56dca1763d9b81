//! The guest's conversation with ZhilyeGO, channel-agnostic and pure: `(state, input) → (new
//! state, replies, effects)`. No IO: the runtime (in the `zhilego` binary) parses Telegram and
//! WhatsApp messages into [`Input`]s, runs the [`Effect`]s (search, book, pay, …) against the
//! service and feeds their results back as inputs, stores the [`Dialogue`] between messages,
//! and renders each [`Reply`] for its channel (inline keyboards and photo cards in Telegram,
//! numbered menus in WhatsApp).
//!
//! - [`conversation`]: the state machine ([`step`]).
//! - [`texts`]: every sentence in Russian (default), Kazakh and English.
//! - [`calendar`]: the date picker (a month of day buttons).
//! - [`choice`]: what a button stands for ([`Choice`]), encoded into and decoded from the
//!   short string a channel carries.
//!
//! The guest's language, the channels and the limits every booking obeys (longest stay, how
//! far ahead, the rating scale) are the domain's (`domain::user::Language`, `domain::Channel`,
//! `domain::listing`, `domain::booking::RATINGS`); what the service tells a guest on its own is
//! `domain::notice::Notice`, put into words by [`texts::notice`].
#![forbid(unsafe_code)]

pub mod calendar;
pub mod choice;
pub mod conversation;
pub mod texts;

pub use choice::Choice;
pub use conversation::step;

use chrono::NaiveDate;
use domain::user::Language;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A language the guest named, typed or from a button: its code or its name in any of the
/// three (`kk`, `kz`, `қазақша`, `English`, …), in any case.
pub fn language_named(s: &str) -> Option<Language> {
    match s.trim().to_lowercase().as_str() {
        "ru" | "рус" | "русский" => Some(Language::Ru),
        "kk" | "kz" | "қаз" | "қазақша" => Some(Language::Kk),
        "en" | "eng" | "english" => Some(Language::En),
        _ => None,
    }
}

/// The slash commands, valid at any point (WhatsApp guests type the word without the slash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Start,
    Help,
    Lang,
    MyBookings,
    Cancel,
}

/// An apartment as the bot shows it in results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub listing_id: Uuid,
    pub title: String,
    pub city: String,
    pub nightly_price_kzt: i64,
    pub total_kzt: i64,
    pub max_guests: i64,
    /// The first photo's URL, if any.
    pub photo: Option<String>,
    pub rating: Option<f64>,
}

/// A booking as the bot lists it (`/mybookings`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BookingSummary {
    pub booking_id: Uuid,
    pub title: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    /// `held`, `confirmed`, `checked_in`, `completed`, `cancelled`, `expired`.
    pub status: String,
    pub total_kzt: i64,
}

/// What the guest did, normalized by the channel adapter, or what an effect returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    Command(Command),
    /// Free text (a typed city, a typed date `DD.MM` or `DD.MM.YYYY`, a number, …).
    Text(String),
    /// A button pressed: the choice of a [`Button`] of the last reply. WhatsApp adapters map
    /// a typed menu number to the button's choice. See [`Input::button`].
    Choice(Choice),
    /// A button whose data no button of this version carries (a forged callback): taken as a
    /// press of none of the buttons on offer.
    UnknownButton,
    // ----- effect results -----
    /// [`Effect::Search`] found these (possibly none).
    Found(Vec<Offer>),
    /// [`Effect::Book`] held the booking; [`Effect::Pay`] follows.
    Booked {
        booking_id: Uuid,
        total_kzt: i64,
    },
    /// [`Effect::Book`] failed because some night was just taken; the alternatives are a fresh
    /// search for the same stay (possibly empty).
    DatesTaken(Vec<Offer>),
    /// [`Effect::Pay`] made the Kaspi link.
    PaymentLink {
        booking_id: Uuid,
        url: String,
        amount_kzt: i64,
    },
    /// [`Effect::ListBookings`] found these.
    Bookings(Vec<BookingSummary>),
    /// [`Effect::CancelBooking`] cancelled it; what comes back.
    Cancelled {
        booking_id: Uuid,
        refund_kzt: i64,
    },
    /// [`Effect::Review`] recorded the rating.
    Reviewed {
        booking_id: Uuid,
    },
    /// An effect failed; the kind picks the words the guest hears.
    Failed(Failure),
}

impl Input {
    /// A button press as the channel delivered it: the [`Choice`] its data encodes, or
    /// [`Input::UnknownButton`].
    pub fn button(data: &str) -> Input {
        Choice::decode(data).map_or(Input::UnknownButton, Input::Choice)
    }
}

/// Why an effect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// Kaspi or the service is away for a moment.
    Unavailable,
    /// The stay breaks a listing's rule (too many guests, too short, …).
    NotAllowed,
    /// The booking cannot be cancelled any more.
    CannotCancel,
    /// The stay cannot be reviewed (not completed, or already reviewed).
    CannotReview,
}

/// Work for the runtime; its result comes back as an [`Input`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// → [`Input::Found`].
    Search {
        city: String,
        check_in: NaiveDate,
        check_out: NaiveDate,
        guests: u32,
    },
    /// → [`Input::Booked`], [`Input::DatesTaken`] or [`Input::Failed`].
    Book {
        listing_id: Uuid,
        check_in: NaiveDate,
        check_out: NaiveDate,
        guests: u32,
    },
    /// → [`Input::PaymentLink`] or [`Input::Failed`].
    Pay { booking_id: Uuid },
    /// → [`Input::Bookings`].
    ListBookings,
    /// → [`Input::Cancelled`] or [`Input::Failed`].
    CancelBooking { booking_id: Uuid },
    /// → [`Input::Reviewed`] or [`Input::Failed`].
    Review { booking_id: Uuid, rating: u8 },
}

/// A button: what it says and what comes back as [`Input::Choice`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub label: String,
    /// What pressing it means (sent as [`Choice::encode`]).
    pub data: Choice,
    /// A link button (the Kaspi payment page) instead of a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One message to the guest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    /// A photo card (Telegram sends a photo with `text` as its caption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
    /// Rows of buttons (Telegram: an inline keyboard; WhatsApp: a numbered menu).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<Button>>,
}

/// Where the conversation stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum State {
    /// Nothing going on; any message starts over with the city.
    #[default]
    Idle,
    ChoosingCity,
    /// `month`: the first day of the month the picker shows.
    ChoosingCheckIn {
        city: String,
        month: NaiveDate,
    },
    ChoosingCheckOut {
        city: String,
        check_in: NaiveDate,
        month: NaiveDate,
    },
    ChoosingGuests {
        city: String,
        check_in: NaiveDate,
        check_out: NaiveDate,
    },
    /// Waiting for [`Effect::Search`].
    Searching {
        stay: Stay,
    },
    /// Showing results, `page` of 5.
    Browsing {
        stay: Stay,
        offers: Vec<Offer>,
        page: usize,
    },
    Confirming {
        stay: Stay,
        offer: Offer,
    },
    /// Waiting for [`Effect::Book`] (then [`Effect::Pay`]).
    Booking {
        stay: Stay,
        offer: Offer,
    },
    /// The link is out; the notifications tell the guest when it is paid.
    AwaitingPayment {
        booking_id: Uuid,
        url: String,
        amount_kzt: i64,
    },
    /// Waiting for [`Effect::ListBookings`]; `for_cancel`: the guest wants to cancel one.
    ListingBookings {
        for_cancel: bool,
    },
    /// Choosing which booking to cancel.
    ChoosingCancellation {
        bookings: Vec<BookingSummary>,
    },
    /// Asking "really cancel?".
    ConfirmingCancellation {
        booking: BookingSummary,
    },
    /// Waiting for [`Effect::CancelBooking`].
    Cancelling {
        booking_id: Uuid,
    },
    ChoosingLang,
}

/// The search the guest is putting together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stay {
    pub city: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub guests: u32,
}

/// A guest's conversation as stored between messages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dialogue {
    pub state: State,
    pub lang: Language,
}

/// What one step produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub replies: Vec<Reply>,
    /// At most one; the runtime runs it and steps again with its result.
    pub effect: Option<Effect>,
}

/// Cities offered as buttons (anything else may be typed).
pub const CITIES: &[&str] = &["Almaty", "Astana", "Shymkent", "Aktau", "Karaganda"];

/// Results per page.
pub const PAGE_SIZE: usize = 5;

/// Most guests offered as buttons.
pub const MAX_GUEST_BUTTONS: u32 = 6;
