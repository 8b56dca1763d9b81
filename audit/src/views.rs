//! What auditors read: events as stored (sealed values marked, never opened), an aggregate's
//! state at any point folded by the domain aggregate's own `apply`, what one event changed,
//! and the tree of one correlation.
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::booking::Booking;
use domain::listing::Listing;
use domain::payment::Payment;
use domain::user::User;
use domain::{Event, Metadata};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use store::{Database, StoreError, StoredEvent};
use utoipa::ToSchema;

/// What sealed values read as.
pub const SEALED: &str = "[sealed]";
/// What the sealed values of an erased user read as.
pub const ERASED: &str = "[erased]";
/// How every sealed value starts (`commands::personal`).
const SEALED_PREFIX: &str = "x1:";

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event {position} does not decode: {source}")]
    Decode {
        position: i64,
        #[source]
        source: domain::DecodeError,
    },
    #[error("unknown aggregate type {0:?}")]
    UnknownAggregate(String),
}

/// One event as the audit API shows it.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct AuditEvent {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// As stored, with sealed values shown as `[sealed]` (`[erased]` once the user is erased).
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    /// The event's link in its aggregate's hash chain.
    pub hash: String,
}

/// Shows sealed values as sealed or erased, never as ciphertext or plaintext.
#[derive(Default)]
pub struct Redactor {
    erased: HashSet<String>,
}

impl Redactor {
    /// Knows which of the users behind `events` were erased.
    pub async fn for_events(db: &Database, events: &[StoredEvent]) -> Result<Redactor, StoreError> {
        let users: HashSet<&str> = events
            .iter()
            .filter(|e| e.aggregate_type == User::TYPE)
            .map(|e| e.aggregate_id.as_str())
            .collect();
        let by_id: HashMap<uuid::Uuid, &str> = users
            .iter()
            .filter_map(|u| Some((u.parse().ok()?, *u)))
            .collect();
        let ids: Vec<uuid::Uuid> = by_id.keys().copied().collect();
        let mut erased = HashSet::new();
        // One query per few hundred users (a page's users in one).
        for chunk in ids.chunks(500) {
            let found: Vec<uuid::Uuid> = store::with_pool!(db, pool => {
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT DISTINCT user_id FROM user_keys WHERE erased_at IS NOT NULL AND user_id IN (",
                );
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build_query_scalar().fetch_all(pool).await?
            });
            erased.extend(
                found
                    .iter()
                    .filter_map(|id| by_id.get(id))
                    .map(|u| u.to_string()),
            );
        }
        Ok(Redactor { erased })
    }

    /// Knows whether the user `aggregate_id` (when the aggregate is a user) was erased.
    pub async fn for_aggregate(
        db: &Database,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Redactor, StoreError> {
        let mut erased = HashSet::new();
        if aggregate_type == User::TYPE {
            if let Ok(id) = aggregate_id.parse::<uuid::Uuid>() {
                let n: i64 = store::with_pool!(db, pool => {
                    sqlx::query_scalar(
                        "SELECT count(*) FROM user_keys WHERE user_id = $1 AND erased_at IS NOT NULL",
                    )
                    .bind(id)
                    .fetch_one(pool)
                    .await?
                });
                if n > 0 {
                    erased.insert(aggregate_id.to_string());
                }
            }
        }
        Ok(Redactor { erased })
    }

    fn mark(&self, aggregate_type: &str, aggregate_id: &str) -> &'static str {
        if aggregate_type == User::TYPE && self.erased.contains(aggregate_id) {
            ERASED
        } else {
            SEALED
        }
    }

    /// Replaces every sealed string inside `value`.
    pub fn redact(&self, aggregate_type: &str, aggregate_id: &str, value: &mut Value) {
        let mark = self.mark(aggregate_type, aggregate_id);
        redact(value, mark);
    }

    pub fn show(&self, e: &StoredEvent) -> AuditEvent {
        let mut payload = e.payload.clone();
        self.redact(&e.aggregate_type, &e.aggregate_id, &mut payload);
        AuditEvent {
            position: e.position,
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload,
            metadata: e.metadata.clone(),
            recorded_at: e.recorded_at,
            hash: e.hash.clone(),
        }
    }
}

fn redact(value: &mut Value, mark: &str) {
    match value {
        Value::String(s) if s.starts_with(SEALED_PREFIX) => *s = mark.to_string(),
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, mark)),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, mark)),
        _ => {}
    }
}

/// Events shown with sealed values marked.
pub async fn show_all(
    db: &Database,
    events: &[StoredEvent],
) -> Result<Vec<AuditEvent>, StoreError> {
    let redactor = Redactor::for_events(db, events).await?;
    Ok(events.iter().map(|e| redactor.show(e)).collect())
}

/// Which point of an aggregate's history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AsOf {
    /// After the event with this sequence (0: before the first).
    Sequence(i64),
    /// After every event recorded at or before this instant.
    Instant(DateTime<Utc>),
    /// Now.
    Latest,
}

