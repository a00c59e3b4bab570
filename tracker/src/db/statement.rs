//! Raw SQL that diesel keeps prepared.
//!
//! `diesel::sql_query` marks its statements unsafe to cache, and so does diesel's `UPDATE`
//! (every `diesel::update(..).set(..)`) and its upserts: each call parses and plans its SQL
//! again, which was most of the cost of a claim or a completion. A
//! [`CachedSql`] is raw SQL too, but lets diesel's statement cache key the prepared statement
//! by its text and bind types. Use it only for texts drawn from a small fixed set (the cache
//! keeps every distinct text for the connection's lifetime), never for SQL that embeds values.

use std::borrow::Cow;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// One bound value of a [`CachedSql`].
#[derive(Debug, Clone, Copy)]
enum Bind<'a> {
    Text(&'a str),
    BigInt(i64),
}

/// A raw SQL statement whose prepared statement diesel caches. Each `?` in the text marks
/// where the next bound value goes (bind a value again to use it twice); diesel writes the
/// backend's own placeholder there. The texts must not contain `?` anywhere else.
#[derive(Debug, Clone)]
pub(crate) struct CachedSql<'a> {
    sql: Cow<'static, str>,
    binds: Vec<Bind<'a>>,
}

impl<'a> CachedSql<'a> {
    /// A statement with the SQL text `sql` (with a `?` per bound value) and no binds yet.
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self { sql: sql.into(), binds: Vec::with_capacity(5) }
    }

    /// Binds the next parameter to a text.
    pub(crate) fn text(mut self, value: &'a str) -> Self {
        self.binds.push(Bind::Text(value));
        self
    }

    /// Binds the next parameter to a 64-bit integer.
    pub(crate) fn big_int(mut self, value: i64) -> Self {
        self.binds.push(Bind::BigInt(value));
        self
    }
}

impl<DB> QueryFragment<DB> for CachedSql<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut pieces = self.sql.split('?');
        let mut binds = self.binds.iter();
        out.push_sql(pieces.next().unwrap_or_default());
        for piece in pieces {
            match binds.next() {
                Some(Bind::Text(value)) => out.push_bind_param::<Text, str>(value)?,
                Some(Bind::BigInt(value)) => out.push_bind_param::<BigInt, i64>(value)?,
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
