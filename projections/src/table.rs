//! Read-model tables described once and created on either backend, values bound with each
//! backend's native types, and the transaction every projection writes in.
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Postgres, Sqlite, Transaction};
use store::{Database, StoreError};
use uuid::Uuid;

/// A column's type, mapped to each backend's own.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Id,
    Text,
    Date,
    Time,
    Int,
    Float,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
}

pub const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
    }
}

pub const fn nullable(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
    }
}

/// One read-model table. The first column is the key (a UUID).
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Secondary indexes, each a column list such as `"city, nightly_price_kzt"`.
    pub indexes: &'static [&'static str],
}

impl Table {
    pub fn key(&self) -> &'static str {
        self.columns[0].name
    }

    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `SELECT <every column> FROM <table>`, for a query to continue with its clauses.
    pub fn select(&self) -> String {
        format!("SELECT {} FROM {}", self.column_list(), self.name)
    }

    /// `CREATE TABLE` for this table under `name` (the live name or a rebuild's fresh one).
    pub fn create_sql(&self, db: &Database, name: &str) -> String {
        self.create_sql_keyed(db, name, true)
    }

    /// `CREATE TABLE`, with the key's `PRIMARY KEY` constraint or, without `keyed`, only
    /// `NOT NULL` on it (the key is added later).
    fn create_sql_keyed(&self, db: &Database, name: &str, keyed: bool) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ty = match (db, c.kind) {
                    (Database::Postgres(_), Kind::Id) => "uuid",
                    (Database::Postgres(_), Kind::Text) => "text",
                    (Database::Postgres(_), Kind::Date) => "date",
                    (Database::Postgres(_), Kind::Time) => "timestamptz",
                    (Database::Postgres(_), Kind::Int) => "bigint",
                    (Database::Postgres(_), Kind::Float) => "double precision",
                    (Database::Sqlite(_), Kind::Id) => "BLOB",
                    (Database::Sqlite(_), Kind::Text | Kind::Date | Kind::Time) => "TEXT",
                    (Database::Sqlite(_), Kind::Int) => "INTEGER",
                    (Database::Sqlite(_), Kind::Float) => "REAL",
                };
                let constraint = if i == 0 && keyed {
                    " PRIMARY KEY"
                } else if c.nullable {
                    ""
                } else {
                    " NOT NULL"
                };
                format!("{} {ty}{constraint}", c.name)
            })
            .collect();
        format!("CREATE TABLE {name} ({})", columns.join(", "))
    }

    /// A rebuild's fresh table `name`: the `CREATE TABLE`, and what to run once its rows are
    /// loaded. On PostgreSQL the key is added after the load like the other indexes (an index
    /// built from the loaded rows in one sort costs far less than one kept up row by row
    /// through the `COPY`); SQLite cannot add a primary key later, so it comes with the table.
    pub fn fresh_sql(&self, db: &Database, name: &str) -> (String, Vec<String>) {
        let mut after = Vec::new();
        let create = match db {
            Database::Postgres(_) => {
                after.push(format!(
                    "ALTER TABLE {name} ADD PRIMARY KEY ({})",
                    self.key()
                ));
                self.create_sql_keyed(db, name, false)
            }
            Database::Sqlite(_) => self.create_sql(db, name),
        };
        after.extend(self.index_sql(name));
        (create, after)
    }

    /// `CREATE INDEX` statements for table `name`; index names start with `name` so a rebuilt
    /// table's indexes never collide with the live one's.
    pub fn index_sql(&self, name: &str) -> Vec<String> {
        self.indexes
            .iter()
            .enumerate()
            .map(|(i, cols)| format!("CREATE INDEX {name}_ix{i} ON {name} ({cols})"))
            .collect()
    }
}

/// A value bound to a statement with its backend's native type.
#[derive(Clone, Debug)]
pub enum Arg {
    Id(Uuid),
    OptId(Option<Uuid>),
    Text(String),
    OptText(Option<String>),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    OptFloat(Option<f64>),
}

