//! The file channels' tables: `file_exchanges` (every order file written and shipment file read),
//! `sftp_host_keys` (what trust-on-first-use trusts) and `channel_troubles` (what is wrong now).
//! The order-file and shipment-file halves write their exchanges in [`out`] and [`inbound`]; what
//! everyone reads is here.

pub mod inbound;
pub mod ops;
pub mod out;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::client::Trouble;
use crate::db::DbConnection;
use crate::db::schema::{channel_troubles as ct, file_exchanges as fx, sftp_host_keys as hk};

crate::text_enum! {
    /// Which way a file went.
    pub enum Direction: "file direction" {
        /// An order file wharf wrote.
        Out = "out",
        /// A shipment file wharf read.
        In = "in",
    }
}

crate::text_enum! {
    /// Where a file exchange stands.
    pub enum FileState: "file exchange state" {
        /// Out: claimed and being uploaded under its temporary name.
        Writing = "writing",
        /// Out: complete under its temporary name, to be renamed.
        Uploaded = "uploaded",
        /// Out: under its final name; its orders are exported.
        Sent = "sent",
        /// In: moved into `processing/`, being read and stored.
        Claimed = "claimed",
        /// In: stored as a shipment request, then deleted or archived.
        Applied = "applied",
        /// In: the same bytes were stored before; deleted or archived, not applied again.
        Repeat = "repeat",
        /// In: empty, unreadable, too large or not a shipment: moved to `failed/`.
        Failed = "failed",
    }
}

impl FileState {
    /// Unfinished: held under a lease, taken over when it runs out.
    pub const OPEN: [FileState; 3] = [FileState::Writing, FileState::Uploaded, FileState::Claimed];
}

/// A file exchange as stored (without its body).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = fx)]
pub struct FileExchange {
    pub id: i64,
    pub channel: String,
    pub direction: String,
    pub name: String,
    pub state: String,
    pub size: Option<i64>,
    pub hash: Option<String>,
    pub orders: i32,
    pub request_id: Option<i64>,
    pub order_increment_id: Option<String>,
    pub error: Option<String>,
    pub runs: i32,
    pub seen_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

/// Which exchanges a list shows.
#[derive(Debug, Clone, Default)]
pub struct ExchangeFilter {
    /// Of this channel only.
    pub channel: Option<String>,
    /// This way only.
    pub direction: Option<Direction>,
    /// In this state only.
    pub state: Option<FileState>,
}

/// Exchanges matching `f`, newest first, with ids below `before` when given, at most `limit`.
pub fn exchanges(
    conn: &mut DbConnection,
    f: &ExchangeFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<FileExchange>> {
    let mut q = fx::table.select(FileExchange::as_select()).into_boxed();
    if let Some(c) = &f.channel {
        q = q.filter(fx::channel.eq(c.clone()));
    }
    if let Some(d) = f.direction {
        q = q.filter(fx::direction.eq(d.as_str()));
    }
    if let Some(s) = f.state {
        q = q.filter(fx::state.eq(s.as_str()));
    }
    if let Some(b) = before {
        q = q.filter(fx::id.lt(b));
    }
    q.order(fx::id.desc()).limit(limit).load(conn)
}

/// One exchange with its body (the document written, or a failed file as read).
pub fn exchange(
    conn: &mut DbConnection,
    id: i64,
) -> QueryResult<Option<(FileExchange, Option<String>)>> {
    fx::table
        .find(id)
        .select((FileExchange::as_select(), fx::body))
        .first(conn)
        .optional()
}

/// The shipment file a shipment request came in, if it came in a file.
pub fn exchange_of_request(
    conn: &mut DbConnection,
    request_id: i64,
) -> QueryResult<Option<FileExchange>> {
    fx::table
        .filter(fx::request_id.eq(request_id))
        .filter(fx::direction.eq(Direction::In.as_str()))
        .select(FileExchange::as_select())
        .order(fx::id)
        .first(conn)
        .optional()
}

/// The order file named `name` of `channel`.
pub fn exchange_named(
    conn: &mut DbConnection,
    channel: &str,
    name: &str,
) -> QueryResult<Option<FileExchange>> {
    fx::table
        .filter(fx::channel.eq(channel))
        .filter(fx::name.eq(name))
        .select(FileExchange::as_select())
        .order(fx::id.desc())
        .first(conn)
        .optional()
}

/// What trust-on-first-use trusts for `channel`: the fingerprint it saw first.
pub fn first_seen_key(conn: &mut DbConnection, channel: &str) -> QueryResult<Option<String>> {
    hk::table
        .find(channel)
        .select(hk::fingerprint)
        .first(conn)
        .optional()
}

/// Keeps `fingerprint` as `channel`'s trusted key unless one is kept already (another process may
/// have kept one at the same instant). Returns the key kept: when it is not `fingerprint`, the
/// server showed two keys and this one must be refused.
pub fn keep_first_key(
    conn: &mut DbConnection,
    channel: &str,
    host: &str,
    port: u16,
    fingerprint: &str,
    now: NaiveDateTime,
) -> QueryResult<String> {
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(hk::table)
        .values((
            hk::channel.eq(channel),
            hk::host.eq(host),
            hk::port.eq(i32::from(port)),
            hk::fingerprint.eq(fingerprint),
            hk::first_seen_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(c))?;
    hk::table.find(channel).select(hk::fingerprint).first(conn)
}

/// Forgets the key trust-on-first-use keeps for `channel` (its server's key was replaced on
/// purpose). Returns the fingerprint forgotten, if one was kept.
pub fn forget_first_key(conn: &mut DbConnection, channel: &str) -> QueryResult<Option<String>> {
    let kept = first_seen_key(conn, channel)?;
    diesel::delete(hk::table.find(channel)).execute(conn)?;
    Ok(kept)
}

/// What is wrong with a file channel now.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ct)]
pub struct TroubleRow {
    pub channel: String,
    pub trouble: String,
    pub detail: String,
    pub since: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Records that `channel` has `trouble` (kept since its first sighting; the detail is the latest).
pub fn set_trouble(
    conn: &mut DbConnection,
    channel: &str,
    trouble: Trouble,
    detail: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(ct::table)
        .values((
            ct::channel.eq(channel),
            ct::trouble.eq(trouble.as_str()),
            ct::detail.eq(detail),
            ct::since.eq(now),
            ct::updated_at.eq(now),
        ))
        .on_conflict((ct::channel, ct::trouble))
        .do_update()
        .set((
            ct::detail.eq(excluded(ct::detail)),
            ct::updated_at.eq(excluded(ct::updated_at)),
        ))
        .execute(c))?;
    Ok(())
}

/// Records that `channel` no longer has `trouble`.
pub fn clear_trouble(conn: &mut DbConnection, channel: &str, trouble: Trouble) -> QueryResult<()> {
    diesel::delete(ct::table.find((channel, trouble.as_str()))).execute(conn)?;
    Ok(())
}

/// What is wrong with `channel` now (every channel's when `None`), oldest first.
pub fn troubles(conn: &mut DbConnection, channel: Option<&str>) -> QueryResult<Vec<TroubleRow>> {
    let mut q = ct::table.select(TroubleRow::as_select()).into_boxed();
    if let Some(c) = channel {
        q = q.filter(ct::channel.eq(c.to_string()));
    }
    q.order((ct::since, ct::channel, ct::trouble)).load(conn)
}
