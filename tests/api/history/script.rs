//! The scripted workload that wrote `tests/fixtures/history-v1`: every event type the domain
//! has, reached through the real API (and, where the flow waits for the clock or for Kaspi,
//! through the same `Commands` calls the sweeper and the payment keeper make).
//!
//! Stays lie in September–November 2028, near the end of the booking horizon when the fixture
//! was made (2026-12), so the reads of their calendars stay valid for as long as possible.
//! Nothing is left waiting: every booking ends completed, cancelled or expired and every
//! payment settled, so an app started on the fixture, at any date, has nothing to do.
use crate::helpers::*;
use chrono::NaiveDate;
use domain::Role;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// The people of the fixture: fixed ids, so the reads can name them.
pub const HOST_A: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0a01);
pub const HOST_B: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0a02);
pub const ADMIN: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0ad1);
pub const GUESTS: [Uuid; 6] = [
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0601),
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0602),
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0603),
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0604),
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0605),
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0606),
];

/// What the script made, for the fixed list of reads.
#[derive(Default)]
pub struct Cast {
    pub listings: Vec<Uuid>,
    pub bookings: Vec<Uuid>,
    pub payments: Vec<Uuid>,
}

pub fn date(text: &str) -> NaiveDate {
    text.parse().expect("a date")
}

pub(super) struct Script<'a> {
    pub(super) app: &'a TestApp,
    pub(super) cast: Cast,
}

/// Runs the whole workload on `app`.
pub async fn run(app: &TestApp) -> Cast {
    let mut s = Script {
        app,
        cast: Cast::default(),
    };
    s.listings_and_calendars().await;
    s.stays().await;
    s.payments_that_go_wrong().await;
    s.users().await;
    s.cast
}