impl Arg {
    /// The value in `COPY`'s text format (`\N` for NULL, backslash escapes).
    fn write_copy_text(&self, out: &mut String) {
        use std::fmt::Write;
        let text = |out: &mut String, v: &str| {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        };
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        match self {
            Arg::Id(v) => {
                let _ = write!(out, "{v}");
            }
            Arg::OptId(Some(v)) => {
                let _ = write!(out, "{v}");
            }
            Arg::Text(v) | Arg::OptText(Some(v)) => text(out, v),
            Arg::Date(v) => {
                let _ = write!(out, "{v}");
            }
            Arg::Time(v) | Arg::OptTime(Some(v)) => out.push_str(&time(v)),
            Arg::Int(v) | Arg::OptInt(Some(v)) => {
                let _ = write!(out, "{v}");
            }
            // Rust prints the shortest text that reads back to the same f64.
            Arg::Float(v) | Arg::OptFloat(Some(v)) => {
                let _ = write!(out, "{v:?}");
            }
            Arg::OptId(None)
            | Arg::OptText(None)
            | Arg::OptTime(None)
            | Arg::OptInt(None)
            | Arg::OptFloat(None) => out.push_str("\\N"),
        }
    }
}

/// Whether every value of `row` has exactly its column's type (binary `COPY` can take it).
pub(crate) fn binary_row(row: &[Arg], columns: &[Column]) -> bool {
    row.len() == columns.len()
        && row
            .iter()
            .zip(columns)
            .all(|(arg, c)| arg.binary_as(c.kind))
}

/// PostgreSQL's epoch (2000-01-01): days from 0001-01-01 (chrono's `num_days_from_ce` of it)
/// and microseconds since the Unix epoch.
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;
const PG_EPOCH_MICROS: i64 = 10_957 * 86_400 * 1_000_000;

impl Arg {
    /// Whether the value is of exactly the column type `kind` (or NULL), as binary `COPY`
    /// needs.
    fn binary_as(&self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Arg::Id(_) | Arg::OptId(_), Kind::Id)
                | (Arg::Text(_) | Arg::OptText(_), Kind::Text)
                | (Arg::Date(_), Kind::Date)
                | (Arg::Time(_) | Arg::OptTime(_), Kind::Time)
                | (Arg::Int(_) | Arg::OptInt(_), Kind::Int)
                | (Arg::Float(_) | Arg::OptFloat(_), Kind::Float)
        )
    }

    /// The value as a field of binary `COPY`: its length and its bytes in the type's binary
    /// form (`uuid` 16 bytes; `text` UTF-8; `date` days and `timestamptz` microseconds since
    /// 2000-01-01, big-endian like `bigint` and `double precision`), or length -1 for NULL.
    fn write_copy_binary(&self, out: &mut Vec<u8>) {
        fn field(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        match self {
            Arg::Id(v) | Arg::OptId(Some(v)) => field(out, v.as_bytes()),
            Arg::Text(v) | Arg::OptText(Some(v)) => field(out, v.as_bytes()),
            Arg::Date(v) => {
                use chrono::Datelike;
                field(
                    out,
                    &(v.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE).to_be_bytes(),
                )
            }
            Arg::Time(v) | Arg::OptTime(Some(v)) => {
                field(out, &(v.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes())
            }
            Arg::Int(v) | Arg::OptInt(Some(v)) => field(out, &v.to_be_bytes()),
            Arg::Float(v) | Arg::OptFloat(Some(v)) => field(out, &v.to_be_bytes()),
            Arg::OptId(None)
            | Arg::OptText(None)
            | Arg::OptTime(None)
            | Arg::OptInt(None)
            | Arg::OptFloat(None) => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
}

macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Id(v) => query.bind(*v),
                Arg::OptId(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_str()),
                Arg::OptText(v) => query.bind(v.as_deref()),
                Arg::Date(v) => query.bind(*v),
                Arg::Time(v) => query.bind(*v),
                Arg::OptTime(v) => query.bind(*v),
                Arg::Int(v) => query.bind(*v),
                Arg::OptInt(v) => query.bind(*v),
                Arg::Float(v) => query.bind(*v),
                Arg::OptFloat(v) => query.bind(*v),
            };
        }
        query
    }};
}

