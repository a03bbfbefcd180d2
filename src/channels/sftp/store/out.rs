//! The order files' writes: a batch recorded with its document before anything is uploaded, its
//! steps (`writing` → `uploaded` → `sent`) each compare-and-set on the lease owner, and the
//! takeover of a batch whose run died. A batch's tasks carry its file name (`batch_id`), so no
//! other claim takes them while the file is unfinished (see
//! `crate::channels::warehouse::items::claim_orders`), and whoever holds the file holds them.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::{Direction, FileState};
use crate::channels::sftp::order_file_name;
use crate::db::lease::{Lease, LeaseLost, held};
use crate::db::schema::{file_exchanges as fx, orders, outbound_tasks as t};
use crate::db::{self, DbConnection, text_enum};
use crate::feed::{self, NewEvent};
use crate::orders::export::{self as order_export, ExportStatus};
use crate::outbound::{self, TaskState};

/// An order file being written: what its run (or the run that took it over) needs to finish it.
#[derive(Debug, Clone)]
pub struct OutBatch {
    /// Its exchange's id.
    pub id: i64,
    /// Its final name.
    pub name: String,
    /// Where it stands: `writing` or `uploaded`.
    pub state: FileState,
    /// The document.
    pub body: String,
    /// The claim's token that holds it (and its tasks).
    pub owner: String,
    /// Orders in it.
    pub orders: i32,
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// When the orders `refs` were placed, by order number.
pub fn ordered_at(
    conn: &mut DbConnection,
    refs: &[&str],
) -> QueryResult<HashMap<String, NaiveDateTime>> {
    let rows: Vec<(String, NaiveDateTime)> = orders::table
        .filter(orders::increment_id.eq_any(refs))
        .select((orders::increment_id, orders::ordered_at))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// Step 1, in one transaction: records a new order file of `channel` for the claimed tasks
/// `task_ids` (held by `lease`): its exchange (`writing`, under the lease), its name from its id,
/// the document `build` makes for that name (with its size and hash), and the tasks marked with
/// the name. Rolls back with [`LeaseLost`] when the claim no longer holds every task.
pub fn record(
    conn: &mut DbConnection,
    channel: &str,
    lease: &Lease,
    task_ids: &[i64],
    build: impl FnOnce(&str, NaiveDateTime) -> anyhow::Result<String>,
) -> anyhow::Result<OutBatch> {
    let now = lease.now;
    let orders = i32::try_from(task_ids.len()).unwrap_or(i32::MAX);
    db::write_tx(conn, |conn| {
        let id: i64 = crate::with_backend!(&mut *conn, |c| diesel::insert_into(fx::table)
            .values((
                fx::channel.eq(channel),
                fx::direction.eq(Direction::Out.as_str()),
                // Unique until the id names it, two lines below.
                fx::name.eq(&lease.owner),
                fx::state.eq(FileState::Writing.as_str()),
                fx::orders.eq(orders),
                fx::lease_owner.eq(&lease.owner),
                fx::lease_expires_at.eq(lease.until),
                fx::created_at.eq(now),
                fx::updated_at.eq(now),
            ))
            .returning(fx::id)
            .get_result(c))?;
        let name = order_file_name(channel, now, id);
        let body = build(&name, now)?;
        let size = i64::try_from(body.len()).unwrap_or(i64::MAX);
        diesel::update(fx::table.find(id))
            .set((
                fx::name.eq(&name),
                fx::body.eq(&body),
                fx::size.eq(size),
                fx::hash.eq(sha256_hex(body.as_bytes())),
            ))
            .execute(conn)?;
        let marked = diesel::update(
            t::table
                .filter(t::id.eq_any(task_ids))
                .filter(t::lease_owner.eq(&lease.owner)),
        )
        .set((t::batch_id.eq(&name), t::updated_at.eq(now)))
        .execute(conn)?;
        held(marked, task_ids.len(), &lease.owner)?;
        Ok(OutBatch {
            id,
            name,
            state: FileState::Writing,
            body,
            owner: lease.owner.clone(),
            orders,
        })
    })
}

/// Step 2's record: batch `b` is complete under its temporary name. Returns whether its owner
/// still held it.
pub fn mark_uploaded(
    conn: &mut DbConnection,
    b: &OutBatch,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        fx::table
            .find(b.id)
            .filter(fx::lease_owner.eq(&b.owner))
            .filter(fx::state.eq(FileState::Writing.as_str())),
    )
    .set((
        fx::state.eq(FileState::Uploaded.as_str()),
        fx::error.eq(None::<String>),
        fx::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Batch `b` could not be finished now (`error` says why): kept as it stands, its lease ended so
/// that the next run takes it over at once. Returns whether its owner still held it.
pub fn set_aside(
    conn: &mut DbConnection,
    b: &OutBatch,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(fx::table.find(b.id).filter(fx::lease_owner.eq(&b.owner)))
        .set((
            fx::error.eq(Some(error)),
            fx::lease_expires_at.eq(Some(now)),
            fx::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Takes over the oldest unfinished order file of `channel` whose lease ran out (its run died,
/// or set it aside), by compare-and-set on its lease so that only one run gets it, with its
/// tasks: they are then held by `lease`, and it counts as found unfinished once more (`runs`).
/// `None` when there is none.
pub fn take_over(
    conn: &mut DbConnection,
    channel: &str,
    lease: &Lease,
) -> anyhow::Result<Option<OutBatch>> {
    let now = lease.now;
    let open = [FileState::Writing.as_str(), FileState::Uploaded.as_str()];
    let expired = || {
        fx::lease_expires_at
            .is_null()
            .or(fx::lease_expires_at.lt(now))
    };
    db::write_tx(conn, |conn| {
        let candidates: Vec<i64> = fx::table
            .filter(fx::channel.eq(channel))
            .filter(fx::direction.eq(Direction::Out.as_str()))
            .filter(fx::state.eq_any(open))
            .filter(expired())
            .order(fx::id)
            .select(fx::id)
            .limit(8)
            .load(conn)?;
        for id in candidates {
            // Another process may have taken it since the look above (PostgreSQL): the lease
            // it set is in the future, so this writes nothing.
            let n = diesel::update(
                fx::table
                    .find(id)
                    .filter(fx::state.eq_any(open))
                    .filter(expired()),
            )
            .set((
                fx::lease_owner.eq(&lease.owner),
                fx::lease_expires_at.eq(lease.until),
                fx::runs.eq(fx::runs + 1),
                fx::updated_at.eq(now),
            ))
            .execute(conn)?;
            if n == 0 {
                continue;
            }
            let (name, state, body, orders): (String, String, Option<String>, i32) = fx::table
                .find(id)
                .select((fx::name, fx::state, fx::body, fx::orders))
                .first(conn)?;
            diesel::update(
                t::table
                    .filter(t::channel.eq(channel))
                    .filter(t::batch_id.eq(&name))
                    .filter(t::state.ne(TaskState::Done.as_str())),
            )
            .set((
                t::lease_owner.eq(&lease.owner),
                t::lease_expires_at.eq(lease.until),
            ))
            .execute(conn)?;
            return Ok(Some(OutBatch {
                id,
                name,
                state: text_enum::read(&state)?,
                body: body.unwrap_or_default(),
                owner: lease.owner.clone(),
                orders,
            }));
        }
        Ok::<_, anyhow::Error>(None)
    })
}

/// What step 4 settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The orders marked exported.
    pub orders: Vec<String>,
}

/// Step 4, in one transaction: batch `b` of `channel` is under its final name: the exchange
/// `sent`, its tasks done, their orders `exported` (with `exported_at`) and the feed told of each
/// order whose export status changed. Rolls back with [`LeaseLost`] when `b`'s owner no longer
/// holds the file: the run that took it over settles it.
pub fn commit(
    conn: &mut DbConnection,
    channel: &str,
    b: &OutBatch,
    now: NaiveDateTime,
) -> anyhow::Result<Committed> {
    db::write_tx(conn, |conn| {
        let open = [FileState::Writing.as_str(), FileState::Uploaded.as_str()];
        let n = diesel::update(
            fx::table
                .find(b.id)
                .filter(fx::lease_owner.eq(&b.owner))
                .filter(fx::state.eq_any(open)),
        )
        .set((
            fx::state.eq(FileState::Sent.as_str()),
            fx::error.eq(None::<String>),
            fx::lease_owner.eq(None::<String>),
            fx::lease_expires_at.eq(None::<NaiveDateTime>),
            fx::finished_at.eq(Some(now)),
            fx::updated_at.eq(now),
        ))
        .execute(conn)?;
        held(n, 1, &b.owner)?;
        let tasks: Vec<(i64, String, i32)> = t::table
            .filter(t::channel.eq(channel))
            .filter(t::batch_id.eq(&b.name))
            .filter(t::lease_owner.eq(&b.owner))
            .order(t::id)
            .select((t::id, t::subject, t::attempts))
            .load(conn)?;
        let subjects: Vec<&str> = tasks.iter().map(|(_, s, _)| s.as_str()).collect();
        let rows: Vec<(i64, String, String)> = orders::table
            .filter(orders::increment_id.eq_any(&subjects))
            .order(orders::id)
            .select((orders::id, orders::increment_id, orders::export_status))
            .load(conn)?;
        let order_ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
        order_export::lock_orders(conn, &order_ids)?;
        let task_ids: Vec<i64> = tasks.iter().map(|(id, _, _)| *id).collect();
        let done = outbound::settle_done(conn, &task_ids, &b.owner, now)?;
        let exported: Vec<i64> = rows
            .iter()
            .filter(|(_, r, _)| done.contains(r))
            .map(|(id, _, _)| *id)
            .collect();
        order_export::set_export_status(conn, &exported, ExportStatus::Exported, Some(now))?;
        let attempts: HashMap<&str, i32> = tasks.iter().map(|(_, s, a)| (s.as_str(), *a)).collect();
        let mut events = Vec::new();
        for (_, reference, previous) in rows.iter().filter(|(_, r, _)| done.contains(r)) {
            if previous == ExportStatus::Exported.as_str() {
                continue;
            }
            events.push(NewEvent {
                kind: feed::ORDER_EXPORT_STATUS_CHANGED,
                payload: serde_json::json!({
                    "order": reference,
                    "status": ExportStatus::Exported.as_str(),
                    "previous": previous,
                    "message": format!("written to {} by file channel {channel}", b.name),
                    "attempts": attempts.get(reference.as_str()).copied().unwrap_or(0),
                }),
            });
        }
        feed::append(conn, &events)?;
        Ok::<_, anyhow::Error>(Committed { orders: done })
    })
}

/// Whether `e` is a lost lease (another run holds the file or its tasks now).
pub fn is_lease_lost(e: &anyhow::Error) -> bool {
    e.downcast_ref::<LeaseLost>().is_some()
}
