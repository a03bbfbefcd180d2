//! SQL mechanisms diesel's DSL cannot express, shared by the domains' stores: the transaction-scoped
//! advisory locks (PostgreSQL).

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, Integer};

/// Waits for this transaction's turn on an advisory lock held until commit (PostgreSQL; a prepared
/// statement, cached per connection). Receipts of one (operation, messageSeqId) take turns on it.
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

/// Waits for this transaction's turn on several advisory locks held until commit, taken one after
/// another in the order given (PostgreSQL; one prepared statement). Callers pass them sorted, so
/// that two transactions taking overlapping sets never wait for each other in a circle.
#[derive(Debug, Clone)]
pub struct AdvisoryXactLocks {
    firsts: Vec<i32>,
    seconds: Vec<i32>,
}

impl AdvisoryXactLocks {
    /// The locks of `keys`, taken in this order.
    pub fn new(keys: &[(i32, i32)]) -> AdvisoryXactLocks {
        AdvisoryXactLocks {
            firsts: keys.iter().map(|k| k.0).collect(),
            seconds: keys.iter().map(|k| k.1).collect(),
        }
    }
}

impl QueryId for AdvisoryXactLocks {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for AdvisoryXactLocks {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT count(pg_advisory_xact_lock(k.a, k.b)) FROM (SELECT a, b FROM unnest(",
        );
        out.push_bind_param::<Array<Integer>, _>(&self.firsts)?;
        out.push_sql("::int4[], ");
        out.push_bind_param::<Array<Integer>, _>(&self.seconds)?;
        out.push_sql("::int4[]) WITH ORDINALITY AS t(a, b, n) ORDER BY t.n) k");
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for AdvisoryXactLocks {}
