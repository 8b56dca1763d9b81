//! The definitions of the figures, word for word as in docs/analytics.md: every JSON answer
//! carries them in `definitions`, every CSV answer in its header.

/// `(name, text)` in the order the documentation gives them.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "night",
        "A night is a (listing, date); a stay's nights are `[check_in, check_out)` in Kazakhstan local dates.",
    ),
    (
        "nights_available",
        "Nights available: nights of active listings, less host-blocked nights (report `nights_blocked` too, so the other convention can be computed).",
    ),
    (
        "nights_sold",
        "Nights sold: nights of confirmed, checked-in or completed stays. Held stays are not sold; a cancelled stay stops counting from its cancellation.",
    ),
    ("occupancy", "Occupancy = nights sold / nights available."),
    (
        "revenue",
        "Room revenue is recognised per night of stay (the stay's nightly prices); the cleaning fee separately; refunds on their refund date. Report gross, refunds and net.",
    ),
    (
        "adr_revpar_trevpar",
        "ADR = room revenue / nights sold. RevPAR = room revenue / nights available (= occupancy × ADR). TRevPAR = total revenue / nights available.",
    ),
    (
        "alos_booking_window",
        "ALOS = nights / stays. Booking window = check-in minus confirmation date, as an average and in buckets (0–1, 2–7, 8–30, 31–90, 91+ days).",
    ),
    (
        "cancellation_rate",
        "Cancellation rate = cancellations / (confirmations + cancellations), by event date. Hold expiry rate likewise.",
    ),
    (
        "channel_mix",
        "Channel mix: nights sold and revenue by channel (telegram, whatsapp, web, mobile, api).",
    ),
    (
        "funnel",
        "Funnel by hold date: held → paid → checked in → completed, with expired and cancelled, and the conversion at each step.",
    ),
    (
        "pickup",
        "Pickup: for a range of stay dates, nights on the books as known at instant A versus instant B; pace: the same against the same dates a year earlier.",
    ),
];

/// The definitions as a JSON object `{name: text}`.
pub fn as_json() -> serde_json::Value {
    serde_json::Value::Object(
        DEFINITIONS
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
    )
}
