//! The conversation's effects run against the service: search on the availability index,
//! book and pay, list, cancel and review through [`Commands`](commands::Commands). Every
//! failure is logged with its error before the guest hears the words for it.
use super::Chats;
use bots::{BookingSummary, Effect, Failure, Input, Offer};
use commands::{BookRequest, CommandMeta, FlowError};
use domain::listing::ListingError;
use domain::DateRange;
use projections::{BookingFilter, BookingsProjection, StayQuery};
use uuid::Uuid;

impl Chats {
    pub(super) async fn run(&self, effect: Effect, meta: &CommandMeta) -> Input {
        let started = std::time::Instant::now();
        let name = effect_name(&effect);
        let input = self.run_effect(effect, meta).await;
        metrics::histogram!("zhilego_bot_effect_seconds", "effect" => name)
            .record(started.elapsed().as_secs_f64());
        input
    }

    async fn run_effect(&self, effect: Effect, meta: &CommandMeta) -> Input {
        match effect {
            Effect::Search {
                city,
                check_in,
                check_out,
                guests,
            } => match self.search(&city, check_in, check_out, guests).await {
                Ok(offers) => Input::Found(offers),
                Err(e) => {
                    tracing::warn!(city, error = %e, "a bot search failed");
                    Input::Failed(Failure::Unavailable)
                }
            },
            Effect::Book {
                listing_id,
                check_in,
                check_out,
                guests,
            } => {
                let range = match DateRange::parse(check_in, check_out) {
                    Ok(range) => range,
                    Err(e) => {
                        tracing::info!(%listing_id, %check_in, %check_out, error = %e, "a bot booking asked for no stay");
                        return Input::Failed(Failure::NotAllowed);
                    }
                };
                let request = BookRequest {
                    listing_id,
                    range,
                    guests,
                };
                // A guest tapping "book" again after their payment link failed is given the
                // booking they already hold (`book_or_resume`), not told the nights are taken.
                match self.commands.book_or_resume(request, meta).await {
                    Ok(w) => Input::Booked {
                        booking_id: w.value.id.unwrap_or_default(),
                        total_kzt: w.value.total().0,
                    },
                    Err(FlowError::Listing(ListingError::DatesUnavailable)) => Input::DatesTaken(
                        self.alternatives(listing_id, check_in, check_out, guests)
                            .await,
                    ),
                    Err(
                        e @ (FlowError::Listing(_)
                        | FlowError::Booking(_)
                        | FlowError::TooManyHolds { .. }),
                    ) => {
                        tracing::info!(%listing_id, error = %e, "a bot booking was refused");
                        Input::Failed(Failure::NotAllowed)
                    }
                    Err(e) => {
                        tracing::warn!(%listing_id, error = %e, "a bot booking failed");
                        Input::Failed(Failure::Unavailable)
                    }
                }
            }
            Effect::Pay { booking_id } => match self.commands.start_payment(booking_id, meta).await
            {
                Ok(w) => Input::PaymentLink {
                    booking_id,
                    url: w.value.payment_url.clone().unwrap_or_default(),
                    amount_kzt: w.value.amount_kzt.0,
                },
                Err(e) => {
                    tracing::warn!(%booking_id, error = %e, "a bot payment link failed");
                    Input::Failed(Failure::Unavailable)
                }
            },
            Effect::ListBookings => match self.bookings(meta.actor.user_id).await {
                Ok(list) => Input::Bookings(list),
                Err(e) => {
                    tracing::warn!(guest_id = %meta.actor.user_id, error = %e, "listing a guest's bookings failed");
                    Input::Failed(Failure::Unavailable)
                }
            },
            Effect::CancelBooking { booking_id } => {
                match self
                    .commands
                    .cancel_booking(booking_id, "cancelled in the bot".into(), meta)
                    .await
                {
                    Ok(w) => Input::Cancelled {
                        booking_id,
                        refund_kzt: w.value.refund_kzt.0,
                    },
                    Err(e @ FlowError::Booking(_)) => {
                        tracing::info!(%booking_id, error = %e, "a bot cancellation was refused");
                        Input::Failed(Failure::CannotCancel)
                    }
                    Err(e) => {
                        tracing::warn!(%booking_id, error = %e, "a bot cancellation failed");
                        Input::Failed(Failure::Unavailable)
                    }
                }
            }
            Effect::Review { booking_id, rating } => {
                match self
                    .commands
                    .review_booking(booking_id, rating, String::new(), meta)
                    .await
                {
                    Ok(_) => Input::Reviewed { booking_id },
                    Err(e @ FlowError::Booking(_)) => {
                        tracing::info!(%booking_id, error = %e, "a bot review was refused");
                        Input::Failed(Failure::CannotReview)
                    }
                    Err(e) => {
                        tracing::warn!(%booking_id, error = %e, "a bot review failed");
                        Input::Failed(Failure::Unavailable)
                    }
                }
            }
        }
    }

