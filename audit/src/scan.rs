//! Reading the store for hashing, fast: events with their payload and metadata still JSON
//! text (decoded on the hashing threads, not while reading), and the leaf hash and the chain
//! check of one event from a single canonical encoding of each JSON value.
//!
//! The bytes are exactly those of [`crate::leaf::leaf_data`] and `store::chain::event_hash`
//! (the tests below compare them); only the work is shared: the metadata is written once, and
//! the chain's form of it (without `hash`) is cut from that.
use crate::leaf::{Hash, LEAF_TAG};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;
use store::history::Checkpoint;
use store::{Database, StoreError};

/// One stored event, its JSON as text.
#[derive(Clone, Debug)]
pub struct RawRow {
    pub position: i64,
    pub tx: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
}

impl RawRow {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tx: self.tx,
            position: self.position,
        }
    }
}

/// One stored event, borrowed (from a [`RawRow`] or straight from a PostgreSQL row): what
/// hashing reads.
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    pub position: i64,
    pub tx: i64,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at: DateTime<Utc>,
}

impl RowView<'_> {
    /// The event with its own copies of the text.
    pub fn to_raw(&self) -> RawRow {
        RawRow {
            position: self.position,
            tx: self.tx,
            aggregate_type: self.aggregate_type.to_owned(),
            aggregate_id: self.aggregate_id.to_owned(),
            sequence: self.sequence,
            event_type: self.event_type.to_owned(),
            event_version: self.event_version.to_owned(),
            payload: self.payload.to_owned(),
            metadata: self.metadata.to_owned(),
            recorded_at: self.recorded_at,
        }
    }
}

