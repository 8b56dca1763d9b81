//! The story of the fixture, scene by scene; each names the events it adds.
use super::script::*;
use crate::helpers::*;
use domain::Role;
use serde_json::json;
use std::time::Duration;

/// How many events listing A passes, so the store keeps a Listing snapshot (one every 50).
const BUSY_LISTING_EVENTS: usize = 56;

impl Script<'_> {
    /// ListingCreated, ListingUpdated, ListingStatusChanged (paused, active, archived),
    /// AccessUpdated, DatesBlocked, DatesUnblocked.
    pub(super) async fn listings_and_calendars(&mut self) {
        let a = self
            .listing(HOST_A, json!({"cancellation_policy": "moderate"}))
            .await;
        self.patch_listing(
            a,
            HOST_A,
            json!({"title": "Светлая квартира у парка", "nightly_price_kzt": 22000}),
        )
        .await;
        self.set_access(a, HOST_A, "Key box left of the door", "4821#")
            .await;
        let b = self
            .listing(
                HOST_B,
                json!({
                    "title": "Loft on Mangilik El",
                    "city": "Astana",
                    "address": "Mangilik El 55, apt 12",
                    "location": {"lat": 51.0906, "lon": 71.4188},
                    "cancellation_policy": "flexible",
                    "nightly_price_kzt": 30000,
                    "weekday_prices": [{"weekday": 5, "nightly_price_kzt": 36000},
                                       {"weekday": 6, "nightly_price_kzt": 36000}],
                    "range_prices": [{"from": "2028-10-20", "to": "2028-10-25",
                                      "nightly_price_kzt": 45000}],
                    "amenities": ["wifi", "parking", "washer"]
                }),
            )
            .await;
        self.patch_listing(b, HOST_B, json!({"status": "paused"}))
            .await;
        self.patch_listing(b, HOST_B, json!({"status": "active"}))
            .await;
        self.set_access(b, HOST_B, "Concierge on the ground floor", "0707")
            .await;
        let c = self
            .listing(
                HOST_B,
                json!({
                    "title": "Дом с садом",
                    "city": "Shymkent",
                    "address": "Tauke Khan 3",
                    "location": {"lat": 42.3155, "lon": 69.5869},
                    "cancellation_policy": "strict",
                    "min_nights": 2,
                    "max_guests": 6
                }),
            )
            .await;
        self.block(c, HOST_B, "2028-10-01", "2028-10-08", "family visit")
            .await;
        self.patch_listing(c, HOST_B, json!({"status": "paused"}))
            .await;
        let d = self
            .listing(HOST_A, json!({"title": "Studio by the bazaar"}))
            .await;
        self.patch_listing(d, HOST_A, json!({"status": "archived"}))
            .await;
        // Listing A's calendar: one block kept, one removed.
        self.block(a, HOST_A, "2028-11-20", "2028-11-23", "repairs")
            .await;
        let gone = self
            .block(a, HOST_A, "2028-11-10", "2028-11-12", "cleaning")
            .await;
        self.unblock(a, HOST_A, gone).await;
    }

    /// The stays: paid and completed (reviewed), cancelled before and after paying, expired
    /// and paid late (confirmed `late: true`, or refunded when the nights were gone), paid and
    /// partly refunded by an admin.
    pub(super) async fn stays(&mut self) {
        let [a, b, ..] = self.cast.listings[..] else {
            panic!("listings first")
        };
        let [g1, g2, g3, g4, g5, g6] = GUESTS;

        // Paid on Kaspi's page, checked in, completed, reviewed.
        let s1 = self.book(g1, a, "2028-09-01", "2028-09-04").await;
        let p1 = self.start_payment(g1, s1).await;
        self.pay_on_page(&p1).await;
        self.wait_booking(s1, "confirmed").await;
        self.stay_through(s1, "2028-09-01", "2028-09-04").await;
        self.review(g1, s1, 5, "Чисто и уютно, хозяин на связи")
            .await;

        // Held with a payment link, cancelled by the guest: the link expires.
        let s2 = self.book(g2, a, "2028-09-10", "2028-09-12").await;
        self.start_payment(g2, s2).await;
        self.cancel(Role::Guest, g2, s2, "plans changed").await;

        // Paid, then cancelled by the guest: refunded per the policy.
        let s3 = self.book(g3, a, "2028-09-15", "2028-09-17").await;
        let p3 = self.start_payment(g3, s3).await;
        self.pay_on_page(&p3).await;
        self.wait_booking(s3, "confirmed").await;
        self.cancel(Role::Guest, g3, s3, "flight cancelled").await;
        self.wait_payment(&p3, "refunded").await;

        // The hold runs out; the money comes late while the nights are free: confirmed late.
        let s4 = self.book(g4, a, "2028-09-20", "2028-09-23").await;
        let p4 = self.start_payment(g4, s4).await;
        self.expire(s4, a).await;
        let total = p4["amount_kzt"].as_i64().unwrap();
        let answer = self.notify("pay", "fixture-late-1", &p4, total).await;
        assert_eq!(answer["result"], 0, "{answer}");
        self.wait_booking(s4, "confirmed").await;
        self.stay_through(s4, "2028-09-20", "2028-09-23").await;

        // The hold runs out, someone else takes the nights, then the money comes: refunded.
        let s5 = self.book(g5, a, "2028-10-01", "2028-10-03").await;
        let p5 = self.start_payment(g5, s5).await;
        self.expire(s5, a).await;
        let s6 = self.book(g6, a, "2028-10-02", "2028-10-05").await;
        let p6 = self.start_payment(g6, s6).await;
        assert!(self.sandbox().pay(kaspi_id(&p5)).await);
        self.wait_payment(&p5, "refunded").await;
        assert_eq!(self.booking_status(s5).await, "expired");

        // Kaspi's callback is lost; reconciliation finds the money. The host then cancels
        // (everything goes back).
        self.sandbox().set_faults(kaspi_sandbox::Faults {
            drop_callbacks: true,
            ..kaspi_sandbox::Faults::default()
        });
        assert!(self.sandbox().pay(kaspi_id(&p6)).await);
        self.sandbox().set_faults(kaspi_sandbox::Faults::default());
        let payment6 = p6["payment_id"].as_str().unwrap().parse().unwrap();
        let found = self.app.state.commands.reconcile(payment6).await.unwrap();
        assert_eq!(found.action, "paid", "{found:?}");
        self.wait_booking(s6, "confirmed").await;
        self.cancel(Role::Host, HOST_A, s6, "the flat is flooded")
            .await;
        self.wait_payment(&p6, "refunded").await;

        // Paid on the Astana loft over a priced weekend; an admin returns part of it.
        let s7 = self.book(g3, b, "2028-10-20", "2028-10-23").await;
        let p7 = self.start_payment(g3, s7).await;
        self.pay_on_page(&p7).await;
        self.wait_booking(s7, "confirmed").await;
        self.admin_refund(&p7, 10_000, "fixture-goodwill").await;
        self.stay_through(s7, "2028-10-20", "2028-10-23").await;
        self.review(g3, s7, 4, "").await;
    }

    /// A refused sum (PaymentAmountMismatched), a payment Kaspi reports failed
    /// (PaymentFailed), and a booking whose second step the store refused (DatesReleased
    /// `compensated`). Also fills listing A past its first snapshot.
    pub(super) async fn payments_that_go_wrong(&mut self) {
        let a = self.cast.listings[0];
        let [g1, g2, ..] = GUESTS;

        // A short sum is refused and recorded; the right sum then pays.
        let s8 = self.book(g1, a, "2028-10-10", "2028-10-12").await;
        let p8 = self.start_payment(g1, s8).await;
        let total = p8["amount_kzt"].as_i64().unwrap();
        let refused = self
            .notify("pay", "fixture-short-1", &p8, total - 500)
            .await;
        assert_eq!(refused["result"], 5, "{refused}");
        let paid = self.notify("pay", "fixture-pay-1", &p8, total).await;
        assert_eq!(paid["result"], 0, "{paid}");
        self.wait_booking(s8, "confirmed").await;
        self.stay_through(s8, "2028-10-10", "2028-10-12").await;

        // The guest pays, but the biller's check is answered "account not found" (a callback
        // misrouted to another biller): Kaspi gives the money back and reports the payment
        // `Error`; reconciliation records the failure. The guest then cancels.
        let s9 = self.book(g2, a, "2028-10-14", "2028-10-16").await;
        let p9 = self.start_payment(g2, s9).await;
        let elsewhere = other_biller().await;
        self.sandbox().set_callback(kaspi_sandbox::Callback {
            url: elsewhere,
            credentials: None,
        });
        assert!(self.sandbox().pay(kaspi_id(&p9)).await);
        let mut reversed = false;
        for _ in 0..100 {
            if self.sandbox().status(kaspi_id(&p9)) == Some("Error") {
                reversed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(reversed, "the sandbox never reversed the payment");
        self.sandbox().set_callback(kaspi_sandbox::Callback {
            url: self.app.url("/kaspi/callback/"),
            credentials: Some((KASPI_USER.into(), KASPI_PASSWORD.into())),
        });
        let payment9 = p9["payment_id"].as_str().unwrap().parse().unwrap();
        let found = self.app.state.commands.reconcile(payment9).await.unwrap();
        assert_eq!(found.action, "failed", "{found:?}");
        self.cancel(Role::Guest, g2, s9, "paid by card instead")
            .await;

        // The store refuses the booking's own event: the reservation is undone.
        self.refuse_bookings(true).await;
        let (status, problem) = self
            .app
            .post(
                "/api/v1/bookings",
                &self.token(Role::Guest, g1),
                &json!({"listing_id": a, "check_in": "2028-11-01",
                        "check_out": "2028-11-03", "guests": 1}),
            )
            .await;
        self.refuse_bookings(false).await;
        assert!(status >= 500, "{status}: {problem}");

        // The host's cleaning days, blocked and freed again, until listing A has a snapshot.
        let mut day = 0;
        while self.events_of("Listing", a).await < BUSY_LISTING_EVENTS {
            let from = date("2028-11-24") + chrono::Duration::days(day % 6);
            let to = from + chrono::Duration::days(1);
            let block = self
                .block(a, HOST_A, &from.to_string(), &to.to_string(), "cleaning")
                .await;
            self.unblock(a, HOST_A, block).await;
            day += 1;
        }
    }

    /// ProfileUpdated (one user twice), PersonalDataErased (through `zhilego user erase`).
    pub(super) async fn users(&mut self) {
        let [g1, g2, g3, ..] = GUESTS;
        self.profile(
            g1,
            json!({"name": "Айгерим Садыкова", "phone": "+77011234567", "language": "kk"}),
        )
        .await;
        self.profile(g1, json!({"language": "en"})).await;
        self.profile(
            g2,
            json!({"name": "Daniyar Abenov", "phone": "+77770001122"}),
        )
        .await;
        self.profile(g3, json!({"name": "Ольга Ким"})).await;
        self.profile(HOST_A, json!({"name": "Marat Host", "language": "ru"}))
            .await;
        let out = tokio::process::Command::new(crate::processes::ZHILEGO)
            .args(["user", "erase", "--id", &g2.to_string()])
            .envs(self.app.storage.env())
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run zhilego user erase");
        assert!(
            out.status.success(),
            "user erase: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A biller that knows no account: answers every notification with result 1.
async fn other_biller() -> String {
    use axum::routing::get;
    let router = axum::Router::new().route(
        "/",
        get(|| async { axum::Json(json!({"result": 1, "comment": "account not found"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}