/// One column of many rows, bound as one PostgreSQL array of the column's type: statements
/// over a batch (`= ANY($1)`, `UNNEST($1, $2, …)`) then have one text whatever the batch's
/// size, so each is parsed and planned once per connection and kept by sqlx's statement
/// cache. A multi-row `VALUES` list or `IN ($1, …, $n)` is a new statement for every size.
pub enum ColumnArray {
    Id(Vec<Option<Uuid>>),
    Text(Vec<Option<String>>),
    Date(Vec<Option<NaiveDate>>),
    Time(Vec<Option<DateTime<Utc>>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
}

impl ColumnArray {
    /// An empty array for a column of `kind`.
    pub fn of(kind: Kind, capacity: usize) -> ColumnArray {
        match kind {
            Kind::Id => ColumnArray::Id(Vec::with_capacity(capacity)),
            Kind::Text => ColumnArray::Text(Vec::with_capacity(capacity)),
            Kind::Date => ColumnArray::Date(Vec::with_capacity(capacity)),
            Kind::Time => ColumnArray::Time(Vec::with_capacity(capacity)),
            Kind::Int => ColumnArray::Int(Vec::with_capacity(capacity)),
            Kind::Float => ColumnArray::Float(Vec::with_capacity(capacity)),
        }
    }

    /// The element type's name in SQL (`$1::uuid[]`).
    pub fn sql_type(kind: Kind) -> &'static str {
        match kind {
            Kind::Id => "uuid[]",
            Kind::Text => "text[]",
            Kind::Date => "date[]",
            Kind::Time => "timestamptz[]",
            Kind::Int => "bigint[]",
            Kind::Float => "double precision[]",
        }
    }

    /// Appends `arg`; false (and nothing appended) when it is not of the array's type.
    pub fn push(&mut self, arg: Arg) -> bool {
        match (self, arg) {
            (ColumnArray::Id(a), Arg::Id(v)) => a.push(Some(v)),
            (ColumnArray::Id(a), Arg::OptId(v)) => a.push(v),
            (ColumnArray::Text(a), Arg::Text(v)) => a.push(Some(v)),
            (ColumnArray::Text(a), Arg::OptText(v)) => a.push(v),
            (ColumnArray::Date(a), Arg::Date(v)) => a.push(Some(v)),
            (ColumnArray::Time(a), Arg::Time(v)) => a.push(Some(v)),
            (ColumnArray::Time(a), Arg::OptTime(v)) => a.push(v),
            (ColumnArray::Int(a), Arg::Int(v)) => a.push(Some(v)),
            (ColumnArray::Int(a), Arg::OptInt(v)) => a.push(v),
            (ColumnArray::Float(a), Arg::Float(v)) => a.push(Some(v)),
            (ColumnArray::Float(a), Arg::OptFloat(v)) => a.push(v),
            _ => return false,
        }
        true
    }
}

/// A read-model row that both backends can decode.
pub trait Row:
    Clone
    + PartialEq
    + std::fmt::Debug
    + Send
    + Sync
    + Unpin
    + 'static
    + for<'r> FromRow<'r, PgRow>
    + for<'r> FromRow<'r, SqliteRow>
{
    const TABLE: &'static Table;
    fn key(&self) -> Uuid;
    /// Column values in `TABLE.columns` order.
    fn values(&self) -> Vec<Arg>;
}

/// Holds this process's SQLite writer turn for `holder`, if `db` is SQLite (see
/// `store::sqlite_write_turn`).
pub(crate) async fn write_turn(db: &Database, holder: &'static str) -> Option<store::WriteTurn> {
    match db {
        Database::Sqlite(_) => Some(store::sqlite_write_turn(holder).await),
        Database::Postgres(_) => None,
    }
}

