//! Masks the credentials that versions before masking stored in clear: the `sessionId` in request
//! bodies and the passwords in rejection excerpts. The migration that introduced masking listed the
//! rows to do (`credential_scrub`: ids up to the last one stored then); this runs after migrating,
//! in batches that each commit with their progress, so an interrupted run resumes where it stopped
//! and a finished one costs one empty read. Two processes migrating at once take turns on the
//! progress row.
//!
//! A request body is masked as the receipt masks one ([`mask::mask_stored`]) and its hash recomputed,
//! so a re-send of an old message after a new login is recognised as the repeat it is. Where that
//! hash is already taken by an earlier row of the same (operation, messageSeqId) — a re-send that
//! was wrongly stored as a conflict because only its session differed — the later row keeps its old
//! hash (of a body holding a 256-bit random session id, which reveals nothing) so both rows stay.
//! On SQLite the batches run with `secure_delete` and end with a WAL checkpoint, so the unmasked
//! text does not linger in freed pages or the WAL. (On PostgreSQL old row versions remain until
//! VACUUM reclaims them.) Rows an old-version process writes after the migration ran (a rolling
//! upgrade of several PostgreSQL processes) are not listed; stop old processes before migrating.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::db::schema::{credential_scrub, rejections, requests};
use crate::db::{self, DbConnection};
use crate::soap::mask;

/// Rows masked per transaction.
const BATCH: i64 = 500;

/// A table with rows to mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Requests,
    Rejections,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Requests => "requests",
            Table::Rejections => "rejections",
        }
    }
}

/// The progress of one table: ids after `next_id` up to `last_id` are still to do.
#[derive(Debug, Queryable)]
struct Progress {
    next_id: i64,
    last_id: i64,
}

#[derive(Debug, Queryable)]
struct StoredRequest {
    id: i64,
    operation: String,
    message_seq_id: i64,
    body: Option<String>,
}

/// Applies every pending migration ([`db::migrate`]), then masks the credentials that versions
/// before masking stored in clear, once, right after the migration that lists them.
pub fn migrate(pool: &db::Pool) -> Result<Vec<String>, db::DbError> {
    let applied = db::migrate(pool)?;
    let mut conn = pool.get().map_err(db::DbError::Pool)?;
    run(&mut conn).map_err(|e| {
        db::DbError::Migrate(format!(
            "masking credentials stored by an earlier version failed (it resumes next time): {e}"
        ))
    })?;
    Ok(applied)
}

/// Masks whatever is still listed in `credential_scrub`; returns the number of rows changed.
pub fn run(conn: &mut DbConnection) -> QueryResult<usize> {
    let pending: i64 = credential_scrub::table.count().get_result(conn)?;
    if pending == 0 {
        return Ok(0);
    }
    let sqlite = matches!(conn, DbConnection::Sqlite(_));
    if sqlite {
        conn.batch_execute("PRAGMA secure_delete = ON")?;
    }
    let result = [Table::Requests, Table::Rejections]
        .into_iter()
        .try_fold(0, |n, table| {
            Ok::<_, diesel::result::Error>(n + run_table(conn, table)?)
        });
    if sqlite {
        conn.batch_execute("PRAGMA secure_delete = OFF; PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    let changed = result?;
    tracing::info!(
        rows = changed,
        "masked credentials stored in clear by an earlier version"
    );
    Ok(changed)
}

fn run_table(conn: &mut DbConnection, table: Table) -> QueryResult<usize> {
    let mut changed = 0;
    while let Some(n) = db::write_tx(conn, |conn| next_batch(conn, table))? {
        changed += n;
    }
    Ok(changed)
}

/// Masks the next batch of `table` and records the progress, in the caller's transaction. `None`
/// when the table is done (its progress row is then deleted).
fn next_batch(conn: &mut DbConnection, table: Table) -> QueryResult<Option<usize>> {
    let query = credential_scrub::table
        .filter(credential_scrub::table_name.eq(table.name()))
        .select((credential_scrub::next_id, credential_scrub::last_id));
    let progress: Option<Progress> = match conn {
        // Locked so two processes migrating at once take turns instead of doing the work twice.
        DbConnection::Postgresql(c) => query.for_update().first(c).optional()?,
        DbConnection::Sqlite(c) => query.first(c).optional()?,
    };
    let Some(progress) = progress else {
        return Ok(None);
    };
    let mine = credential_scrub::table.filter(credential_scrub::table_name.eq(table.name()));
    if progress.next_id >= progress.last_id {
        diesel::delete(mine).execute(conn)?;
        return Ok(None);
    }
    let upto = progress.last_id.min(progress.next_id.saturating_add(BATCH));
    let changed = match table {
        Table::Requests => mask_requests(conn, progress.next_id, upto)?,
        Table::Rejections => mask_rejections(conn, progress.next_id, upto)?,
    };
    diesel::update(mine)
        .set(credential_scrub::next_id.eq(upto))
        .execute(conn)?;
    Ok(Some(changed))
}

fn mask_requests(conn: &mut DbConnection, after: i64, upto: i64) -> QueryResult<usize> {
    let rows: Vec<StoredRequest> = requests::table
        .filter(requests::id.gt(after).and(requests::id.le(upto)))
        .filter(requests::body.is_not_null())
        .order(requests::id)
        .select((
            requests::id,
            requests::operation,
            requests::message_seq_id,
            requests::body,
        ))
        .load(conn)?;
    let mut changed = 0;
    for row in rows {
        let Some(body) = &row.body else { continue };
        let masked = match mask::mask_stored(body) {
            std::borrow::Cow::Owned(m) if m != *body => m,
            _ => continue, // nothing to mask, or masked already
        };
        let hash = super::body_hash(masked.as_bytes());
        let taken: i64 = requests::table
            .filter(requests::operation.eq(&row.operation))
            .filter(requests::message_seq_id.eq(row.message_seq_id))
            .filter(requests::body_hash.eq(&hash))
            .filter(requests::id.ne(row.id))
            .count()
            .get_result(conn)?;
        let target = requests::table.find(row.id);
        if taken == 0 {
            diesel::update(target)
                .set((requests::body.eq(&masked), requests::body_hash.eq(&hash)))
                .execute(conn)?;
        } else {
            diesel::update(target)
                .set(requests::body.eq(&masked))
                .execute(conn)?;
        }
        changed += 1;
    }
    Ok(changed)
}

fn mask_rejections(conn: &mut DbConnection, after: i64, upto: i64) -> QueryResult<usize> {
    let rows: Vec<(i64, String)> = rejections::table
        .filter(rejections::id.gt(after).and(rejections::id.le(upto)))
        .order(rejections::id)
        .select((rejections::id, rejections::body_excerpt))
        .load(conn)?;
    let mut changed = 0;
    for (id, excerpt) in rows {
        if let std::borrow::Cow::Owned(masked) = mask::mask_lossy(&excerpt)
            && masked != excerpt
        {
            diesel::update(rejections::table.find(id))
                .set(rejections::body_excerpt.eq(masked))
                .execute(conn)?;
            changed += 1;
        }
    }
    Ok(changed)
}
