//! The read side's one decoding step: a stored event becomes the domain's [`Event`] (upcast
//! from any older version) with the parts of its row the folds use. Folds match on variants;
//! nothing on the read side looks up payload fields by name.
//!
//! An event that does not decode is never skipped or defaulted: the fold stops before it, the
//! projection's checkpoint stays there, and the fault is recorded ([`record_fault`]) for
//! `zhilego projections status` and counted in `zhilego_projection_undecodable_events_total`.
use chrono::{DateTime, Utc};
use domain::{DecodeError, Event, Metadata};
use serde::Serialize;
use std::sync::Arc;
use store::history::{Checkpoint, RawEvent};
use store::{Database, StoreError, StoredEvent};
use uuid::Uuid;

/// A stored event, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub position: i64,
    pub tx: i64,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    /// The database clock at insert.
    pub recorded_at: DateTime<Utc>,
    pub event: Event,
    /// The command's metadata, when the reader loaded it (folding reads do not).
    pub metadata: Option<Metadata>,
}

/// An event the read side cannot read: where it is and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error(
    "event at position {position} ({aggregate_type} {aggregate_id} #{sequence}, \
     {event_type} {event_version}) does not decode: {reason}"
)]
pub struct Undecodable {
    pub position: i64,
    #[serde(skip)]
    pub tx: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub reason: String,
}

impl Decoded {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tx: self.tx,
            position: self.position,
        }
    }

    /// Decodes an event read with its payload as JSON (and its metadata, when not empty).
    pub fn decode(e: &StoredEvent) -> Result<Decoded, Box<Undecodable>> {
        let row = Row {
            position: e.position,
            tx: e.tx,
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence,
            event_type: &e.event_type,
            event_version: &e.event_version,
            recorded_at: e.recorded_at,
        };
        let event = Event::decode(
            row.aggregate_type,
            row.event_type,
            row.event_version,
            &e.payload,
        );
        let metadata = Some(&e.metadata).filter(|m| m.as_object().is_some_and(|m| !m.is_empty()));
        row.decoded(event, metadata)
    }

    /// Decodes an event read with its payload as text (rebuild), without metadata.
    pub fn decode_raw(e: &RawEvent) -> Result<Decoded, Box<Undecodable>> {
        let row = Row {
            position: e.position,
            tx: e.tx,
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence,
            event_type: &e.event_type,
            event_version: &e.event_version,
            recorded_at: e.recorded_at,
        };
        let event = Event::decode_text(
            row.aggregate_type,
            row.event_type,
            row.event_version,
            &e.payload,
        );
        row.decoded(event, None)
    }
}

/// The columns of a stored event besides its payload and metadata.
struct Row<'a> {
    position: i64,
    tx: i64,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    recorded_at: DateTime<Utc>,
}

impl Row<'_> {
    fn decoded(
        &self,
        event: Result<Event, DecodeError>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Decoded, Box<Undecodable>> {
        let aggregate_id = self
            .aggregate_id
            .parse()
            .map_err(|err| self.fault(format!("aggregate id: {err}")))?;
        let event = event.map_err(|err| self.fault(error_chain(&err)))?;
        let metadata = metadata
            .map(Metadata::decode)
            .transpose()
            .map_err(|err| self.fault(error_chain(&err)))?;
        Ok(Decoded {
            position: self.position,
            tx: self.tx,
            aggregate_id,
            sequence: self.sequence,
            recorded_at: self.recorded_at,
            event,
            metadata,
        })
    }

    fn fault(&self, reason: String) -> Box<Undecodable> {
        Box::new(Undecodable {
            position: self.position,
            tx: self.tx,
            aggregate_type: self.aggregate_type.to_string(),
            aggregate_id: self.aggregate_id.to_string(),
            sequence: self.sequence,
            event_type: self.event_type.to_string(),
            event_version: self.event_version.to_string(),
            reason,
        })
    }
}

/// Decodes events in order up to the first that does not decode.
pub fn decode_until_fault<'a>(
    events: impl IntoIterator<Item = &'a StoredEvent>,
) -> (Vec<Decoded>, Option<Box<Undecodable>>) {
    let mut decoded = Vec::new();
    for e in events {
        match Decoded::decode(e) {
            Ok(d) => decoded.push(d),
            Err(fault) => return (decoded, Some(fault)),
        }
    }
    (decoded, None)
}