/// A transaction on the read database, whichever backend it is.
pub enum ReadTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl ReadTx {
    /// Begins a write transaction. On SQLite the write lock is taken up front (a
    /// read-then-write transaction would fail instead of waiting when another writer got in
    /// first); the caller holds `store::sqlite_write_turn` for the duration.
    pub async fn begin(db: &Database) -> Result<ReadTx, StoreError> {
        Ok(match db {
            Database::Postgres(pool) => ReadTx::Postgres(pool.begin().await?),
            Database::Sqlite(pool) => ReadTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Begins a read-only transaction that sees one snapshot throughout.
    pub async fn begin_snapshot(db: &Database) -> Result<ReadTx, StoreError> {
        Ok(match db {
            Database::Postgres(pool) => ReadTx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
            Database::Sqlite(pool) => ReadTx::Sqlite(pool.begin().await?),
        })
    }

    /// Runs `sql` with one array per placeholder (PostgreSQL only).
    pub async fn execute_arrays(
        &mut self,
        sql: &str,
        arrays: Vec<ColumnArray>,
    ) -> Result<u64, StoreError> {
        let ReadTx::Postgres(tx) = self else {
            return Err(StoreError::Integrity(
                "array parameters are PostgreSQL's".to_string(),
            ));
        };
        let mut query = sqlx::query(sql);
        for array in arrays {
            query = match array {
                ColumnArray::Id(v) => query.bind(v),
                ColumnArray::Text(v) => query.bind(v),
                ColumnArray::Date(v) => query.bind(v),
                ColumnArray::Time(v) => query.bind(v),
                ColumnArray::Int(v) => query.bind(v),
                ColumnArray::Float(v) => query.bind(v),
            };
        }
        Ok(query.execute(&mut **tx).await?.rows_affected())
    }

    /// Fetches the rows of `sql`, which takes one array of keys (PostgreSQL only).
    pub async fn fetch_by_keys<R>(&mut self, sql: &str, keys: &[Uuid]) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let ReadTx::Postgres(tx) = self else {
            return Err(StoreError::Integrity(
                "array parameters are PostgreSQL's".to_string(),
            ));
        };
        Ok(sqlx::query_as::<_, R>(sql)
            .bind(keys)
            .fetch_all(&mut **tx)
            .await?)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, ReadTx::Postgres(_))
    }

    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        Ok(match self {
            ReadTx::Postgres(tx) => bind_args!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            ReadTx::Sqlite(tx) => bind_args!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch<R>(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        Ok(match self {
            ReadTx::Postgres(tx) => {
                bind_args!(sqlx::query_as::<_, R>(sql), args)
                    .fetch_all(&mut **tx)
                    .await?
            }
            ReadTx::Sqlite(tx) => {
                bind_args!(sqlx::query_as::<_, R>(sql), args)
                    .fetch_all(&mut **tx)
                    .await?
            }
        })
    }

    /// Loads rows with PostgreSQL's `COPY … FROM STDIN`: a rebuild's bulk write. The binary
    /// format when the first row's values have exactly their columns' types (the server then
    /// parses no text: no UUIDs, numbers or timestamps to read back), else the text format,
    /// which lets the server convert. `table` is the name loaded into (the live one or a
    /// rebuild's fresh one), `shape` the table's description. Returns false on SQLite, where
    /// the caller inserts instead.
    pub async fn copy_in(
        &mut self,
        table: &str,
        shape: &Table,
        rows: impl Iterator<Item = Vec<Arg>>,
    ) -> Result<bool, StoreError> {
        let ReadTx::Postgres(tx) = self else {
            return Ok(false);
        };
        let columns = shape.columns;
        let mut rows = rows;
        let first = rows.next();
        let binary = match &first {
            Some(first) => binary_row(first, columns),
            None => true,
        };
        let names = shape.column_list();
        let options = if binary { " WITH (FORMAT binary)" } else { "" };
        let mut copy = tx
            .copy_in_raw(&format!("COPY {table} ({names}) FROM STDIN{options}"))
            .await?;
        const CHUNK: usize = 1 << 20;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        if binary {
            // Signature, flags, header extension length.
            buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            buf.extend_from_slice(&0i32.to_be_bytes());
            buf.extend_from_slice(&0i32.to_be_bytes());
        }
        let mut line = String::new();
        for row in first.into_iter().chain(rows) {
            if binary {
                buf.extend_from_slice(&(row.len() as i16).to_be_bytes());
                for (arg, c) in row.iter().zip(columns) {
                    if !arg.binary_as(c.kind) {
                        copy.abort("a value of another type than its column")
                            .await?;
                        return Err(StoreError::Integrity(format!(
                            "{table}.{}: {arg:?} is not a {:?}",
                            c.name, c.kind
                        )));
                    }
                    arg.write_copy_binary(&mut buf);
                }
            } else {
                line.clear();
                for (i, arg) in row.iter().enumerate() {
                    if i > 0 {
                        line.push('\t');
                    }
                    arg.write_copy_text(&mut line);
                }
                line.push('\n');
                buf.extend_from_slice(line.as_bytes());
            }
            if buf.len() > CHUNK - 4096 {
                copy.send(std::mem::replace(&mut buf, Vec::with_capacity(CHUNK)))
                    .await?;
            }
        }
        if binary {
            // The trailer: a tuple of -1 fields.
            buf.extend_from_slice(&(-1i16).to_be_bytes());
        }
        if !buf.is_empty() {
            copy.send(buf).await?;
        }
        copy.finish().await?;
        Ok(true)
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            ReadTx::Postgres(tx) => tx.commit().await?,
            ReadTx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Runs a query outside a transaction (the read side of the API).
pub async fn fetch_all<R>(db: &Database, sql: &str, args: &[Arg]) -> Result<Vec<R>, StoreError>
where
    R: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
{
    Ok(store::with_pool!(db, pool => {
        bind_args!(sqlx::query_as::<_, R>(sql), args).fetch_all(pool).await?
    }))
}

/// Whether table `name` exists in the read database.
pub async fn table_exists(db: &Database, name: &str) -> Result<bool, StoreError> {
    Ok(match db {
        Database::Postgres(pool) => {
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(name)
                .fetch_one(pool)
                .await?
        }
        Database::Sqlite(pool) => {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(name)
            .fetch_one(pool)
            .await?
                > 0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Arg;

    fn copy_text(arg: Arg) -> String {
        let mut out = String::new();
        arg.write_copy_text(&mut out);
        out
    }

    #[test]
    fn copy_text_escapes_what_would_end_a_field_or_row() {
        assert_eq!(
            copy_text(Arg::Text("a\tb\nc\\d\re".into())),
            "a\\tb\\nc\\\\d\\re"
        );
        assert_eq!(copy_text(Arg::OptText(None)), "\\N");
        assert_eq!(copy_text(Arg::OptFloat(None)), "\\N");
    }

    fn copy_binary(arg: Arg) -> Vec<u8> {
        let mut out = Vec::new();
        arg.write_copy_binary(&mut out);
        out
    }

    #[test]
    fn copy_binary_counts_dates_and_instants_from_2000() {
        let date = |s: &str| Arg::Date(s.parse().unwrap());
        assert_eq!(copy_binary(date("2000-01-01")), [0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(copy_binary(date("2000-01-02")), [0, 0, 0, 4, 0, 0, 0, 1]);
        assert_eq!(
            copy_binary(date("1999-12-31")),
            [0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]
        );
        let at = |s: &str| Arg::Time(s.parse().unwrap());
        assert_eq!(
            copy_binary(at("2000-01-01T00:00:00.000001Z")),
            [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(copy_binary(Arg::OptInt(None)), [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            copy_binary(Arg::Int(-2)),
            [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(copy_binary(Arg::Text("é".into())), [0, 0, 0, 2, 0xc3, 0xa9]);
    }

    #[test]
    fn copy_binary_only_for_values_of_the_column_type() {
        use super::Kind;
        assert!(Arg::OptInt(None).binary_as(Kind::Int));
        assert!(!Arg::Int(1).binary_as(Kind::Float));
        assert!(!Arg::Text("2026-01-01".into()).binary_as(Kind::Date));
    }

    #[test]
    fn copy_text_floats_read_back_exactly() {
        for v in [42.953897833072716_f64, 1e-7, -0.1, 180.0] {
            assert_eq!(copy_text(Arg::Float(v)).parse::<f64>().unwrap(), v);
        }
    }
}
