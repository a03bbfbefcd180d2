//! The shipment files' writes on `file_exchanges` (direction `in`): a file is claimed by inserting
//! its row (the partial unique index lets one unfinished row per name exist, so a second poller
//! loses here), held under a lease, and finished `applied`, `repeat` or `failed`. Every write after
//! the claim is guarded by the lease's owner, so a run that lost its lease to a takeover cannot
//! overwrite what the new holder does.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Direction, FileExchange, FileState};
use crate::db::schema::file_exchanges as fx;
use crate::db::{self, DbConnection};

/// Who claims shipment files of a channel, and until when.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The channel.
    pub channel: String,
    /// The claim's owner (one token per run).
    pub owner: String,
    /// When the claim is made.
    pub now: NaiveDateTime,
    /// When another process may take its files over.
    pub until: NaiveDateTime,
}

/// What a run holds of one file.
#[derive(Debug, Clone)]
pub struct Held {
    /// The exchange's id.
    pub id: i64,
    /// The file's name (in the import folder, then in `processing/`).
    pub name: String,
    /// The request it was stored as, when a run got that far.
    pub request_id: Option<i64>,
    /// What went wrong last, when something did.
    pub error: Option<String>,
}

impl From<FileExchange> for Held {
    fn from(x: FileExchange) -> Held {
        Held {
            id: x.id,
            name: x.name,
            request_id: x.request_id,
            error: x.error,
        }
    }
}

/// Claims file `name`: its row, `claimed` under `c`'s lease. `None`: another run holds a row of
/// that name unfinished (it has the file).
pub fn claim_file(conn: &mut DbConnection, c: &Claim, name: &str) -> QueryResult<Option<Held>> {
    let values = (
        fx::channel.eq(&c.channel),
        fx::direction.eq(Direction::In.as_str()),
        fx::name.eq(name),
        fx::state.eq(FileState::Claimed.as_str()),
        fx::lease_owner.eq(&c.owner),
        fx::lease_expires_at.eq(c.until),
        fx::created_at.eq(c.now),
        fx::updated_at.eq(c.now),
    );
    let id: Option<i64> = crate::with_backend!(&mut *conn, |x| diesel::insert_into(fx::table)
        .values(values)
        .on_conflict_do_nothing()
        .returning(fx::id)
        .get_result(x)
        .optional())?;
    Ok(id.map(|id| Held {
        id,
        name: name.to_string(),
        request_id: None,
        error: None,
    }))
}

/// The names of `channel`'s shipment files held unfinished (by anyone).
pub fn unfinished_names(conn: &mut DbConnection, channel: &str) -> QueryResult<Vec<String>> {
    fx::table
        .filter(fx::channel.eq(channel))
        .filter(fx::direction.eq(Direction::In.as_str()))
        .filter(fx::state.eq(FileState::Claimed.as_str()))
        .select(fx::name)
        .load(conn)
}

/// Counts a run that found files held by other runs (their lease still running): `runs` + 1 on
/// each, so a file stuck in `processing/` shows. Returns how many.
pub fn note_held_by_others(conn: &mut DbConnection, c: &Claim) -> QueryResult<usize> {
    diesel::update(
        fx::table
            .filter(fx::channel.eq(&c.channel))
            .filter(fx::direction.eq(Direction::In.as_str()))
            .filter(fx::state.eq(FileState::Claimed.as_str()))
            .filter(fx::lease_owner.ne(&c.owner))
            .filter(fx::lease_expires_at.gt(c.now)),
    )
    .set((fx::runs.eq(fx::runs + 1), fx::updated_at.eq(c.now)))
    .execute(conn)
}

/// Takes over `c.channel`'s files whose lease ran out (or was let go): each by a compare-and-set
/// on the lease, so of two runs taking over at once only one gets a file. `runs` + 1 on each.
pub fn take_over(conn: &mut DbConnection, c: &Claim) -> QueryResult<Vec<Held>> {
    let due: Vec<FileExchange> = fx::table
        .filter(fx::channel.eq(&c.channel))
        .filter(fx::direction.eq(Direction::In.as_str()))
        .filter(fx::state.eq(FileState::Claimed.as_str()))
        .filter(
            fx::lease_expires_at
                .is_null()
                .or(fx::lease_expires_at.le(c.now)),
        )
        .select(FileExchange::as_select())
        .order(fx::id)
        .load(conn)?;
    let mut taken = Vec::with_capacity(due.len());
    for x in due {
        let n = diesel::update(
            fx::table
                .find(x.id)
                .filter(fx::state.eq(FileState::Claimed.as_str()))
                .filter(
                    fx::lease_expires_at
                        .is_null()
                        .or(fx::lease_expires_at.le(c.now)),
                ),
        )
        .set((
            fx::lease_owner.eq(&c.owner),
            fx::lease_expires_at.eq(c.until),
            fx::runs.eq(fx::runs + 1),
            fx::updated_at.eq(c.now),
        ))
        .execute(conn)?;
        if n == 1 {
            taken.push(Held::from(x));
        }
    }
    Ok(taken)
}

