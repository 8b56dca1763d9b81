//! The rows a batch of events works on. Folding is pure and in memory: the builder names the
//! keys a batch touches, loads those rows, lets the projection change them, and writes back
//! only what changed. A rebuild starts from an empty, complete set and writes everything once.
use crate::table::{binary_row, Arg, ColumnArray, ReadTx, Row};
use std::collections::{BTreeSet, HashMap, HashSet};
use store::StoreError;
use uuid::Uuid;

/// SQL statements stay well under both backends' limit on bound values.
const MAX_BINDS: usize = 30_000;
const MAX_KEYS: usize = 500;
/// SQLite's placeholder for the next value in order. Not `$n`: SQLite keeps named and
/// numbered parameters in a list it searches from the start for each one, and sqlx asks for
/// every parameter's name when it binds, so a statement of n `$` parameters cost n²/2 steps
/// on every execution (a 30,000-value chunk of a rebuild, 450 million) while it held the
/// embedded database's one writer turn.
const SQLITE_NEXT: &str = "?";

pub struct Rows<R: Row> {
    /// A rebuild's set: every row is here, so a missing key is an absent row.
    complete: bool,
    wanted: BTreeSet<Uuid>,
    /// Rows known so far (`None`: known to be absent).
    rows: HashMap<Uuid, Option<R>>,
    /// Keys changed since the last flush (not kept for a complete set: all of it is written).
    dirty: HashSet<Uuid>,
}

