//! A group's receipt on PostgreSQL in a few statements whatever its size (see
//! [`super::store_requests`]): one look-up of earlier copies of every messageSeqId in the group, one
//! insert of the new requests, one of all their lines, one update counting repeats of stored ones.
//! Each message is decided in Rust, in the order received, against what is stored and what came
//! before it in the group — the same decisions as one by one.

use std::collections::HashMap;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamp};

use super::super::Receipt;
use super::{NewRequest, RequestState};

/// What a message of the group turns out to be.
#[derive(Debug, Clone, Copy)]
enum Decision {
    /// A copy of a stored request.
    RepeatOfStored(i64),
    /// A copy of the `k`-th new request of this group.
    RepeatOfNew(usize),
    /// The `k`-th new request of this group (a conflict when its messageSeqId was used).
    New(usize, bool),
}

/// A stored request with one of the group's messageSeqIds.
#[derive(QueryableByName)]
struct Prior {
    #[diesel(sql_type = Text)]
    operation: String,
    #[diesel(sql_type = BigInt)]
    message_seq_id: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    body_hash: String,
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// A body under an (operation, messageSeqId): a stored request or a new one of this group.
type Copies<'r> = HashMap<(&'r str, i64), Vec<(&'r str, Decision)>>;

/// Stores a group's messages after their turns were taken; one receipt per message, in order.
pub(super) fn store(c: &mut PgConnection, reqs: &[NewRequest<'_>]) -> QueryResult<Vec<Receipt>> {
    let priors = look_up(c, reqs)?;
    let mut copies: Copies<'_> = HashMap::new();
    for p in &priors {
        copies
            .entry((p.operation.as_str(), p.message_seq_id))
            .or_default()
            .push((p.body_hash.as_str(), Decision::RepeatOfStored(p.id)));
    }
    let decisions = decide(reqs, &mut copies);
    let new: Vec<&NewRequest<'_>> = reqs
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| matches!(d, Decision::New(..)))
        .map(|(r, _)| r)
        .collect();
    let ids = insert_requests(c, &new, &decisions)?;
    insert_lines(c, &new, &ids)?;
    count_repeats(c, &decisions)?;
    Ok(decisions
        .iter()
        .map(|d| match *d {
            Decision::RepeatOfStored(id) => Receipt::Repeat(id),
            Decision::RepeatOfNew(k) => Receipt::Repeat(ids[k]),
            Decision::New(k, true) => Receipt::Conflict(ids[k]),
            Decision::New(k, false) => Receipt::Queued(ids[k]),
        })
        .collect())
}

/// The stored requests under the group's (operation, messageSeqId)s, oldest first.
fn look_up(c: &mut PgConnection, reqs: &[NewRequest<'_>]) -> QueryResult<Vec<Prior>> {
    let mut keys: Vec<(&str, i64)> = reqs
        .iter()
        .map(|r| (r.operation.as_str(), r.message_seq_id))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let (ops, seqs): (Vec<&str>, Vec<i64>) = keys.into_iter().unzip();
    diesel::sql_query(
        "SELECT r.operation, r.message_seq_id, r.id, r.body_hash FROM requests r \
         JOIN unnest($1::text[], $2::int8[]) AS k(op, seq) \
         ON r.operation = k.op AND r.message_seq_id = k.seq ORDER BY r.id",
    )
    .bind::<Array<Text>, _>(&ops)
    .bind::<Array<BigInt>, _>(&seqs)
    .load(c)
}

/// Decides each message in order: a copy of a body already under its id (stored, or earlier in the
/// group) is a repeat; otherwise it is new, and a conflict if its id has another body.
fn decide<'r>(reqs: &'r [NewRequest<'_>], copies: &mut Copies<'r>) -> Vec<Decision> {
    let mut new = 0;
    reqs.iter()
        .map(|r| {
            let under = copies
                .entry((r.operation.as_str(), r.message_seq_id))
                .or_default();
            if let Some((_, d)) = under.iter().find(|(hash, _)| *hash == r.body_hash) {
                return match *d {
                    Decision::New(k, _) | Decision::RepeatOfNew(k) => Decision::RepeatOfNew(k),
                    stored => stored,
                };
            }
            let decision = Decision::New(new, !under.is_empty());
            under.push((r.body_hash, decision));
            new += 1;
            decision
        })
        .collect()
}

/// Inserts the new requests in one statement, each with its receipts counted (1 plus its repeats
/// in the group); returns their ids in the order given. Ids come from one sequence in insertion
/// order, and the rows are inserted in the order given, so the ids sorted are in that order.
fn insert_requests(
    c: &mut PgConnection,
    new: &[&NewRequest<'_>],
    decisions: &[Decision],
) -> QueryResult<Vec<i64>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let mut receipts = vec![1i32; new.len()];
    let mut conflicts = vec![false; new.len()];
    for d in decisions {
        match *d {
            Decision::RepeatOfNew(k) => receipts[k] += 1,
            Decision::New(k, conflict) => conflicts[k] = conflict,
            Decision::RepeatOfStored(_) => {}
        }
    }
    let ops: Vec<&str> = new.iter().map(|r| r.operation.as_str()).collect();
    let seqs: Vec<i64> = new.iter().map(|r| r.message_seq_id).collect();
    let callers: Vec<&str> = new.iter().map(|r| r.caller).collect();
    let bodies: Vec<&str> = new.iter().map(|r| r.body).collect();
    let hashes: Vec<&str> = new.iter().map(|r| r.body_hash).collect();
    let line_counts: Vec<i32> = new.iter().map(|r| r.lines.len() as i32).collect();
    let at: Vec<chrono::NaiveDateTime> = new.iter().map(|r| r.now).collect();
    let sql = format!(
        "INSERT INTO requests (operation, message_seq_id, caller, body, body_hash, line_count, \
         state, attempts, next_attempt_at, received_at, receipts, conflict) \
         SELECT t.op, t.seq, t.caller, t.body, t.hash, t.lines, '{}', 0, t.at, t.at, t.receipts, \
         t.conflict FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
         $6::int4[], $7::timestamp[], $8::int4[], $9::bool[]) WITH ORDINALITY \
         AS t(op, seq, caller, body, hash, lines, at, receipts, conflict, n) ORDER BY t.n RETURNING id",
        RequestState::Queued.as_str()
    );
    let mut ids: Vec<i64> = diesel::sql_query(sql)
        .bind::<Array<Text>, _>(&ops)
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<Array<Text>, _>(&callers)
        .bind::<Array<Text>, _>(&bodies)
        .bind::<Array<Text>, _>(&hashes)
        .bind::<Array<Integer>, _>(&line_counts)
        .bind::<Array<Timestamp>, _>(&at)
        .bind::<Array<Integer>, _>(&receipts)
        .bind::<Array<Bool>, _>(&conflicts)
        .load::<Inserted>(c)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Inserts every line of the new requests in one statement, numbered from 1 per request.
fn insert_lines(c: &mut PgConnection, new: &[&NewRequest<'_>], ids: &[i64]) -> QueryResult<()> {
    let lines = || {
        new.iter()
            .zip(ids)
            .flat_map(|(r, id)| r.lines.iter().map(move |l| (*id, l)))
    };
    if lines().next().is_none() {
        return Ok(());
    }
    let request_ids: Vec<i64> = lines().map(|(id, _)| id).collect();
    let line_nos: Vec<i32> = new
        .iter()
        .flat_map(|r| (1..=r.lines.len() as i32).collect::<Vec<_>>())
        .collect();
    let skus: Vec<&str> = lines().map(|(_, l)| l.sku).collect();
    let sources: Vec<&str> = lines().map(|(_, l)| l.source).collect();
    let qtys: Vec<i32> = lines().map(|(_, l)| l.qty).collect();
    let seqs: Vec<Option<i64>> = lines().map(|(_, l)| l.seq).collect();
    let loe: Vec<Option<chrono::NaiveDateTime>> =
        lines().map(|(_, l)| l.last_order_exported).collect();
    diesel::sql_query(
        "INSERT INTO request_lines (request_id, line_no, sku, source, qty, seq, \
         last_order_exported) SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], \
         $4::text[], $5::int4[], $6::int8[], $7::timestamp[])",
    )
    .bind::<Array<BigInt>, _>(&request_ids)
    .bind::<Array<Integer>, _>(&line_nos)
    .bind::<Array<Text>, _>(&skus)
    .bind::<Array<Text>, _>(&sources)
    .bind::<Array<Integer>, _>(&qtys)
    .bind::<Array<Nullable<BigInt>>, _>(&seqs)
    .bind::<Array<Nullable<Timestamp>>, _>(&loe)
    .execute(c)
    .map(drop)
}

/// Counts the group's copies of stored requests in one statement.
fn count_repeats(c: &mut PgConnection, decisions: &[Decision]) -> QueryResult<()> {
    let mut counts: HashMap<i64, i32> = HashMap::new();
    for d in decisions {
        if let Decision::RepeatOfStored(id) = d {
            *counts.entry(*id).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return Ok(());
    }
    let (ids, ns): (Vec<i64>, Vec<i32>) = counts.into_iter().unzip();
    diesel::sql_query(
        "UPDATE requests SET receipts = requests.receipts + c.n \
         FROM unnest($1::int8[], $2::int4[]) AS c(id, n) WHERE requests.id = c.id",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Integer>, _>(&ns)
    .execute(c)
    .map(drop)
}
