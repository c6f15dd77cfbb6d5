//! One connection to either engine the store runs on: SQLite (the embedded default) or
//! PostgreSQL (the shared record of hubs that stand in for one another).
//!
//! The store's SQL is written once, in the dialect both engines share, with PostgreSQL's
//! numbered parameters (`$1`, `$2`…); SQLite reads them as `?1`, `?2`…. Values cross as
//! [`Value`]s (an integer, a text or nothing) and rows come back as [`Row`]s of them, so the
//! store's code does not know which engine answers. Integers are 64-bit in both (`BIGINT` in
//! PostgreSQL's schema); a truth value is an integer 0 or 1.
//!
//! Every write runs in [`Conn::write`], one transaction that takes the write lock first
//! (SQLite's `BEGIN IMMEDIATE`); every read of more than one statement in [`Conn::read`], one
//! snapshot (PostgreSQL's `REPEATABLE READ`).

use std::collections::HashMap;
use std::error::Error as _;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::StoreError;

/// A value passed to or read from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
    Null,
}

/// What can be passed as a parameter.
pub(crate) trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// The parameters of a statement: `args![a, b]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$value)),*][..]
    };
}
pub(crate) use args;

/// What a column can be read as.
pub(crate) trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for u64 {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|i| u64::try_from(i).ok())
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|i| u32::try_from(i).ok())
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|i| i != 0)
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            value => T::from_value(value).map(Some),
        }
    }
}

/// A row of a result.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// Column `index` as a `T`; a column of another type, or missing, is the store's failure.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, StoreError> {
        self.0.get(index).and_then(T::from_value).ok_or_else(|| {
            StoreError::Internal(format!(
                "column {index} of a row is not a {}: {:?}",
                std::any::type_name::<T>(),
                self.0.get(index)
            ))
        })
    }
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

/// A connection to one engine or the other.
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: Client,
        /// Statements prepared on this connection, by their text.
        prepared: HashMap<String, postgres::Statement>,
        /// Where to open it again when the server closed it.
        target: Box<super::PostgresTarget>,
        /// Run on the connection each time it is opened (a session setting).
        setup: Option<&'static str>,
        /// Opening it again has failed since it was closed (said once, not at every try).
        failing: bool,
        /// A transaction is open on it (between `BEGIN` and its end).
        in_transaction: bool,
    },
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Conn").field(&self.engine()).finish()
    }
}

impl Conn {
    pub fn postgres(client: postgres::Client, target: super::PostgresTarget) -> Conn {
        Conn::Postgres {
            client: Client(Some(Box::new(client))),
            prepared: HashMap::new(),
            target: Box::new(target),
            setup: None,
            failing: false,
            in_transaction: false,
        }
    }

    /// Runs `sql` on the connection now, and again each time it is opened again.
    pub fn set_setup(&mut self, sql: &'static str) -> Result<(), StoreError> {
        self.batch(sql)?;
        if let Conn::Postgres { setup, .. } = self {
            *setup = Some(sql);
        }
        Ok(())
    }

    /// A PostgreSQL connection the server closed (it restarted, or an administrator ended the
    /// session) is opened again before its next statement, its prepared statements forgotten.
    /// A statement that failed as the connection went down is not sent again: the caller sees
    /// that failure, and the next call works.
    fn reopen_if_closed(&mut self) -> Result<(), StoreError> {
        let Conn::Postgres {
            client,
            prepared,
            target,
            setup,
            failing,
            ..
        } = self
        else {
            return Ok(());
        };
        if !client.is_closed() {
            return Ok(());
        }
        if !*failing {
            tracing::warn!(database = %target, "the database connection was closed; opening it again");
        }
        let opened = target.client();
        *failing = opened.is_err();
        *client = Client(Some(Box::new(opened?)));
        prepared.clear();
        if let Some(sql) = setup {
            let sql: &str = sql;
            outside_runtime(|| client.batch_execute(sql))?;
        }
        Ok(())
    }