impl RawRow {
    pub fn view(&self) -> RowView<'_> {
        RowView {
            position: self.position,
            tx: self.tx,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

/// A PostgreSQL row of [`PG_RAW_COLUMNS`], borrowed (no copies of its text).
pub fn view_pg(row: &sqlx::postgres::PgRow) -> Result<RowView<'_>, sqlx::Error> {
    Ok(RowView {
        position: row.try_get(0)?,
        tx: row.try_get(1)?,
        aggregate_type: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        sequence: row.try_get(4)?,
        event_type: row.try_get(5)?,
        event_version: row.try_get(6)?,
        payload: row.try_get(7)?,
        metadata: row.try_get(8)?,
        recorded_at: row.try_get(9)?,
    })
}

/// The columns of a [`RawRow`] on PostgreSQL (the JSON as text: the server writes it once,
/// and the client parses it where it likes).
pub const PG_RAW_COLUMNS: &str =
    "position, xid::text::bigint AS tx, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload::text AS payload, metadata::text AS metadata, recorded_at";
/// The same on SQLite, where JSON is stored as text.
pub const LITE_RAW_COLUMNS: &str = "position, position AS tx, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata, recorded_at";

pub fn from_pg(row: &sqlx::postgres::PgRow) -> Result<RawRow, sqlx::Error> {
    view_pg(row).map(|v| v.to_raw())
}

pub fn from_lite(row: &sqlx::sqlite::SqliteRow) -> Result<RawRow, sqlx::Error> {
    let recorded: String = row.try_get(9)?;
    Ok(RawRow {
        position: row.try_get(0)?,
        tx: row.try_get(1)?,
        aggregate_type: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        sequence: row.try_get(4)?,
        event_type: row.try_get(5)?,
        event_version: row.try_get(6)?,
        payload: row.try_get(7)?,
        metadata: row.try_get(8)?,
        recorded_at: DateTime::parse_from_rfc3339(&recorded)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// Committed events after `after` in commit-safe order (`store::history::events_after`'s
/// reading), at most `limit`, as text.
pub async fn raw_after(
    db: &Database,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<RawRow>, StoreError> {
    Ok(match db {
        Database::Postgres(pool) => {
            let sql = format!(
                "SELECT {PG_RAW_COLUMNS} FROM events {}",
                store::history::PG_AFTER
            );
            let rows = sqlx::query(&sql)
                .bind(after.tx)
                .bind(after.position)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_pg).collect::<Result<_, _>>()?
        }
        Database::Sqlite(pool) => {
            let sql = format!(
                "SELECT {LITE_RAW_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(after.position)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_lite).collect::<Result<_, _>>()?
        }
    })
}

/// Writes `value` as canonical JSON (keys sorted by their bytes, no whitespace): the bytes of
/// `store::chain::write_canonical`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a <= b);
            if sorted {
                for (i, (k, v)) in map.iter().enumerate() {
                    member(i, k, v, out);
                }
            } else {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    member(i, k, &map[k], out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // serde_json's compact form of a scalar is its `Display`.
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec"),
    }
}

fn member(i: usize, k: &str, v: &Value, out: &mut Vec<u8>) {
    if i > 0 {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, k).expect("writing to a Vec");
    out.push(b':');
    write_canonical(v, out);
}

/// One event, hashed: its leaf, its chain link as stored, and what its chain hash needs
/// besides the predecessor's hash.
pub struct Digest1 {
    pub leaf: Hash,
    /// `metadata.hash` as stored ("" when absent).
    pub stored_hash: String,
    /// The chain hash's input after the predecessor's hash.
    pub chain_suffix: Vec<u8>,
}

impl Digest1 {
    /// The chain hash of the event after a predecessor whose hash is `prev`
    /// (`store::chain::event_hash`).
    pub fn chain_hash(&self, prev: &str) -> String {
        chain_hash(prev, &self.chain_suffix)
    }
}

/// [`chain_hash`] as hex digits, without an allocation.
pub fn chain_hex(prev: &[u8], suffix: &[u8]) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(suffix);
    hex_of(h)
}

fn hex_of(h: Sha256) -> [u8; 64] {
    let mut out = [0u8; 64];
    hex::encode_to_slice(h.finalize(), &mut out).expect("64 hex digits for 32 bytes");
    out
}

pub fn chain_hash(prev: &str, suffix: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(suffix);
    hex::encode(h.finalize())
}

/// An event's chain link as stored (`metadata.hash`): the 64 hex digits a link has, kept
/// inline, or any other text (missing, or not a link: tampered) as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    Digits([u8; 64]),
    Text(String),
}

impl Link {
    fn of(text: &str) -> Link {
        match <[u8; 64]>::try_from(text.as_bytes()) {
            Ok(digits) if digits.is_ascii() => Link::Digits(digits),
            _ => Link::Text(text.to_string()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Link::Digits(d) => d,
            Link::Text(t) => t.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Link::Digits(d) => std::str::from_utf8(d).expect("ASCII"),
            Link::Text(t) => t,
        }
    }
}

fn put_str(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u32).to_be_bytes());
    h.update(s);
}

/// Parses one row's JSON (the error names the position).
fn parse(position: i64, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Payload { position, source })
}

/// The leaf hash of a row ([`crate::leaf::leaf_hash`] of the same event).
pub fn leaf_hash(row: &RawRow) -> Result<Hash, StoreError> {
    Ok(Forms::default().digest(&row.view())?.0)
}

/// A row's payload and metadata in canonical form, with the metadata's top-level `hash`
/// member (its place in `metadata`): the buffers a hashing thread fills for one row after
/// another, so that a row costs no allocation.
#[derive(Default)]
pub struct Forms {
    payload: Vec<u8>,
    metadata: Vec<u8>,
    hash_member: Option<(usize, usize)>,
}

impl Forms {
    /// Encodes `row` (each JSON value once) into the buffers: its leaf hash and its stored
    /// chain link. [`Forms::chain_hex`] and [`Forms::suffix`] then read the same encoding.
    pub fn digest(&mut self, row: &RowView<'_>) -> Result<(Hash, Link), StoreError> {
        let stored = self.encode(row)?;
        Ok((self.leaf(row), stored))
    }