impl<R: Row> Rows<R> {
    pub fn new(complete: bool) -> Self {
        Rows {
            complete,
            wanted: BTreeSet::new(),
            rows: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    /// Declares that the batch will read or write the row at `key`.
    pub fn want(&mut self, key: Uuid) {
        if !self.complete && !self.rows.contains_key(&key) {
            self.wanted.insert(key);
        }
    }

    pub fn get(&self, key: Uuid) -> Option<&R> {
        match self.rows.get(&key) {
            Some(row) => row.as_ref(),
            None => {
                debug_assert!(
                    self.complete,
                    "{}: row {key} read but not declared",
                    R::TABLE.name
                );
                None
            }
        }
    }

    pub fn put(&mut self, row: R) {
        let key = row.key();
        if !self.complete {
            self.dirty.insert(key);
        }
        self.rows.insert(key, Some(row));
    }

    /// Changes the row at `key` if it exists.
    pub fn update(&mut self, key: Uuid, change: impl FnOnce(&mut R)) {
        if let Some(Some(row)) = self.rows.get_mut(&key) {
            change(row);
            if !self.complete {
                self.dirty.insert(key);
            }
        } else {
            debug_assert!(
                self.complete || self.rows.contains_key(&key),
                "{}: row {key} changed but not declared",
                R::TABLE.name
            );
        }
    }

    pub fn remove(&mut self, key: Uuid) {
        if self.complete {
            // Everything is here: an absent row simply is not in the map (and a fresh table
            // has nothing to delete).
            self.rows.remove(&key);
            self.dirty.remove(&key);
        } else if let Some(slot) = self.rows.get_mut(&key) {
            if slot.take().is_some() {
                self.dirty.insert(key);
            }
        }
    }

    /// Every present row, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &R> {
        let mut rows: Vec<&R> = self.rows.values().filter_map(Option::as_ref).collect();
        rows.sort_by_key(|r| r.key());
        rows.into_iter()
    }

    pub fn len(&self) -> usize {
        self.rows.values().filter(|r| r.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the declared rows from `table`.
    pub async fn load(&mut self, tx: &mut ReadTx, table: &str) -> Result<(), StoreError> {
        let wanted: Vec<Uuid> = std::mem::take(&mut self.wanted).into_iter().collect();
        for key in &wanted {
            self.rows.insert(*key, None);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let select = format!(
            "SELECT {} FROM {table} WHERE {}",
            R::TABLE.column_list(),
            R::TABLE.key()
        );
        let found = if tx.is_postgres() {
            tx.fetch_by_keys::<R>(&format!("{select} = ANY($1)"), &wanted)
                .await?
        } else {
            let mut found = Vec::new();
            for (sql, args) in sqlite_key_lists(&select, &wanted) {
                found.extend(tx.fetch::<R>(&sql, &args).await?);
            }
            found
        };
        for row in found {
            self.rows.insert(row.key(), Some(row));
        }
        Ok(())
    }

    /// Writes what changed to `table`: upserts, then deletes.
    pub async fn flush(&mut self, tx: &mut ReadTx, table: &str) -> Result<(), StoreError> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut upserts: Vec<&R> = Vec::new();
        let mut deletes: Vec<Uuid> = Vec::new();
        if self.complete {
            upserts.extend(self.rows.values().filter_map(Option::as_ref));
        }
        for key in &dirty {
            match self.rows.get(key) {
                Some(Some(row)) => upserts.push(row),
                _ => deletes.push(*key),
            }
        }
        if self.complete {
            // A rebuild's fresh, empty table: PostgreSQL takes it all in one COPY.
            if tx
                .copy_in(table, R::TABLE, upserts.iter().map(|r| r.values()))
                .await?
            {
                return Ok(());
            }
        }
        let updates = R::TABLE.columns[1..]
            .iter()
            .map(|c| format!("{0} = excluded.{0}", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let conflict = (!self.complete).then_some(updates.as_str());
        insert_rows(tx, table, &upserts, conflict).await?;
        if deletes.is_empty() {
            return Ok(());
        }
        let delete = format!("DELETE FROM {table} WHERE {}", R::TABLE.key());
        if tx.is_postgres() {
            let keys = ColumnArray::Id(deletes.into_iter().map(Some).collect());
            tx.execute_arrays(&format!("{delete} = ANY($1)"), vec![keys])
                .await?;
        } else {
            for (sql, args) in sqlite_key_lists(&delete, &deletes) {
                tx.execute(&sql, &args).await?;
            }
        }
        Ok(())
    }
}

/// `{statement} IN (…)` over `keys` on SQLite, in lists of a power-of-two length (the last
/// key repeated to fill one up), so that a table has a handful of statement texts, each
/// prepared once per connection, instead of one for every batch size.
fn sqlite_key_lists(statement: &str, keys: &[Uuid]) -> Vec<(String, Vec<Arg>)> {
    keys.chunks(MAX_KEYS)
        .map(|chunk| {
            let n = chunk.len().next_power_of_two();
            let placeholders = vec![SQLITE_NEXT; n].join(", ");
            let last = chunk[chunk.len() - 1];
            let args = (0..n)
                .map(|i| Arg::Id(chunk.get(i).copied().unwrap_or(last)))
                .collect();
            (format!("{statement} IN ({placeholders})"), args)
        })
        .collect()
}

/// Inserts `rows` into `table`; with `on_conflict`, an upsert that sets those assignments on
/// a key already present. On PostgreSQL one statement takes every row as one array per
/// column (`INSERT … SELECT * FROM UNNEST(…)`: one text whatever the number of rows); on
/// SQLite, and for rows whose values are not all of their columns' types, multi-row
/// `VALUES` lists of power-of-two lengths (13 rows: 8, 4 and 1), a handful of texts.
async fn insert_rows<R: Row>(
    tx: &mut ReadTx,
    table: &str,
    rows: &[&R],
    on_conflict: Option<&str>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let columns = R::TABLE.columns;
    let conflict = on_conflict
        .map(|updates| format!(" ON CONFLICT ({}) DO UPDATE SET {updates}", R::TABLE.key()))
        .unwrap_or_default();
    let values: Vec<Vec<Arg>> = rows.iter().map(|r| r.values()).collect();
    if tx.is_postgres() && values.iter().all(|v| binary_row(v, columns)) {
        let mut arrays: Vec<ColumnArray> = columns
            .iter()
            .map(|c| ColumnArray::of(c.kind, values.len()))
            .collect();
        for row in values {
            for (array, arg) in arrays.iter_mut().zip(row) {
                let typed = array.push(arg);
                debug_assert!(typed, "binary_row checked every value's type");
            }
        }
        let casts = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, ColumnArray::sql_type(c.kind)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT * FROM UNNEST({casts}){conflict}",
            R::TABLE.column_list()
        );
        tx.execute_arrays(&sql, arrays).await?;
        return Ok(());
    }
    let per_chunk = (MAX_BINDS / columns.len()).max(1);
    let postgres = tx.is_postgres();
    let mut rest = &values[..];
    while !rest.is_empty() {
        // The largest power of two that fits both the rows left and the bound-value limit.
        let take = 1usize << (rest.len().min(per_chunk).ilog2());
        let (chunk, after) = rest.split_at(take);
        rest = after;
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", R::TABLE.column_list());
        let mut args = Vec::with_capacity(chunk.len() * columns.len());
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for j in 0..columns.len() {
                if j > 0 {
                    sql.push_str(", ");
                }
                if postgres {
                    sql.push_str(&format!("${}", args.len() + j + 1));
                } else {
                    sql.push_str(SQLITE_NEXT);
                }
            }
            sql.push(')');
            args.extend(row.iter().cloned());
        }
        sql.push_str(&conflict);
        tx.execute(&sql, &args).await?;
    }
    Ok(())
}

/// A row of running totals: its key names what it totals (derived from the key columns), its
/// last [`TallyRow::SUMMED`] columns are sums.
pub trait TallyRow: Row {
    /// The summed columns, the table's last columns.
    const SUMMED: &'static [&'static str];
    /// Adds `other`'s sums (same key) to this row's.
    fn merge(&mut self, other: &Self);
}

/// Running totals a batch adds to. Nothing is read: an incremental flush adds the batch's
/// sums to the stored rows in one upsert per chunk (`s = t.s + excluded.s`), a rebuild's
/// complete set writes its totals once. A total that comes back to zero keeps its row, on
/// both paths alike.
pub struct Tally<R: TallyRow> {
    complete: bool,
    rows: HashMap<Uuid, R>,
}

impl<R: TallyRow> Tally<R> {
    pub fn new(complete: bool) -> Self {
        Tally {
            complete,
            rows: HashMap::new(),
        }
    }

    /// Adds `row`'s sums to the total at its key.
    pub fn add(&mut self, row: R) {
        match self.rows.entry(row.key()) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&row),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(row);
            }
        }
    }

    /// Every total, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &R> {
        let mut rows: Vec<&R> = self.rows.values().collect();
        rows.sort_by_key(|r| r.key());
        rows.into_iter()
    }

    /// Totals are only added to: there is nothing to read.
    pub async fn load(&mut self, _tx: &mut ReadTx, _table: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Adds the batch's sums to `table` (a complete set: writes them).
    pub async fn flush(&mut self, tx: &mut ReadTx, table: &str) -> Result<(), StoreError> {
        let taken = std::mem::take(&mut self.rows);
        let mut rows: Vec<&R> = taken.values().collect();
        if self.complete
            && tx
                .copy_in(table, R::TABLE, rows.iter().map(|r| r.values()))
                .await?
        {
            return Ok(());
        }
        // One order for every builder, so two never wait on each other's rows in turn.
        rows.sort_by_key(|r| r.key());
        let adds = R::SUMMED
            .iter()
            .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let conflict = (!self.complete).then_some(adds.as_str());
        insert_rows(tx, table, &rows, conflict).await
    }
}