    /// Whether the server closed this connection (SQLite's never is).
    fn is_closed(&self) -> bool {
        match self {
            Conn::Sqlite(_) => false,
            Conn::Postgres { client, .. } => client.is_closed(),
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres { .. } => Engine::Postgres,
        }
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        self.reopen_if_closed()?;
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(&sqlite_text(sql))?;
                let changed = stmt.execute(rusqlite::params_from_iter(args.iter()))?;
                Ok(changed as u64)
            }
            Conn::Postgres {
                client, prepared, ..
            } => outside_runtime(|| {
                let stmt = prepare(client, prepared, sql)?;
                let args: Vec<&(dyn ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                Ok(client.execute(&stmt, &args)?)
            }),
        }
    }

    /// Every row of one statement's result. A `SELECT` outside a transaction that finds its
    /// connection closed (an idle reader's first use since the server restarted) changed
    /// nothing, and runs again once on a connection opened anew.
    pub fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self.query_once(sql, args) {
            Err(StoreError::Unreachable(_))
                if self.is_closed()
                    && !self.in_transaction()
                    && sql
                        .trim_start()
                        .get(..6)
                        .is_some_and(|w| w.eq_ignore_ascii_case("SELECT")) =>
            {
                self.query_once(sql, args)
            }
            result => result,
        }
    }

    fn in_transaction(&self) -> bool {
        matches!(
            self,
            Conn::Postgres {
                in_transaction: true,
                ..
            }
        )
    }

    fn set_in_transaction(&mut self, open: bool) {
        if let Conn::Postgres { in_transaction, .. } = self {
            *in_transaction = open;
        }
    }

    fn query_once(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.reopen_if_closed()?;
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(&sqlite_text(sql))?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(columns);
                    for index in 0..columns {
                        values.push(match row.get_ref(index)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                            rusqlite::types::ValueRef::Text(text) => {
                                Value::Text(String::from_utf8_lossy(text).into_owned())
                            }
                            other => {
                                return Err(StoreError::Internal(format!(
                                    "a column of type {} where the store keeps none",
                                    other.data_type()
                                )));
                            }
                        });
                    }
                    out.push(Row(values));
                }
                Ok(out)
            }
            Conn::Postgres {
                client, prepared, ..
            } => outside_runtime(|| {
                let stmt = prepare(client, prepared, sql)?;
                let args: Vec<&(dyn ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                client
                    .query(&stmt, &args)?
                    .iter()
                    .map(postgres_row)
                    .collect()
            }),
        }
    }

    /// The first row of a result, if any.
    pub fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row of a result that always has one (an aggregate, an `EXISTS`).
    pub fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, args)?
            .ok_or_else(|| StoreError::Internal(format!("no row from: {sql}")))
    }

    /// Statements without parameters, one after the other (a schema).
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.reopen_if_closed()?;
        match self {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Conn::Postgres { client, .. } => outside_runtime(|| Ok(client.batch_execute(sql)?)),
        }
    }

    /// `work` in one transaction that writes: committed if it succeeds, rolled back if not.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let begin = match self.engine() {
            Engine::Sqlite => "BEGIN IMMEDIATE",
            Engine::Postgres => "BEGIN",
        };
        self.transaction(begin, work)
    }

    /// `work` reading one snapshot of the database.
    pub fn read<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let begin = match self.engine() {
            Engine::Sqlite => "BEGIN",
            Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        self.transaction(begin, work)
    }

    fn transaction<T, E: From<StoreError>>(
        &mut self,
        begin: &str,
        work: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Err(e) = self.batch(begin) {
            // The connection went down since its last use: nothing of this transaction was
            // sent, so it begins again on a connection opened anew.
            if !self.is_closed() {
                return Err(e.into());
            }
            self.batch(begin)?;
        }
        self.set_in_transaction(true);
        let result = match work(self) {
            Ok(value) => match self.batch("COMMIT") {
                Ok(()) => Ok(value),
                Err(e) => {
                    // A failed COMMIT of SQLite leaves the transaction open.
                    let _ = self.batch("ROLLBACK");
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        };
        self.set_in_transaction(false);
        result
    }
}

/// Runs `work`, which blocks on the PostgreSQL driver, where blocking is allowed. The driver
/// drives its connection on a runtime of its own, which cannot start on a thread that runs
/// async tasks: on such a thread of a multi-threaded runtime the work is moved off it (the
/// hub's start-up reads the store before serving); on a single-threaded one (a test), it runs
/// on a thread of its own.
pub(crate) fn outside_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => work(),
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        Ok(_) => std::thread::scope(|scope| match scope.spawn(work).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// The statement text as SQLite reads it: `$n` becomes `?n` outside quoted text.
fn sqlite_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The driver's client, dropped where its runtime may stop (see [`outside_runtime`]).
pub(crate) struct Client(Option<Box<postgres::Client>>);

impl std::ops::Deref for Client {
    type Target = postgres::Client;

    fn deref(&self) -> &postgres::Client {
        self.0
            .as_deref()
            .expect("a client is present until dropped")
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0
            .as_deref_mut()
            .expect("a client is present until dropped")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            outside_runtime(move || drop(client));
        }
    }
}

fn prepare(
    client: &mut postgres::Client,
    prepared: &mut HashMap<String, postgres::Statement>,
    sql: &str,
) -> Result<postgres::Statement, StoreError> {
    if let Some(stmt) = prepared.get(sql) {
        return Ok(stmt.clone());
    }
    let stmt = client.prepare(sql)?;
    prepared.insert(sql.to_owned(), stmt.clone());
    Ok(stmt)
}

fn postgres_row(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?
                .map(|i| Value::Int(i64::from(i)))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?
                .map(|i| Value::Int(i64::from(i)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)?
                .map(|b| Value::Int(i64::from(b)))
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            row.try_get::<_, Option<String>>(index)?.map(Value::Text)
        } else {
            return Err(StoreError::Internal(format!(
                "column {} is of type {ty}, which the store does not read",
                column.name()
            )));
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (*i != 0).to_sql(ty, out),
            Value::Text(text) => text.to_sql(ty, out),
            Value::Int(_) => Err(format!("an integer where the database wants {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Null => ValueRef::Null,
        }))
    }
}

/// Whether `e` is the connection failing rather than the server refusing a statement: the
/// connection closed or its socket failed, or the server ending sessions (it shuts down or is
/// starting, SQLSTATE class 08 and 57P01–57P03).
pub(crate) fn lost_connection(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // A socket that failed (refused, reset, timed out) rather than a value that did not
        // convert.
        None => std::error::Error::source(e).is_some_and(|source| source.is::<std::io::Error>()),
    }
}

/// PostgreSQL's own words for a failure: its message, detail and hint where it gave them, not
/// only "db error".
pub(crate) fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => match e.source() {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_reads_numbered_parameters_outside_quoted_text() {
        assert_eq!(
            sqlite_text("SELECT '$1', a FROM t WHERE b = $1 AND c = $12"),
            "SELECT '$1', a FROM t WHERE b = ?1 AND c = ?12"
        );
    }
}