    /// Straight from the text ([`crate::canonical`]) when it can, else through `Value`s.
    fn encode(&mut self, row: &RowView<'_>) -> Result<Link, StoreError> {
        self.payload.clear();
        self.metadata.clear();
        if crate::canonical::write(row.payload, &mut self.payload).is_some() {
            if let Some(c) = crate::canonical::write(row.metadata, &mut self.metadata) {
                self.hash_member = c.hash_member;
                // `"hash":` and the value; a string's value is the stored link.
                return Ok(match c.hash_member {
                    Some((start, end)) => string_value(&self.metadata[start + 7..end]),
                    None => Link::Text(String::new()),
                });
            }
            self.payload.clear();
        }
        self.encode_by_value(row)
    }

    fn encode_by_value(&mut self, row: &RowView<'_>) -> Result<Link, StoreError> {
        let payload = parse(row.position, row.payload)?;
        let metadata = parse(row.position, row.metadata)?;
        write_canonical(&payload, &mut self.payload);
        // The metadata canonically, noting where its top-level `hash` member is, so that the
        // chain's form (the metadata without `hash`) is the same bytes without that member.
        let m = &mut self.metadata;
        self.hash_member = None;
        let mut stored = Link::Text(String::new());
        match &metadata {
            Value::Object(map) => {
                m.push(b'{');
                let mut keys: Vec<&String> = map.keys().collect();
                if !keys.windows(2).all(|w| w[0] <= w[1]) {
                    keys.sort();
                }
                for (i, k) in keys.into_iter().enumerate() {
                    let start = m.len();
                    member(i, k, &map[k], m);
                    if k == "hash" {
                        // The member without the comma `member` puts before all but the first.
                        self.hash_member = Some((if i > 0 { start + 1 } else { start }, m.len()));
                        if let Some(s) = map[k].as_str() {
                            stored = Link::of(s);
                        }
                    }
                }
                m.push(b'}');
            }
            other => write_canonical(other, m),
        }
        Ok(stored)
    }

    fn leaf(&self, row: &RowView<'_>) -> Hash {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(LEAF_TAG);
        h.update((row.position as u64).to_be_bytes());
        put_str(&mut h, row.aggregate_type.as_bytes());
        put_str(&mut h, row.aggregate_id.as_bytes());
        h.update((row.sequence as u64).to_be_bytes());
        put_str(&mut h, row.event_type.as_bytes());
        put_str(&mut h, row.event_version.as_bytes());
        put_str(&mut h, &self.payload);
        put_str(&mut h, &self.metadata);
        h.update(row.recorded_at.timestamp_micros().to_be_bytes());
        h.finalize().into()
    }

    /// The chain hash's input after the predecessor's hash, in pieces (`store::chain`'s
    /// `event_hash` of `StoredEvent::chain_input`): the row's names and sequence, the
    /// payload, and the metadata without its `hash` member.
    fn suffix_parts<'a>(&'a self, row: &RowView<'a>, sequence: &'a mut [u8; 20]) -> [&'a [u8]; 15] {
        let m = &self.metadata;
        let (before, after) = match self.hash_member {
            None => (&m[..], &m[m.len()..]),
            Some((start, end)) => {
                // `{…,"hash":…,…}`: drop the member and one comma beside it.
                let (start, end) = if m.get(end) == Some(&b',') {
                    (start, end + 1)
                } else if start > 0 && m[start - 1] == b',' {
                    (start - 1, end)
                } else {
                    (start, end)
                };
                (&m[..start], &m[end..])
            }
        };
        [
            b"\n",
            row.aggregate_type.as_bytes(),
            b"\n",
            row.aggregate_id.as_bytes(),
            b"\n",
            row.event_type.as_bytes(),
            b"\n",
            row.event_version.as_bytes(),
            b"\n",
            decimal(row.sequence, sequence),
            b"\n",
            &self.payload,
            b"\n",
            before,
            after,
        ]
    }

    /// The chain hash, as hex digits, of the row last [`Forms::digest`]ed after a predecessor
    /// whose hash is `prev`.
    pub fn chain_hex(&self, row: &RowView<'_>, prev: &[u8]) -> [u8; 64] {
        let mut sequence = [0u8; 20];
        let mut h = Sha256::new();
        h.update(prev);
        for part in self.suffix_parts(row, &mut sequence) {
            h.update(part);
        }
        hex_of(h)
    }