/// The working set of one projection: one [`Rows`] per table, loaded and flushed together.
#[async_trait::async_trait]
pub trait WorkingSet: Send {
    fn new(complete: bool) -> Self
    where
        Self: Sized;
    async fn load(&mut self, tx: &mut ReadTx, suffix: &str) -> Result<(), StoreError>;
    async fn flush(&mut self, tx: &mut ReadTx, suffix: &str) -> Result<(), StoreError>;
    /// Every row of every table, in key order, one line each (to compare two builds).
    async fn dump(db: &store::Database) -> Result<Vec<String>, StoreError>
    where
        Self: Sized;
    /// A rebuild's write: each table created as `<table><suffix>`, loaded and indexed in its
    /// own transaction, the tables side by side.
    async fn write_fresh(self, db: &store::Database, suffix: &str) -> Result<(), StoreError>
    where
        Self: Sized;
}

/// Creates `name` like `R`'s table, loads `rows` into it and builds its key and indexes
/// ([`crate::table::Table::fresh_sql`]), in one transaction.
pub async fn write_fresh_table<R: Row>(
    db: &store::Database,
    name: &str,
    rows: &mut Rows<R>,
) -> Result<(), StoreError> {
    let _turn = crate::table::write_turn(db, "rebuild").await;
    let mut tx = ReadTx::begin(db).await?;
    let (create, after_load) = R::TABLE.fresh_sql(db, name);
    tx.execute(&create, &[]).await?;
    rows.flush(&mut tx, name).await?;
    build_indexes(&mut tx, &after_load).await?;
    analyze(&mut tx, name).await?;
    tx.commit().await
}

/// Builds a freshly loaded table's key and indexes, with room to sort in memory on
/// PostgreSQL (the default `maintenance_work_mem` makes a large table's index builds spill to
/// disk).
async fn build_indexes(tx: &mut ReadTx, statements: &[String]) -> Result<(), StoreError> {
    if tx.is_postgres() && !statements.is_empty() {
        tx.execute("SET LOCAL maintenance_work_mem = '256MB'", &[])
            .await?;
    }
    for sql in statements {
        tx.execute(sql, &[]).await?;
    }
    Ok(())
}

