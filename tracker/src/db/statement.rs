//! Raw SQL that diesel keeps prepared, found in its cache without rebuilding the SQL text.
//!
//! `diesel::sql_query` marks its statements unsafe to cache, and so does diesel's `UPDATE`
//! (every `diesel::update(..).set(..)`) and its upserts: each call parses and plans its SQL
//! again, which was most of the cost of a claim or a completion. A [`CachedSql`] is raw SQL
//! too, but diesel keeps its prepared statement for the connection's lifetime.
//!
//! Diesel finds a prepared statement either by the SQL text (which it then writes out and
//! hashes on every run, a tenth of the writer's time under load) or by a type that stands for
//! the text. [`cached_sql!`] takes a compile-time constant text and gives its call site a type
//! of its own, so the lookup is a type comparison. One call site therefore always means one
//! text: statements whose text depends on a value (a stage's column, a number of rows) pick
//! among call sites, one per text.
//!
//! A statement runs on the concrete backend connection inside a [`DbConnection`], not through
//! diesel's multi-backend layer, which would build and translate the query once more on every
//! execution.

use std::marker::PhantomData;
use std::sync::OnceLock;

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use super::DbConnection;

/// A statement of fixed text with the SQL and a type for it, for the current call site:
/// `cached_sql!("UPDATE workers SET last_seen = ? WHERE token = ?").bind(now).bind(token)`.
/// The text must be a constant (a literal, a `const`, or `concat!` of them).
macro_rules! cached_sql {
    ($text:expr $(,)?) => {{
        /// Stands for this call site's SQL text in diesel's statement cache.
        enum CallSite {}
        const TEXT: &str = $text;
        static PIECES: $crate::db::statement::SqlPieces = $crate::db::statement::SqlPieces::new(TEXT);
        $crate::db::statement::CachedSql::<CallSite>::new(&PIECES)
    }};
}
pub(crate) use cached_sql;

/// One bound value of a [`CachedSql`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    OptionalText(Option<&'a str>),
    BigInt(i64),
    OptionalBigInt(Option<i64>),
}

/// A statement text, split at its `?` markers (the SQL around the bound values) on first use.
#[derive(Debug)]
pub(crate) struct SqlPieces {
    text: &'static str,
    split: OnceLock<Box<[&'static str]>>,
}

impl SqlPieces {
    /// The text `text`, not split yet.
    pub(crate) const fn new(text: &'static str) -> Self {
        Self { text, split: OnceLock::new() }
    }

    fn pieces(&self) -> &[&'static str] {
        self.split.get_or_init(|| self.text.split('?').collect())
    }
}

/// A raw SQL statement whose prepared statement diesel caches under the type `K`, which
/// stands for its text (made by [`cached_sql!`]). Each `?` in the text marks where the next
/// bound value goes (bind a value again to use it twice); diesel writes the backend's own
/// placeholder there. The texts must not contain `?` anywhere else.
pub(crate) struct CachedSql<'a, K> {
    sql: &'static SqlPieces,
    binds: Vec<Bind<'a>>,
    key: PhantomData<fn() -> K>,
}

impl<'a, K: 'static> CachedSql<'a, K> {
    /// A statement with the SQL `sql`, for which `K` stands, and no binds yet; see
    /// [`cached_sql!`].
    pub(crate) fn new(sql: &'static SqlPieces) -> Self {
        Self { sql, binds: Vec::with_capacity(6), key: PhantomData }
    }

    /// Binds the next parameter to `value`, as its type says (see [`SqlValue`]).
    pub(crate) fn bind(mut self, value: impl SqlValue<'a>) -> Self {
        self.binds.push(value.into_bind());
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

/// A value a statement binds, of a type that says what it is (a job, a lease, a worker's token,
/// a time), so that values cannot be bound in each other's places.
pub(crate) trait SqlValue<'a> {
    /// The value as the statement binds it.
    fn into_bind(self) -> Bind<'a>;
}

impl<'a> SqlValue<'a> for &'a str {
    fn into_bind(self) -> Bind<'a> {
        Bind::Text(self)
    }
}

impl<'a> SqlValue<'a> for Option<&'a str> {
    fn into_bind(self) -> Bind<'a> {
        Bind::OptionalText(self)
    }
}

impl<'a> SqlValue<'a> for i64 {
    fn into_bind(self) -> Bind<'a> {
        Bind::BigInt(self)
    }
}

impl<'a> SqlValue<'a> for Option<i64> {
    fn into_bind(self) -> Bind<'a> {
        Bind::OptionalBigInt(self)
    }
}

impl<DB, K> QueryFragment<DB> for CachedSql<'_, K>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    for<'x> Option<&'x str>: ToSql<Nullable<Text>, DB>,
    i64: ToSql<BigInt, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let Some((first, rest)) = self.sql.pieces().split_first() else { return Ok(()) };
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

    /// Always: the text is fixed (diesel would otherwise walk the statement to find out).
    fn is_safe_to_cache_prepared(&self, _: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

fn bind_count_mismatch() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError("bound values do not match the `?` markers".into())
}

impl<K: 'static> QueryId for CachedSql<'_, K> {
    type QueryId = K;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<K> Query for CachedSql<'_, K> {
    type SqlType = Untyped;
}

impl<Conn, K> RunQueryDsl<Conn> for CachedSql<'_, K> {}
