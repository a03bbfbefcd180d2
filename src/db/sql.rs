//! SQL mechanisms diesel's DSL cannot express, shared by the domains' stores: the transaction-scoped
//! advisory locks (PostgreSQL).

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Integer;

/// Waits for this transaction's turn on an advisory lock held until commit (PostgreSQL; a prepared
/// statement, cached per connection). The alert monitor of one database takes turns on it.
#[derive(Debug, Clone, Copy)]
pub struct AdvisoryXactLock(pub i32, pub i32);

impl QueryId for AdvisoryXactLock {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for AdvisoryXactLock {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT pg_advisory_xact_lock(");
        out.push_bind_param::<Integer, _>(&self.0)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&self.1)?;
        out.push_sql(")");
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for AdvisoryXactLock {}