impl AsOf {
    /// An RFC 3339 instant or a sequence number; `None` for anything else.
    pub fn parse(text: &str) -> Option<AsOf> {
        if let Ok(n) = text.parse::<i64>() {
            return (n >= 0).then_some(AsOf::Sequence(n));
        }
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| AsOf::Instant(t.with_timezone(&Utc)))
    }
}

/// What one event changed: the state before and after it, and the paths (JSON Pointers,
/// RFC 6901) that differ.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct StateDiff {
    /// The event the diff is of.
    pub sequence: i64,
    #[schema(value_type = Object)]
    pub before: Value,
    #[schema(value_type = Object)]
    pub after: Value,
    pub changed: Vec<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct StateView {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The last event folded (0: none).
    pub sequence: i64,
    #[schema(value_type = Object)]
    pub state: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<StateDiff>,
}

/// One event as a fold needs it: no metadata, the payload still JSON text (decoded once,
/// through the upcasters, by `Event::decode_text`).
#[derive(Clone, Debug)]
pub struct FoldRow {
    pub position: i64,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    /// The stored row's version on PostgreSQL, `xmin,ctid` (the transaction that wrote the
    /// row and its place in the table): any UPDATE, DELETE or INSERT gives a row another one,
    /// even with triggers off. Empty on SQLite. What snapshots are checked by
    /// (`crate::snapshots`).
    pub row_version: String,
}

/// Where a fold starts: the default state, or a snapshot (the aggregate serialized after
/// some event), and where it notes snapshots along the way.
#[derive(Default)]
pub struct FoldFrom<'a> {
    /// The state to continue from (`None`: the aggregate's default).
    pub start: Option<&'a Value>,
    /// Note the state after each event whose sequence is a multiple of this (0: none).
    pub snapshot_every: i64,
}

/// Folds `events` with aggregate `A`'s own `apply`, after the upcasters; gives the state
/// before the last event and after it, and the snapshots asked for.
fn fold<A: Aggregate>(
    aggregate_type: &str,
    events: &[FoldRow],
    from: &FoldFrom<'_>,
    take: fn(Event) -> Option<A::Event>,
) -> Result<Folded, ViewError> {
    let mut aggregate = match from.start {
        None => A::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ViewError::Store(StoreError::Integrity(format!(
                "a snapshot of a {aggregate_type} does not read back: {e}"
            )))
        })?,
    };
    let mut before = None;
    let mut snapshots = Vec::new();
    let n = events.len();
    for (i, e) in events.iter().enumerate() {
        let decoded =
            Event::decode_text(aggregate_type, &e.event_type, &e.event_version, &e.payload)
                .map_err(|source| ViewError::Decode {
                    position: e.position,
                    source,
                })?;
        let event = take(decoded).ok_or_else(|| ViewError::Decode {
            position: e.position,
            source: domain::DecodeError::TypeMismatch {
                stored: aggregate_type.to_string(),
                found: "an event of another aggregate".into(),
            },
        })?;
        if i + 1 == n {
            before = Some(to_value(&aggregate));
        }
        aggregate.apply(event);
        if from.snapshot_every > 0 && e.sequence % from.snapshot_every == 0 {
            snapshots.push((e.sequence, to_value(&aggregate)));
        }
    }
    let after = to_value(&aggregate);
    Ok(Folded {
        before: before.unwrap_or_else(|| after.clone()),
        after,
        snapshots,
    })
}

struct Folded {
    before: Value,
    after: Value,
    snapshots: Vec<(i64, Value)>,
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The state of one aggregate after `events` (its events by sequence up to the point asked
/// for, after `from`'s start), with the snapshots `from` asks for (sequence, state as
/// stored, before any redaction).
pub fn state_of(
    redactor: &Redactor,
    aggregate_type: &str,
    aggregate_id: &str,
    from: &FoldFrom<'_>,
    events: &[FoldRow],
    diff: bool,
) -> Result<(StateView, Vec<(i64, Value)>), ViewError> {
    let folded = match aggregate_type {
        t if t == Listing::TYPE => fold::<Listing>(t, events, from, |e| match e {
            Event::Listing(e) => Some(e),
            _ => None,
        })?,
        t if t == Booking::TYPE => fold::<Booking>(t, events, from, |e| match e {
            Event::Booking(e) => Some(e),
            _ => None,
        })?,
        t if t == Payment::TYPE => fold::<Payment>(t, events, from, |e| match e {
            Event::Payment(e) => Some(e),
            _ => None,
        })?,
        t if t == User::TYPE => fold::<User>(t, events, from, |e| match e {
            Event::User(e) => Some(e),
            _ => None,
        })?,
        other => return Err(ViewError::UnknownAggregate(other.to_string())),
    };
    let Folded {
        mut before,
        mut after,
        snapshots,
    } = folded;
    redactor.redact(aggregate_type, aggregate_id, &mut before);
    redactor.redact(aggregate_type, aggregate_id, &mut after);
    let n = events.len();
    let sequence = if n == 0 { 0 } else { events[n - 1].sequence };
    let diff = (diff && n > 0).then(|| StateDiff {
        sequence,
        changed: changed_paths(&before, &after),
        before,
        after: after.clone(),
    });
    Ok((
        StateView {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            sequence,
            state: after,
            diff,
        },
        snapshots,
    ))
}

fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON Pointers of every value that differs between `a` and `b` (the deepest place:
/// a changed field, not its parents), in order.
pub fn changed_paths(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", pointer_token(k));
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => walk(u, v, p, out),
                    _ => out.push(p),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(u), Some(v)) => walk(u, v, p, out),
                    _ => out.push(p),
                }
            }
        }
        (u, v) if u == v => {}
        _ => out.push(path),
    }
}