/// Decodes linked events in order up to the first that does not decode. A link's event is
/// decoded once for every consumer of it (its [`bus::Memo`]): in-process, the projections and
/// the search index fold the same batch.
pub fn decode_links_until_fault<'a>(
    links: impl IntoIterator<Item = &'a bus::Link>,
) -> (Vec<Arc<Decoded>>, Option<Box<Undecodable>>) {
    let mut decoded = Vec::new();
    for link in links {
        let once = link
            .memo
            .get_or_init(|| Decoded::decode(&link.event).map(Arc::new));
        match once {
            Ok(d) => decoded.push(d),
            Err(fault) => return (decoded, Some(fault)),
        }
    }
    (decoded, None)
}

/// An error with its sources, one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

const FAULTS_PG: &str = "CREATE TABLE IF NOT EXISTS projection_faults (name text PRIMARY KEY, \
     position bigint NOT NULL, fault text NOT NULL, seen_at timestamptz NOT NULL)";
const FAULTS_LITE: &str = "CREATE TABLE IF NOT EXISTS projection_faults (name TEXT PRIMARY KEY, \
     position INTEGER NOT NULL, fault TEXT NOT NULL, seen_at TEXT NOT NULL)";

/// Creates the table of stalled projections of a read database.
pub(crate) async fn init_faults(read: &Database) -> Result<(), StoreError> {
    let sql = match read {
        Database::Postgres(_) => FAULTS_PG,
        Database::Sqlite(_) => FAULTS_LITE,
    };
    store::with_pool!(read, pool => {
        sqlx::query(sql).execute(pool).await?;
    });
    Ok(())
}

/// Records that `projection` stopped before `fault`: logged, counted, and kept for the status.
pub async fn record_fault(
    read: &Database,
    projection: &'static str,
    fault: &Undecodable,
) -> Result<(), StoreError> {
    tracing::error!(
        projection,
        position = fault.position,
        event_type = %fault.event_type,
        event_version = %fault.event_version,
        reason = %fault.reason,
        "projection stopped: an event does not decode"
    );
    metrics::counter!("zhilego_projection_undecodable_events_total", "projection" => projection)
        .increment(1);
    let text = serde_json::to_string(fault).expect("a fault serializes");
    store::with_pool!(read, pool => {
        sqlx::query(
            "INSERT INTO projection_faults (name, position, fault, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
             fault = excluded.fault, seen_at = excluded.seen_at",
        )
        .bind(projection)
        .bind(fault.position)
        .bind(text)
        .bind(Utc::now())
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Forgets the recorded fault of `projection` once it has applied past it.
pub(crate) async fn clear_fault(
    read: &Database,
    projection: &'static str,
) -> Result<(), StoreError> {
    store::with_pool!(read, pool => {
        sqlx::query("DELETE FROM projection_faults WHERE name = $1")
            .bind(projection)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The fault that stopped `projection`, if it is stopped.
pub async fn fault_of(
    read: &Database,
    projection: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let row: Option<(String,)> = store::with_pool!(read, pool => {
        sqlx::query_as("SELECT fault FROM projection_faults WHERE name = $1")
            .bind(projection)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.and_then(|(text,)| serde_json::from_str(&text).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn stored(position: i64, payload: serde_json::Value) -> StoredEvent {
        StoredEvent {
            position,
            tx: position,
            aggregate_type: "Listing".into(),
            aggregate_id: Uuid::nil().to_string(),
            sequence: position,
            event_type: "ListingStatusChanged".into(),
            event_version: domain::upcast::current_version("Listing", "ListingStatusChanged")
                .unwrap()
                .to_string(),
            payload,
            metadata: json!({}),
            recorded_at: Utc::now(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_linked_event_is_decoded_once_for_every_consumer() {
        let links = bus::chain(
            Checkpoint::default(),
            vec![
                stored(1, json!({"ListingStatusChanged": {"status": "paused"}})),
                stored(2, json!({"ListingStatusChanged": {"status": "active"}})),
                stored(3, json!({"ListingStatusChanged": {"status": 7}})),
            ],
        );
        // The batch as two consumers get it: clones of the same links.
        let theirs = links.clone();
        let (first, first_fault) = decode_links_until_fault(&links);
        let (second, second_fault) = decode_links_until_fault(&theirs);
        assert_eq!(first.len(), 2, "decoded up to the undecodable third");
        assert_eq!(first, second);
        for (a, b) in first.iter().zip(&second) {
            assert!(
                Arc::ptr_eq(a, b),
                "the second consumer decoded event {} again",
                a.position
            );
            assert_eq!(
                **a,
                Decoded::decode(&links[a.position as usize - 1].event).unwrap()
            );
        }
        let fault = first_fault.expect("the third does not decode");
        assert_eq!(fault.position, 3);
        assert_eq!(
            Some(fault),
            second_fault,
            "both consumers stop at the same fault"
        );
    }
}