/// Gives PostgreSQL's planner the statistics of a freshly loaded table (without them it
/// guesses a handful of rows and picks plans for that).
async fn analyze(tx: &mut ReadTx, name: &str) -> Result<(), StoreError> {
    if tx.is_postgres() {
        tx.execute(&format!("ANALYZE {name}"), &[]).await?;
    }
    Ok(())
}

/// [`write_fresh_table`] for running totals.
pub async fn write_fresh_tally<R: TallyRow>(
    db: &store::Database,
    name: &str,
    rows: &mut Tally<R>,
) -> Result<(), StoreError> {
    let _turn = crate::table::write_turn(db, "rebuild").await;
    let mut tx = ReadTx::begin(db).await?;
    let (create, after_load) = R::TABLE.fresh_sql(db, name);
    tx.execute(&create, &[]).await?;
    rows.flush(&mut tx, name).await?;
    build_indexes(&mut tx, &after_load).await?;
    analyze(&mut tx, name).await?;
    tx.commit().await
}

/// Every row of `R`'s table, in key order, one line each.
pub async fn dump_table<R: Row>(db: &store::Database) -> Result<Vec<String>, StoreError> {
    let sql = format!("{} ORDER BY {}", R::TABLE.select(), R::TABLE.key());
    let rows: Vec<R> = crate::table::fetch_all(db, &sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| format!("{}: {r:?}", R::TABLE.name))
        .collect())
}

/// Implements [`WorkingSet`] for a struct whose fields are all `Rows<_>`, and after them
/// optionally `tallies { … }` fields that are `Tally<_>`.
#[macro_export]
macro_rules! working_set {
    ($name:ident { $($field:ident: $row:ty),+ $(,)? } $(tallies { $($tally:ident: $trow:ty),+ $(,)? })?) => {
        pub struct $name {
            $(pub $field: $crate::rows::Rows<$row>,)+
            $($(pub $tally: $crate::rows::Tally<$trow>,)+)?
        }

        #[async_trait::async_trait]
        impl $crate::rows::WorkingSet for $name {
            fn new(complete: bool) -> Self {
                $name {
                    $($field: $crate::rows::Rows::new(complete),)+
                    $($($tally: $crate::rows::Tally::new(complete),)+)?
                }
            }

            async fn load(&mut self, tx: &mut $crate::table::ReadTx, suffix: &str) -> Result<(), store::StoreError> {
                $(
                    let table = format!("{}{suffix}", <$row as $crate::table::Row>::TABLE.name);
                    self.$field.load(tx, &table).await?;
                )+
                Ok(())
            }

            async fn flush(&mut self, tx: &mut $crate::table::ReadTx, suffix: &str) -> Result<(), store::StoreError> {
                $(
                    let table = format!("{}{suffix}", <$row as $crate::table::Row>::TABLE.name);
                    self.$field.flush(tx, &table).await?;
                )+
                $($(
                    let table = format!("{}{suffix}", <$trow as $crate::table::Row>::TABLE.name);
                    self.$tally.flush(tx, &table).await?;
                )+)?
                Ok(())
            }

            async fn dump(db: &store::Database) -> Result<Vec<String>, store::StoreError> {
                let mut lines = Vec::new();
                $(lines.extend($crate::rows::dump_table::<$row>(db).await?);)+
                $($(lines.extend($crate::rows::dump_table::<$trow>(db).await?);)+)?
                Ok(lines)
            }

            async fn write_fresh(self, db: &store::Database, suffix: &str) -> Result<(), store::StoreError> {
                let mut tasks = Vec::new();
                $(
                    {
                        let mut rows = self.$field;
                        let db = db.clone();
                        let name = format!("{}{suffix}", <$row as $crate::table::Row>::TABLE.name);
                        tasks.push(tokio::spawn(async move {
                            $crate::rows::write_fresh_table(&db, &name, &mut rows).await
                        }));
                    }
                )+
                $($(
                    {
                        let mut rows = self.$tally;
                        let db = db.clone();
                        let name = format!("{}{suffix}", <$trow as $crate::table::Row>::TABLE.name);
                        tasks.push(tokio::spawn(async move {
                            $crate::rows::write_fresh_tally(&db, &name, &mut rows).await
                        }));
                    }
                )+)?
                for task in tasks {
                    task.await.map_err(|source| store::StoreError::Task { task: "rebuild writer", source })??;
                }
                Ok(())
            }
        }
    };
}
