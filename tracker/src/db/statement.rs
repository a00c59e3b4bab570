//! Raw SQL that diesel keeps prepared.
//!
//! `diesel::sql_query` marks its statements unsafe to cache, and so does diesel's `UPDATE`
//! (every `diesel::update(..).set(..)`) and its upserts: each call parses and plans its SQL
//! again, which was most of the cost of a claim or a completion. A
//! [`CachedSql`] is raw SQL too, but lets diesel's statement cache key the prepared statement
//! by its text and bind types. Use it only for texts drawn from a small fixed set (each
//! distinct text is kept for the process's lifetime, split at its `?` markers once, and the
//! cache keeps its prepared statement for the connection's lifetime), never for SQL that
//! embeds values.
//!
//! A statement runs on the concrete backend connection inside a [`DbConnection`], not through
//! diesel's multi-backend layer, which would build and translate the query once more on every
//! execution.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use super::DbConnection;

/// One bound value of a [`CachedSql`].
#[derive(Debug, Clone, Copy)]
enum Bind<'a> {
    Text(&'a str),
    OptionalText(Option<&'a str>),
    BigInt(i64),
    OptionalBigInt(Option<i64>),
}

/// A statement text split at its `?` markers: the SQL around the bound values.
#[derive(Debug)]
struct SqlPieces(Box<[&'static str]>);

/// The pieces of `sql`, split once per distinct text and kept.
fn pieces(sql: Cow<'static, str>) -> &'static SqlPieces {
    static TEXTS: OnceLock<Mutex<HashMap<Cow<'static, str>, &'static SqlPieces>>> = OnceLock::new();
    let mut texts = TEXTS.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pieces) = texts.get(&sql) {
        return pieces;
    }
    let text: &'static str = match &sql {
        Cow::Borrowed(text) => text,
        Cow::Owned(text) => Box::leak(text.clone().into_boxed_str()),
    };
    let pieces: &'static SqlPieces = Box::leak(Box::new(SqlPieces(text.split('?').collect())));
    texts.insert(sql, pieces);
    pieces
}

/// A raw SQL statement whose prepared statement diesel caches. Each `?` in the text marks
/// where the next bound value goes (bind a value again to use it twice); diesel writes the
/// backend's own placeholder there. The texts must not contain `?` anywhere else.
#[derive(Debug, Clone)]
pub(crate) struct CachedSql<'a> {
    sql: &'static SqlPieces,
    binds: Vec<Bind<'a>>,
}

impl<'a> CachedSql<'a> {
    /// A statement with the SQL text `sql` (with a `?` per bound value) and no binds yet.
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self { sql: pieces(sql.into()), binds: Vec::with_capacity(6) }
    }

    /// Binds the next parameter to a text.
    pub(crate) fn text(mut self, value: &'a str) -> Self {
        self.binds.push(Bind::Text(value));
        self
    }

    /// Binds the next parameter to a text or `NULL`.
    pub(crate) fn optional_text(mut self, value: Option<&'a str>) -> Self {
        self.binds.push(Bind::OptionalText(value));
        self
    }

    /// Binds the next parameter to a 64-bit integer.
    pub(crate) fn big_int(mut self, value: i64) -> Self {
        self.binds.push(Bind::BigInt(value));
        self
    }

    /// Binds the next parameter to a 64-bit integer or `NULL`.
    pub(crate) fn optional_big_int(mut self, value: Option<i64>) -> Self {
        self.binds.push(Bind::OptionalBigInt(value));
        self
    }

    /// Runs the statement; returns the number of rows it changed.
    pub(crate) fn execute(self, conn: &mut DbConnection) -> QueryResult<usize> {
        match conn {
            DbConnection::Sqlite(c) => RunQueryDsl::execute(self, c),
            DbConnection::Pg(c) => RunQueryDsl::execute(self, c),
        }
    }

    /// Runs the statement and reads the rows it returns.
    pub(crate) fn load<U>(self, conn: &mut DbConnection) -> QueryResult<Vec<U>>
    where
        U: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        match conn {
            DbConnection::Sqlite(c) => RunQueryDsl::load(self, c),
            DbConnection::Pg(c) => RunQueryDsl::load(self, c),
        }
    }
}

impl<DB> QueryFragment<DB> for CachedSql<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    for<'x> Option<&'x str>: ToSql<Nullable<Text>, DB>,
    i64: ToSql<BigInt, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let Some((first, rest)) = self.sql.0.split_first() else { return Ok(()) };
        let mut binds = self.binds.iter();
        out.push_sql(first);
        for piece in rest {
            match binds.next() {
                Some(Bind::Text(value)) => out.push_bind_param::<Text, str>(value)?,
                Some(Bind::OptionalText(value)) => out.push_bind_param::<Nullable<Text>, Option<&str>>(value)?,
                Some(Bind::BigInt(value)) => out.push_bind_param::<BigInt, i64>(value)?,
                Some(Bind::OptionalBigInt(value)) => out.push_bind_param::<Nullable<BigInt>, Option<i64>>(value)?,
                None => return Err(bind_count_mismatch()),
            }
            out.push_sql(piece);
        }
        match binds.next() {
            Some(_) => Err(bind_count_mismatch()),
            None => Ok(()),
        }
    }
}

fn bind_count_mismatch() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError("bound values do not match the `?` markers".into())
}

impl QueryId for CachedSql<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for CachedSql<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for CachedSql<'_> {}