    /// The chain hash's input after the predecessor's hash, of the row last digested, kept
    /// for when the predecessor is known.
    pub fn suffix(&self, row: &RowView<'_>) -> Vec<u8> {
        let mut sequence = [0u8; 20];
        let parts = self.suffix_parts(row, &mut sequence);
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }
}

/// `n` in decimal, written into `buf` (an `i64` has at most 20 characters).
pub fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// The link a JSON string value's text holds (`"…"`): copied when it has no escapes, else
/// decoded by serde_json; not a string, none (`store::chain` reads only string links).
fn string_value(text: &[u8]) -> Link {
    match text {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') && !inner.contains(&b'"') => {
            Link::of(std::str::from_utf8(inner).unwrap_or_default())
        }
        _ => serde_json::from_slice::<String>(text)
            .map(|s| Link::of(&s))
            .unwrap_or(Link::Text(String::new())),
    }
}

/// The leaf hash, the stored chain link and the chain suffix of a row, encoding each JSON
/// value once.
pub fn digest(row: &RowView<'_>) -> Result<Digest1, StoreError> {
    let mut forms = Forms::default();
    let (leaf, stored) = forms.digest(row)?;
    Ok(Digest1 {
        leaf,
        stored_hash: stored.as_str().to_string(),
        chain_suffix: forms.suffix(row),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::{Rng, SeedableRng};
    use serde_json::json;
    use store::StoredEvent;

    fn random_string(rng: &mut rand::rngs::StdRng) -> String {
        const PIECES: &[&str] = &[
            "a", "hash", "Z", "é", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "ж", "日本", "/",
            "~", "x1:", " ", "\u{7f}", "\u{2028}", "😀",
        ];
        let most = if rng.random() { 6 } else { 40 };
        (0..rng.random_range(0..most))
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect()
    }

    fn random_value(rng: &mut rand::rngs::StdRng, depth: u32) -> Value {
        match rng.random_range(0..if depth > 3 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.random()),
            2 => json!(rng.random_range(-1_000_000_000_000i64..1_000_000_000_000)),
            3 => json!(rng.random_range(-1e6..1e6f64)),
            4 => Value::String(random_string(rng)),
            5 => Value::Array(
                (0..rng.random_range(0..4))
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.random_range(0..5))
                    .map(|_| (random_string(rng), random_value(rng, depth + 1)))
                    .collect(),
            ),
        }
    }

    /// Random events through text (as the store gives them), against the straightforward
    /// implementations: the leaf of `leaf.rs` and the chain hash of `store::chain`.
    #[test]
    fn the_fast_encoding_equals_the_reference_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for i in 0..3000 {
            let payload = random_value(&mut rng, 0);
            let mut metadata = match random_value(&mut rng, 1) {
                Value::Object(m) => Value::Object(m),
                other if i % 7 == 0 => other,
                other => json!({"actor": other}),
            };
            if let Value::Object(m) = &mut metadata {
                match i % 3 {
                    0 => {
                        m.insert("hash".into(), json!(hex::encode([i as u8; 32])));
                    }
                    1 => {
                        m.insert("hash".into(), random_value(&mut rng, 2));
                    }
                    _ => {}
                }
            }
            let e = StoredEvent {
                position: rng.random_range(1..i64::MAX),
                tx: 0,
                aggregate_type: random_string(&mut rng),
                aggregate_id: random_string(&mut rng),
                sequence: rng.random_range(0..1_000_000),
                event_type: random_string(&mut rng),
                event_version: random_string(&mut rng),
                hash: metadata
                    .get("hash")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                payload,
                metadata,
                recorded_at: Utc
                    .timestamp_micros(rng.random_range(0..4_000_000_000_000_000))
                    .unwrap(),
            };
            // PostgreSQL's text form has other spacing and key order; any JSON text of the
            // same value must give the same bytes.
            let pretty = |v: &Value| {
                if i % 2 == 0 {
                    serde_json::to_string_pretty(v).unwrap()
                } else {
                    serde_json::to_string(v).unwrap()
                }
            };
            let row = RawRow {
                position: e.position,
                tx: 0,
                aggregate_type: e.aggregate_type.clone(),
                aggregate_id: e.aggregate_id.clone(),
                sequence: e.sequence,
                event_type: e.event_type.clone(),
                event_version: e.event_version.clone(),
                payload: pretty(&e.payload),
                metadata: pretty(&e.metadata),
                recorded_at: e.recorded_at,
            };
            let d = digest(&row.view()).unwrap();
            assert_eq!(d.leaf, crate::leaf::leaf_hash(&e), "{e:?}");
            assert_eq!(leaf_hash(&row).unwrap(), d.leaf);
            assert_eq!(d.stored_hash, e.hash);
            let prev = hex::encode([7u8; 32]);
            assert_eq!(
                d.chain_hash(&prev),
                store::chain::event_hash(&prev, &e.chain_input()),
                "{e:?}"
            );
            let mut mine = Vec::new();
            write_canonical(&e.payload, &mut mine);
            let mut theirs = String::new();
            store::chain::write_canonical(&e.payload, &mut theirs);
            assert_eq!(String::from_utf8(mine).unwrap(), theirs);
        }
    }

    /// JSON text with every object's keys in reverse order.
    fn reversed(v: &Value) -> String {
        match v {
            Value::Object(map) => {
                let members: Vec<String> = map
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), reversed(v)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(reversed).collect();
                format!("[{}]", items.join(","))
            }
            other => other.to_string(),
        }
    }

    /// The text path of `crate::canonical` gives the `Value` path's bytes, for serde_json's
    /// texts (compact and pretty) and PostgreSQL's (`", "` and `": "`, keys by length), and
    /// keeps the last of repeated keys as serde_json does.
    #[test]
    fn canonical_from_text_equals_the_value_path() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for i in 0..3000 {
            let v = random_value(&mut rng, 0);
            let texts = [
                serde_json::to_string(&v).unwrap(),
                serde_json::to_string_pretty(&v).unwrap(),
                serde_json::to_string(&v)
                    .unwrap()
                    .replace(',', ", ")
                    .replace(':', ": "),
                reversed(&v),
            ];
            for (k, text) in texts.iter().enumerate() {
                let Ok(parsed) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                let mut want = Vec::new();
                write_canonical(&parsed, &mut want);
                let mut got = b"x".to_vec();
                let done = crate::canonical::write(text, &mut got);
                if k != 2 {
                    assert!(done.is_some(), "{i}: {text}");
                }
                if done.is_some() {
                    assert_eq!(
                        String::from_utf8_lossy(&got[1..]),
                        String::from_utf8_lossy(&want),
                        "{i}: {text}"
                    );
                } else {
                    assert_eq!(got, b"x");
                }
            }
        }
        for (text, want) in [
            (r#"{"b":1,"a":2,"b":3}"#, r#"{"a":2,"b":3}"#),
            (r#"{"a\u0062":1,"ab":2}"#, r#"{"ab":2}"#),
        ] {
            let mut got = Vec::new();
            crate::canonical::write(text, &mut got).unwrap();
            let mut by_value = Vec::new();
            write_canonical(&serde_json::from_str(text).unwrap(), &mut by_value);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&by_value)
            );
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
        // Numbers other than short integers, and escapes, as serde_json writes them.
        let text = r#"{"x":[1.0,-0,1e3,12345678901234567890,-12,0,"\/","\u00e9"]}"#;
        let mut got = Vec::new();
        crate::canonical::write(text, &mut got).unwrap();
        let mut by_value = Vec::new();
        write_canonical(&serde_json::from_str(text).unwrap(), &mut by_value);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&by_value)
        );
        for bad in ["", "{", r#"{"a":}"#, "[1,]", "01", r#""a"x"#, "{\"a\":1}}"] {
            let mut got = Vec::new();
            assert!(crate::canonical::write(bad, &mut got).is_none(), "{bad}");
            assert!(got.is_empty());
        }
    }
}