/// The rows still held by `owner`, as a guarded write's filter.
macro_rules! held {
    ($id:expr, $owner:expr) => {
        fx::table
            .find($id)
            .filter(fx::state.eq(FileState::Claimed.as_str()))
            .filter(fx::lease_owner.eq($owner))
    };
}

/// Lets go of a claim whose file is gone (another poller or system took it). Whether it was
/// still held.
pub fn drop_claim(conn: &mut DbConnection, id: i64, owner: &str) -> QueryResult<bool> {
    Ok(diesel::delete(held!(id, owner)).execute(conn)? == 1)
}

/// Lets go of a file that could not be finished now, saying why: the next run takes it over at
/// once. Whether it was still held.
pub fn release(conn: &mut DbConnection, id: i64, owner: &str, error: &str) -> QueryResult<bool> {
    let now = db::now();
    let n = diesel::update(held!(id, owner))
        .set((
            fx::error.eq(crate::queue::storable(error).as_ref()),
            fx::lease_expires_at.eq(now),
            fx::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// What was read of a file: its size and SHA-256 (hex).
#[derive(Debug, Clone)]
pub struct Read {
    /// Bytes.
    pub size: i64,
    /// SHA-256, hex (`None`: too large to be read whole).
    pub hash: Option<String>,
}

/// Records that the file was stored as request `request_id` for order `order`. Whether it was
/// still held.
pub fn stored(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    read: &Read,
    request_id: i64,
    order: &str,
) -> QueryResult<bool> {
    let n = diesel::update(held!(id, owner))
        .set((
            fx::size.eq(read.size),
            fx::hash.eq(read.hash.as_deref()),
            fx::request_id.eq(request_id),
            fx::order_increment_id.eq(order),
            fx::updated_at.eq(db::now()),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Records why the file cannot be used, and its bytes when they were read whole, before it is
/// moved to `failed/`. Whether it was still held.
pub fn unusable(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    read: &Read,
    reason: &str,
    body: Option<&str>,
) -> QueryResult<bool> {
    let n = diesel::update(held!(id, owner))
        .set((
            fx::size.eq(read.size),
            fx::hash.eq(read.hash.as_deref()),
            fx::error.eq(crate::queue::storable(reason).as_ref()),
            fx::body.eq(body.map(crate::queue::storable).as_deref()),
            fx::updated_at.eq(db::now()),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Finishes a stored file once it was deleted or archived: `applied` or `repeat`. Whether it was
/// still held.
pub fn finish_done(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    state: FileState,
) -> QueryResult<bool> {
    let now = db::now();
    let n = diesel::update(held!(id, owner))
        .set((
            fx::state.eq(state.as_str()),
            fx::error.eq(None::<String>),
            fx::lease_owner.eq(None::<String>),
            fx::lease_expires_at.eq(None::<NaiveDateTime>),
            fx::updated_at.eq(now),
            fx::finished_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Finishes a file moved to `failed/` (`failed`, with its reason) and records the refusal as a
/// refused SOAP message is recorded, in one transaction. Whether it was still held.
pub fn finish_failed(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    caller: &str,
    reason: &str,
) -> QueryResult<bool> {
    db::write_tx(conn, |conn| {
        let body: Option<Option<String>> =
            held!(id, owner).select(fx::body).first(conn).optional()?;
        let Some(body) = body else {
            return Ok(false);
        };
        let now = db::now();
        diesel::update(held!(id, owner))
            .set((
                fx::state.eq(FileState::Failed.as_str()),
                fx::error.eq(crate::queue::storable(reason).as_ref()),
                fx::lease_owner.eq(None::<String>),
                fx::lease_expires_at.eq(None::<NaiveDateTime>),
                fx::updated_at.eq(now),
                fx::finished_at.eq(now),
            ))
            .execute(conn)?;
        crate::queue::record_rejection(
            conn,
            Some(caller),
            Some(crate::messages::OP_SHIPMENT),
            reason,
            body.unwrap_or_default().as_bytes(),
            crate::queue::EXCERPT_BYTES,
        )?;
        Ok(true)
    })
}

/// Whether an earlier shipment file was stored as request `request_id` (then this one is its
/// repeat).
pub fn stored_before(conn: &mut DbConnection, request_id: i64, id: i64) -> QueryResult<bool> {
    let first: Option<i64> = fx::table
        .filter(fx::request_id.eq(request_id))
        .filter(fx::direction.eq(Direction::In.as_str()))
        .filter(fx::id.ne(id))
        .select(fx::id)
        .order(fx::id)
        .first(conn)
        .optional()?;
    Ok(first.is_some_and(|f| f < id))
}