    /// Other free apartments in the listing's city for the same stay, after it was taken
    /// (none when the listing or the search is away: the guest then picks dates again).
    async fn alternatives(
        &self,
        listing_id: Uuid,
        check_in: chrono::NaiveDate,
        check_out: chrono::NaiveDate,
        guests: u32,
    ) -> Vec<Offer> {
        let city = match self.commands.listing(listing_id).await {
            Ok(listing) => listing.map(|l| l.details.city).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%listing_id, error = %e, "the taken listing did not load; no alternatives");
                String::new()
            }
        };
        match self.search(&city, check_in, check_out, guests).await {
            Ok(found) => found
                .into_iter()
                .filter(|o| o.listing_id != listing_id)
                .collect(),
            Err(e) => {
                tracing::warn!(city, error = %e, "searching alternatives failed");
                Vec::new()
            }
        }
    }

    /// Free apartments for the stay, cheapest first, at most 20.
    async fn search(
        &self,
        city: &str,
        check_in: chrono::NaiveDate,
        check_out: chrono::NaiveDate,
        guests: u32,
    ) -> Result<Vec<Offer>, FlowError> {
        let range = DateRange::parse(check_in, check_out).map_err(|_| {
            FlowError::Store(store::StoreError::Integrity("bad stay".into()).into())
        })?;
        let query = StayQuery {
            city: city.to_string(),
            range: Some(range),
            guests,
            max_price_kzt: None,
            near: None,
            after: None,
            limit: 100,
        };
        // A guest may search right after a host's change: the index first takes what the
        // store has (usually nothing new: one indexed read).
        if let Err(e) = self.reads.search_index.catch_up().await {
            tracing::warn!(error = %e, "bot search: the availability index did not catch up");
        }
        let (mut found, _) = self.reads.search_index.search(&query);
        found.sort_by_key(|o| (o.total_kzt, o.listing.listing_id));
        found.truncate(20);
        let mut offers = Vec::with_capacity(found.len());
        for o in found {
            let photo = self
                .commands
                .listing(o.listing.listing_id)
                .await?
                .and_then(|l| l.details.photos.first().cloned());
            offers.push(Offer {
                listing_id: o.listing.listing_id,
                rating: o.listing.rating(),
                title: o.listing.title,
                city: o.listing.city,
                nightly_price_kzt: o.listing.nightly_price_kzt,
                total_kzt: o.total_kzt,
                max_guests: o.listing.max_guests,
                photo,
            });
        }
        Ok(offers)
    }

    /// The guest's bookings, newest first (at most 20), from the bookings read model.
    async fn bookings(&self, guest: Uuid) -> Result<Vec<BookingSummary>, FlowError> {
        let rows =
            BookingsProjection::list(self.reads.query_db(), BookingFilter::Guest(guest), None, 20)
                .await
                .map_err(|e| FlowError::Store(e.into()))?;
        let mut list = Vec::with_capacity(rows.len());
        for r in rows {
            let title = self
                .commands
                .listing(r.listing_id)
                .await?
                .map(|l| l.details.title)
                .unwrap_or_default();
            list.push(BookingSummary {
                booking_id: r.booking_id,
                title,
                check_in: r.check_in,
                check_out: r.check_out,
                status: r.status,
                total_kzt: r.total_kzt,
            });
        }
        Ok(list)
    }
}

fn effect_name(e: &Effect) -> &'static str {
    match e {
        Effect::Search { .. } => "search",
        Effect::Book { .. } => "book",
        Effect::Pay { .. } => "pay",
        Effect::ListBookings => "list_bookings",
        Effect::CancelBooking { .. } => "cancel",
        Effect::Review { .. } => "review",
    }
}