impl Script<'_> {
    pub(super) fn token(&self, role: Role, sub: Uuid) -> String {
        self.app.token(role, sub)
    }

    pub(super) fn host(&self, host: Uuid) -> String {
        self.token(Role::Host, host)
    }

    pub(super) async fn listing(&mut self, host: Uuid, body: Value) -> Uuid {
        let mut full = listing_body();
        for (k, v) in body.as_object().expect("an object") {
            full[k] = v.clone();
        }
        let (status, l) = self
            .app
            .post("/api/v1/listings", &self.host(host), &full)
            .await;
        assert_eq!(status, 201, "create listing: {l}");
        let id = l["id"].as_str().unwrap().parse().unwrap();
        self.cast.listings.push(id);
        id
    }

    pub(super) async fn patch_listing(&self, listing: Uuid, host: Uuid, body: Value) {
        let (status, l) = self
            .app
            .patch(
                &format!("/api/v1/listings/{listing}"),
                &self.host(host),
                &body,
            )
            .await;
        assert_eq!(status, 200, "patch listing: {l}");
    }

    pub(super) async fn block(
        &self,
        listing: Uuid,
        host: Uuid,
        from: &str,
        to: &str,
        reason: &str,
    ) -> Uuid {
        let (status, b) = self
            .app
            .post(
                &format!("/api/v1/listings/{listing}/blocks"),
                &self.host(host),
                &json!({"from": from, "to": to, "reason": reason}),
            )
            .await;
        assert_eq!(status, 201, "block: {b}");
        b["id"].as_str().unwrap().parse().unwrap()
    }

    pub(super) async fn unblock(&self, listing: Uuid, host: Uuid, block: Uuid) {
        let (status, b) = self
            .app
            .delete(
                &format!("/api/v1/listings/{listing}/blocks/{block}"),
                &self.host(host),
            )
            .await;
        assert!(status == 200 || status == 204, "unblock {status}: {b}");
    }

    /// A guest books `from..to` (dates) on `listing`; returns the booking id.
    pub(super) async fn book(&mut self, guest: Uuid, listing: Uuid, from: &str, to: &str) -> Uuid {
        let (status, b) = self
            .app
            .post(
                "/api/v1/bookings",
                &self.token(Role::Guest, guest),
                &json!({"listing_id": listing, "check_in": from, "check_out": to, "guests": 2}),
            )
            .await;
        assert_eq!(status, 201, "book: {b}");
        let id = b["id"].as_str().unwrap().parse().unwrap();
        self.cast.bookings.push(id);
        id
    }

    /// The guest asks for the payment link; returns the payment as the API shows it.
    pub(super) async fn start_payment(&mut self, guest: Uuid, booking: Uuid) -> Value {
        let (status, p) = self
            .app
            .post(
                &format!("/api/v1/bookings/{booking}/payment"),
                &self.token(Role::Guest, guest),
                &json!({}),
            )
            .await;
        assert_eq!(status, 201, "payment: {p}");
        self.cast
            .payments
            .push(p["payment_id"].as_str().unwrap().parse().unwrap());
        p
    }

    /// The guest opens the sandbox's payment page and presses Pay (Kaspi calls back).
    pub(super) async fn pay_on_page(&self, payment: &Value) {
        let url = payment["payment_url"].as_str().unwrap();
        let res = self.app.client.post(url).send().await.unwrap();
        assert_eq!(res.status(), 200, "payment page");
    }

    /// A biller notification as Kaspi sends it.
    pub(super) async fn notify(
        &self,
        command: &str,
        txn: &str,
        payment: &Value,
        sum: i64,
    ) -> Value {
        let res = self
            .app
            .client
            .get(self.app.url("/kaspi/callback/"))
            .query(&[
                ("command", command),
                ("txn_id", txn),
                ("account", payment["account"].as_str().unwrap()),
                ("sum", &sum.to_string()),
                ("txn_date", "20261201120000"),
            ])
            .basic_auth(KASPI_USER, Some(KASPI_PASSWORD))
            .send()
            .await
            .unwrap();
        status_and_json(res).await.1
    }

    pub(super) async fn booking_status(&self, booking: Uuid) -> String {
        let (status, b) = self
            .app
            .get(
                &format!("/api/v1/bookings/{booking}"),
                Some(&self.token(Role::Admin, ADMIN)),
            )
            .await;
        assert_eq!(status, 200, "{b}");
        b["status"].as_str().unwrap().to_string()
    }

    pub(super) async fn wait_booking(&self, booking: Uuid, want: &str) {
        for _ in 0..200 {
            if self.booking_status(booking).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "booking {booking} never became {want}: {}",
            self.booking_status(booking).await
        );
    }

    pub(super) async fn payment_status(&self, payment: &Value) -> String {
        let id = payment["payment_id"].as_str().unwrap();
        let (status, p) = self
            .app
            .get(
                &format!("/api/v1/payments/{id}"),
                Some(&self.token(Role::Admin, ADMIN)),
            )
            .await;
        assert_eq!(status, 200, "{p}");
        p["status"].as_str().unwrap().to_string()
    }

    pub(super) async fn wait_payment(&self, payment: &Value, want: &str) {
        for _ in 0..200 {
            if self.payment_status(payment).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("payment {payment} never became {want}");
    }

    pub(super) async fn cancel(&self, role: Role, who: Uuid, booking: Uuid, reason: &str) {
        let (status, b) = self
            .app
            .post(
                &format!("/api/v1/bookings/{booking}/cancel"),
                &self.token(role, who),
                &json!({"reason": reason}),
            )
            .await;
        assert_eq!(status, 200, "cancel: {b}");
    }

    /// The sweeper's two steps for a paid stay: checked in on its first day, completed on its
    /// departure day (the dates are handed in, as the sweeper hands in today).
    pub(super) async fn stay_through(&self, booking: Uuid, from: &str, to: &str) {
        let commands = &self.app.state.commands;
        assert!(commands.advance_stay(booking, date(from)).await.unwrap());
        assert!(commands.advance_stay(booking, date(to)).await.unwrap());
    }

    /// The sweeper's step for a hold that ran out (handed a time past the hold).
    pub(super) async fn expire(&self, booking: Uuid, listing: Uuid) {
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        assert!(self
            .app
            .state
            .commands
            .expire_hold(booking, listing, later)
            .await
            .unwrap());
    }

    pub(super) async fn review(&self, guest: Uuid, booking: Uuid, rating: u8, text: &str) {
        let (status, r) = self
            .app
            .post(
                &format!("/api/v1/bookings/{booking}/review"),
                &self.token(Role::Guest, guest),
                &json!({"rating": rating, "text": text}),
            )
            .await;
        assert_eq!(status, 201, "review: {r}");
    }

    pub(super) fn sandbox(&self) -> &kaspi_sandbox::Sandbox {
        self.app.state.kaspi.sandbox.as_ref().expect("sandbox mode")
    }

    pub(super) async fn set_access(
        &self,
        listing: Uuid,
        host: Uuid,
        instructions: &str,
        code: &str,
    ) {
        let (status, a) = self
            .app
            .put(
                &format!("/api/v1/listings/{listing}/access"),
                &self.host(host),
                &json!({"instructions": instructions, "door_code": code}),
            )
            .await;
        assert_eq!(status, 200, "access: {a}");
    }

    /// An admin returns `amount` of a paid payment, once per idempotency key.
    pub(super) async fn admin_refund(&self, payment: &Value, amount: i64, key: &str) {
        let id = payment["payment_id"].as_str().unwrap();
        let res = self
            .app
            .client
            .post(self.app.url(&format!("/api/v1/payments/{id}/refund")))
            .bearer_auth(self.token(Role::Admin, ADMIN))
            .header("Idempotency-Key", key)
            .json(&json!({"amount_kzt": amount}))
            .send()
            .await
            .unwrap();
        let (status, p) = status_and_json(res).await;
        assert_eq!(status, 200, "refund: {p}");
        assert_eq!(p["status"], "partially_refunded", "{p}");
    }

    pub(super) async fn profile(&self, user: Uuid, body: Value) {
        let role = if user == HOST_A || user == HOST_B {
            Role::Host
        } else {
            Role::Guest
        };
        let (status, u) = self
            .app
            .patch("/api/v1/users/me", &self.token(role, user), &body)
            .await;
        assert_eq!(status, 200, "profile: {u}");
    }

    pub(super) async fn events_of(&self, aggregate_type: &str, id: Uuid) -> usize {
        store::history::aggregate_events(&self.app.db, aggregate_type, &id.to_string())
            .await
            .unwrap()
            .len()
    }

    /// A store fault: while on, the store refuses every Booking event (the second step of a
    /// booking fails, so the flow must undo its first).
    pub(super) async fn refuse_bookings(&self, on: bool) {
        let statements: &[&str] = match (&self.app.db, on) {
            (store::Database::Sqlite(_), true) => &[
                "CREATE TRIGGER fixture_refuse_bookings BEFORE INSERT ON events \
                 WHEN NEW.aggregate_type = 'Booking' \
                 BEGIN SELECT RAISE(ABORT, 'the store refuses this booking'); END",
            ],
            (store::Database::Sqlite(_), false) => &["DROP TRIGGER fixture_refuse_bookings"],
            (store::Database::Postgres(_), true) => &[
                "CREATE FUNCTION fixture_refuse_bookings() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'the store refuses this booking'; END $$",
                "CREATE TRIGGER fixture_refuse_bookings BEFORE INSERT ON events FOR EACH ROW \
                 WHEN (NEW.aggregate_type = 'Booking') EXECUTE FUNCTION fixture_refuse_bookings()",
            ],
            (store::Database::Postgres(_), false) => &[
                "DROP TRIGGER fixture_refuse_bookings ON events",
                "DROP FUNCTION fixture_refuse_bookings()",
            ],
        };
        for sql in statements {
            store::with_pool!(&self.app.db, pool => {
                sqlx::query(sql).execute(pool).await.expect("store fault");
            });
        }
    }
}

/// The sandbox's payment id inside a payment link (`…/pay/<id>`).
pub fn kaspi_id(payment: &Value) -> i64 {
    payment["payment_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
