//! The `audit_log` table's SQL.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Entry, Via};
use crate::db::schema::audit_log;
use crate::db::{self, DbConnection};

/// The longest list of subjects stored in one row (the count is always exact).
const MAX_SUBJECTS_TEXT: usize = 4000;

/// Records `entry`; call inside the action's own transaction.
pub fn record(conn: &mut DbConnection, entry: &Entry<'_>) -> QueryResult<()> {
    let mut subjects = entry.subjects.join(", ");
    if subjects.len() > MAX_SUBJECTS_TEXT {
        let mut cut = MAX_SUBJECTS_TEXT;
        while !subjects.is_char_boundary(cut) {
            cut -= 1;
        }
        subjects.truncate(cut);
        subjects.push_str(" …");
    }
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(db::now()),
            audit_log::actor.eq(entry.actor),
            audit_log::via.eq(entry.via.as_str()),
            audit_log::action.eq(entry.action),
            audit_log::subject_kind.eq(entry.subject_kind),
            audit_log::subjects.eq(subjects),
            audit_log::filter.eq(entry.filter),
            audit_log::count.eq(entry.count),
            audit_log::note.eq(entry.note),
        ))
        .execute(conn)?;
    Ok(())
}

/// A recorded action.
#[derive(Debug, Clone, Queryable)]
pub struct AuditRow {
    /// Its id (newest first).
    pub id: i64,
    /// When.
    pub at: NaiveDateTime,
    /// Who.
    pub actor: String,
    /// Where from.
    #[diesel(deserialize_as = String)]
    pub via: Via,
    /// What.
    pub action: String,
    /// The kind of records.
    pub subject_kind: String,
    /// Which records (capped text).
    pub subjects: String,
    /// The filter of an "all matching" action.
    pub filter: Option<String>,
    /// How many.
    pub count: i64,
    /// The note given.
    pub note: Option<String>,
}

/// The newest `limit` actions with an id below `before` (keyset pagination), optionally of one
/// actor or action.
pub fn list(
    conn: &mut DbConnection,
    before: Option<i64>,
    actor: Option<&str>,
    action: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    let mut q = audit_log::table.into_boxed();
    if let Some(before) = before {
        q = q.filter(audit_log::id.lt(before));
    }
    if let Some(actor) = actor {
        q = q.filter(audit_log::actor.eq(actor));
    }
    if let Some(action) = action {
        q = q.filter(audit_log::action.eq(action));
    }
    q.order(audit_log::id.desc())
        .limit(limit)
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor,
            audit_log::via,
            audit_log::action,
            audit_log::subject_kind,
            audit_log::subjects,
            audit_log::filter,
            audit_log::count,
            audit_log::note,
        ))
        .load(conn)
}

/// Up to `limit` actions recorded before `cutoff` (retention; index `audit_log_at`).
pub fn recorded_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    audit_log::table
        .filter(audit_log::at.lt(cutoff))
        .order(audit_log::at)
        .limit(limit)
        .select(audit_log::id)
        .load(conn)
}

/// How many actions were recorded before `cutoff`.
pub fn count_recorded_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    audit_log::table
        .filter(audit_log::at.lt(cutoff))
        .count()
        .get_result(conn)
}

/// Deletes the actions `ids` still older than `cutoff`. Returns how many.
pub fn delete_recorded(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(
        audit_log::table
            .filter(audit_log::id.eq_any(ids))
            .filter(audit_log::at.lt(cutoff)),
    )
    .execute(conn)
}

/// The newest `limit` actions whose records include `subject` of `subject_kind` (an order's
/// timeline). The subjects are stored as one text, so this reads the audit log of that kind
/// without an index: support actions are few next to requests, and retention bounds them.
pub fn naming(
    conn: &mut DbConnection,
    subject_kind: &str,
    subject: &str,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    let literal = like_literal(subject);
    audit_log::table
        .filter(audit_log::subject_kind.eq(subject_kind))
        .filter(
            audit_log::subjects
                .eq(subject)
                .or(audit_log::subjects
                    .like(format!("{literal}, %"))
                    .escape('\\'))
                .or(audit_log::subjects
                    .like(format!("%, {literal}"))
                    .escape('\\'))
                .or(audit_log::subjects
                    .like(format!("%, {literal}, %"))
                    .escape('\\')),
        )
        .order(audit_log::id.desc())
        .limit(limit)
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor,
            audit_log::via,
            audit_log::action,
            audit_log::subject_kind,
            audit_log::subjects,
            audit_log::filter,
            audit_log::count,
            audit_log::note,
        ))
        .load(conn)
}

/// `text` as a LIKE pattern matching it literally (`\` escapes).
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