/// Something from outside that started work: a Telegram update, a WhatsApp message, a Kaspi
/// transaction, an API request.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct OutsideInput {
    /// `telegram_update`, `whatsapp_message`, `kaspi_txn` or `api_request`.
    pub source: String,
    pub id: String,
    /// The first event it led to.
    pub position: i64,
}

/// One event of a correlation, with what caused it.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct CorrelatedEvent {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    /// The command that wrote the event.
    pub command_id: String,
    /// The command that led to that command, if any.
    pub causation_id: Option<String>,
    /// The events written by the causing command (the causal links, across aggregates).
    pub caused_by: Vec<i64>,
    /// The outside input that started this command, if it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<OutsideInput>,
    pub actor: String,
    pub channel: String,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct CorrelationView {
    pub correlation_id: String,
    pub inputs: Vec<OutsideInput>,
    /// In commit order, which is causal order: a command's follow-ups are written after it.
    pub events: Vec<CorrelatedEvent>,
}

/// The tree of one correlation from its events (in commit order).
pub fn correlation(correlation_id: &str, events: &[StoredEvent]) -> CorrelationView {
    let metas: Vec<Option<Metadata>> = events
        .iter()
        .map(|e| Metadata::decode(&e.metadata).ok())
        .collect();
    let mut by_command: HashMap<String, Vec<i64>> = HashMap::new();
    for (e, m) in events.iter().zip(&metas) {
        if let Some(m) = m {
            by_command
                .entry(m.command_id.to_string())
                .or_default()
                .push(e.position);
        }
    }
    let mut inputs: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut out = Vec::with_capacity(events.len());
    for (e, m) in events.iter().zip(&metas) {
        let input = m.as_ref().and_then(|m| {
            Some(OutsideInput {
                source: m.input_source.clone()?,
                id: m.input_id.clone()?,
                position: e.position,
            })
        });
        if let Some(i) = &input {
            inputs
                .entry((i.source.clone(), i.id.clone()))
                .or_insert(e.position);
        }
        let causation = m
            .as_ref()
            .and_then(|m| m.causation_id)
            .map(|c| c.to_string());
        out.push(CorrelatedEvent {
            position: e.position,
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            recorded_at: e.recorded_at,
            command_id: m
                .as_ref()
                .map(|m| m.command_id.to_string())
                .unwrap_or_default(),
            caused_by: causation
                .as_ref()
                .and_then(|c| by_command.get(c).cloned())
                .unwrap_or_default(),
            causation_id: causation,
            input,
            actor: m.as_ref().map(|m| m.actor.to_string()).unwrap_or_default(),
            channel: m
                .as_ref()
                .map(|m| m.channel.as_str().to_string())
                .unwrap_or_default(),
        });
    }
    let mut inputs: Vec<OutsideInput> = inputs
        .into_iter()
        .map(|((source, id), position)| OutsideInput {
            source,
            id,
            position,
        })
        .collect();
    inputs.sort_by_key(|i| i.position);
    CorrelationView {
        correlation_id: correlation_id.to_string(),
        inputs,
        events: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_paths_name_the_deepest_changes() {
        let a = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": true});
        let b = json!({"a": 1, "b": {"c": [1, 3, 4], "d": "x"}, "new/key": null});
        assert_eq!(
            changed_paths(&a, &b),
            vec!["/b/c/1", "/b/c/2", "/gone", "/new~1key"]
        );
        assert!(changed_paths(&a, &a).is_empty());
    }

    #[test]
    fn sealed_values_are_marked() {
        let mut v = json!({"name": "x1:abc", "list": ["x1:def", "plain"], "n": 1});
        redact(&mut v, SEALED);
        assert_eq!(
            v,
            json!({"name": "[sealed]", "list": ["[sealed]", "plain"], "n": 1})
        );
    }

    #[test]
    fn as_of_reads_sequences_and_instants() {
        assert_eq!(AsOf::parse("3"), Some(AsOf::Sequence(3)));
        assert!(matches!(
            AsOf::parse("2026-12-01T10:00:00Z"),
            Some(AsOf::Instant(_))
        ));
        assert_eq!(AsOf::parse("-1"), None);
        assert_eq!(AsOf::parse("yesterday"), None);
    }
}
