//! The import report tables (`imports`, `import_lines`): written in the applying transaction, read
//! by support and the tests.

use diesel::pg::CopyFormat;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::{ImportLine, LineOutcome, Report};
use crate::db::copy::CopyRows;
use crate::db::schema::{import_lines, imports, replaced_import_lines};
use crate::db::{self, DbConnection};

/// The request an import report belongs to, as its header names it.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// The request.
    pub request_id: i64,
    /// Its operation (`inventory.update`, …).
    pub operation: &'a str,
    /// The warehouse's message sequence id.
    pub message_seq_id: i64,
}

/// Stores the import reports of applied requests: a header with its counts per request, then all
/// their lines. Run in the applying transaction.
pub fn write_imports(
    conn: &mut DbConnection,
    applied: &[(Header<'_>, &Report)],
) -> QueryResult<()> {
    let now = db::now();
    let headers: Vec<_> = applied
        .iter()
        .map(|(h, report)| {
            let s = report.summary;
            (
                imports::request_id.eq(h.request_id),
                imports::operation.eq(h.operation),
                imports::message_seq_id.eq(h.message_seq_id),
                imports::successes.eq(s.successes),
                imports::duplicates.eq(s.duplicates),
                imports::superseded.eq(s.superseded),
                imports::failures.eq(s.failures),
                imports::created_at.eq(now),
            )
        })
        .collect();
    for chunk in headers.chunks(1000) {
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(imports::table)
            .values(chunk)
            .execute(c))?;
    }
    let lines: Vec<&ImportLine> = applied.iter().flat_map(|(_, r)| &r.lines).collect();
    insert_import_lines(conn, &lines)
}

/// Stores import lines: on PostgreSQL with one binary `COPY`, on SQLite in multi-row inserts.
fn insert_import_lines(conn: &mut DbConnection, lines: &[&ImportLine]) -> QueryResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    match conn {
        DbConnection::Postgresql(c) => {
            let mut rows = CopyRows::new();
            for l in lines {
                rows.row(13)
                    .int8(l.request_id)
                    .int4(l.line_no)
                    .opt_int8(l.seq)
                    .text(&l.sku)
                    .text(&l.source)
                    .int4(l.units_received)
                    .int4(l.units_adjusted_orders)
                    .int4(l.units_adjusted_quotes)
                    .opt_int4(l.stored_qty)
                    .text(l.result.as_str())
                    .text(&l.message)
                    .timestamp(l.created_at)
                    .opt_text(l.reference.as_deref());
            }
            let data = rows.finish();
            diesel::copy_from(import_lines::table)
                .from_raw_data(import_lines::table, |sink| data.write(sink))
                .with_format(CopyFormat::Binary)
                .execute(c)?;
        }
        DbConnection::Sqlite(c) => {
            for chunk in lines.chunks(1000) {
                let rows: Vec<Row<'_>> = chunk.iter().map(|l| Row::from(*l)).collect();
                diesel::insert_into(import_lines::table)
                    .values(rows)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// An import line as inserted (borrowing the line, its outcome as its word).
#[derive(Insertable)]
#[diesel(table_name = import_lines)]
struct Row<'a> {
    request_id: i64,
    line_no: i32,
    seq: Option<i64>,
    sku: &'a str,
    source: &'a str,
    units_received: i32,
    units_adjusted_orders: i32,
    units_adjusted_quotes: i32,
    stored_qty: Option<i32>,
    result: &'static str,
    message: &'a str,
    created_at: chrono::NaiveDateTime,
    reference: Option<&'a str>,
}

impl<'a> From<&'a ImportLine> for Row<'a> {
    fn from(l: &'a ImportLine) -> Row<'a> {
        Row {
            request_id: l.request_id,
            line_no: l.line_no,
            seq: l.seq,
            sku: &l.sku,
            source: &l.source,
            units_received: l.units_received,
            units_adjusted_orders: l.units_adjusted_orders,
            units_adjusted_quotes: l.units_adjusted_quotes,
            stored_qty: l.stored_qty,
            result: l.result.as_str(),
            message: &l.message,
            created_at: l.created_at,
            reference: l.reference.as_deref(),
        }
    }
}

/// One line of an import report, as shown to support.
#[derive(Debug, Clone, Queryable, PartialEq, Eq)]
pub struct ImportLineView {
    /// The request.
    pub request_id: i64,
    /// Position in the request.
    pub line_no: i32,
    /// Sequence id of the line.
    pub seq: Option<i64>,
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units the warehouse reported.
    pub units_received: i32,
    /// Quantity stored after the line.
    pub stored_qty: Option<i32>,
    /// What became of the line.
    #[diesel(deserialize_as = String)]
    pub result: LineOutcome,
    /// What happened.
    pub message: String,
}

/// The import lines of every request that carried `message_seq_id` for `operation`, in request and
/// line order.
pub fn import_lines_for_message(
    conn: &mut DbConnection,
    operation: &str,
    message_seq_id: i64,
) -> QueryResult<Vec<ImportLineView>> {
    import_lines::table
        .inner_join(imports::table)
        .filter(imports::operation.eq(operation))
        .filter(imports::message_seq_id.eq(message_seq_id))
        .order((import_lines::request_id, import_lines::line_no))
        .select((
            import_lines::request_id,
            import_lines::line_no,
            import_lines::seq,
            import_lines::sku,
            import_lines::source,
            import_lines::units_received,
            import_lines::stored_qty,
            import_lines::result,
            import_lines::message,
        ))
        .load(conn)
}

/// The counts of a request's import report, as a note for the action that replaces it.
pub fn report_counts(conn: &mut DbConnection, id: i64) -> QueryResult<Option<String>> {
    let counts: Option<(i32, i32, i32, i32)> = imports::table
        .find(id)
        .select((
            imports::successes,
            imports::duplicates,
            imports::superseded,
            imports::failures,
        ))
        .first(conn)
        .optional()?;
    Ok(counts.map(|(s, d, x, f)| {
        format!(
            "replaced import report: {s} success(es), {d} duplicate(s), {x} superseded, {f} failure(s)"
        )
    }))
}

/// Moves a request's import report aside (its lines to `replaced_import_lines` under the action),
/// so the worker can write the new one.
pub fn replace_report(conn: &mut DbConnection, request_id: i64, action_id: i64) -> QueryResult<()> {
    let old = import_lines::table
        .filter(import_lines::request_id.eq(request_id))
        .select((
            action_id.into_sql::<BigInt>(),
            import_lines::line_no,
            import_lines::seq,
            import_lines::sku,
            import_lines::source,
            import_lines::units_received,
            import_lines::units_adjusted_orders,
            import_lines::units_adjusted_quotes,
            import_lines::stored_qty,
            import_lines::result,
            import_lines::message,
            import_lines::created_at,
            import_lines::reference,
        ));
    diesel::insert_into(replaced_import_lines::table)
        .values(old)
        .into_columns((
            replaced_import_lines::action_id,
            replaced_import_lines::line_no,
            replaced_import_lines::seq,
            replaced_import_lines::sku,
            replaced_import_lines::source,
            replaced_import_lines::units_received,
            replaced_import_lines::units_adjusted_orders,
            replaced_import_lines::units_adjusted_quotes,
            replaced_import_lines::stored_qty,
            replaced_import_lines::result,
            replaced_import_lines::message,
            replaced_import_lines::created_at,
            replaced_import_lines::reference,
        ))
        .execute(conn)?;
    // Lines first: on PostgreSQL import_lines has no foreign key to cascade from imports.
    diesel::delete(import_lines::table.filter(import_lines::request_id.eq(request_id)))
        .execute(conn)?;
    diesel::delete(imports::table.find(request_id)).execute(conn)?;
    Ok(())
}

/// Import reports with failed lines that support has not looked at yet: how many, and the oldest
/// `limit` of them as (request id, failed lines).
pub fn unseen_failures(conn: &mut DbConnection, limit: i64) -> QueryResult<(i64, Vec<(i64, i32)>)> {
    // Literal SQL, not bound values: the partial index `imports_unseen_failures` has this very
    // predicate, and PostgreSQL only matches a partial index to constants it can see in the plan.
    let unseen = || {
        imports::table.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "imports.failures > 0 AND imports.viewed_at IS NULL",
        ))
    };
    let count: i64 = unseen().count().get_result(conn)?;
    let oldest = unseen()
        .order(imports::request_id)
        .limit(limit)
        .select((imports::request_id, imports::failures))
        .load(conn)?;
    Ok((count, oldest))
}

/// Marks the import report of request `request_id` seen by support at `now` (the first look
/// counts; later ones change nothing). Returns whether it was unseen until now.
pub fn mark_viewed(
    conn: &mut DbConnection,
    request_id: i64,
    now: chrono::NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        imports::table
            .find(request_id)
            .filter(imports::viewed_at.is_null()),
    )
    .set(imports::viewed_at.eq(Some(now)))
    .execute(conn)?;
    Ok(n == 1)
}

/// Deletes the import lines of the requests `request_ids` (retention, in the transaction that
/// deleted those requests: `import_lines` has no foreign key to cascade from). Returns how many.
pub fn delete_lines_of(conn: &mut DbConnection, request_ids: &[i64]) -> QueryResult<usize> {
    if request_ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(import_lines::table.filter(import_lines::request_id.eq_any(request_ids)))
        .execute(conn)
}

/// Which import reports the console lists (`/admin/imports`), newest first.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    /// Reports of requests with this operation.
    pub operation: Option<crate::queue::Operation>,
    /// Reports with at least one line of this outcome.
    pub result: Option<LineOutcome>,
    /// Reports with a line for this SKU.
    pub sku: Option<String>,
    /// Written at or after.
    pub from: Option<chrono::NaiveDateTime>,
    /// Written before.
    pub until: Option<chrono::NaiveDateTime>,
    /// Keyset: only reports of requests with a lower id.
    pub before: Option<i64>,
}

/// The header of one import report.
#[derive(Debug, Clone, Queryable)]
pub struct ReportHeader {
    /// The request.
    pub request_id: i64,
    /// Its operation.
    #[diesel(deserialize_as = String)]
    pub operation: crate::queue::Operation,
    /// The warehouse's messageSeqId.
    pub message_seq_id: i64,
    /// Lines applied.
    pub successes: i32,
    /// Lines already applied.
    pub duplicates: i32,
    /// Lines older than what is stored.
    pub superseded: i32,
    /// Lines that failed.
    pub failures: i32,
    /// When it was written.
    pub created_at: chrono::NaiveDateTime,
}

type HeaderColumns = (
    imports::request_id,
    imports::operation,
    imports::message_seq_id,
    imports::successes,
    imports::duplicates,
    imports::superseded,
    imports::failures,
    imports::created_at,
);

const HEADER_COLUMNS: HeaderColumns = (
    imports::request_id,
    imports::operation,
    imports::message_seq_id,
    imports::successes,
    imports::duplicates,
    imports::superseded,
    imports::failures,
    imports::created_at,
);

/// Up to `limit` import reports matching `f`, newest (highest request id) first.
pub fn list_reports(
    conn: &mut DbConnection,
    f: &ReportFilter,
    limit: i64,
) -> QueryResult<Vec<ReportHeader>> {
    use diesel::dsl::sql;
    use diesel::sql_types::Bool;
    let mut q = imports::table.select(HEADER_COLUMNS).into_boxed();
    if let Some(op) = f.operation {
        q = q.filter(imports::operation.eq(op.as_str()));
    }
    // Literal predicates (not bound values), so PostgreSQL matches the partial indexes of
    // migration 2026-12-05-000018_console_data.
    q = match f.result {
        None => q,
        Some(LineOutcome::Success) => q.filter(sql::<Bool>("imports.successes > 0")),
        Some(LineOutcome::Duplicate) => q.filter(sql::<Bool>("imports.duplicates > 0")),
        Some(LineOutcome::Superseded) => q.filter(sql::<Bool>("imports.superseded > 0")),
        Some(LineOutcome::Failure) => q.filter(sql::<Bool>("imports.failures > 0")),
    };
    if let Some(sku) = &f.sku {
        q = q.filter(
            imports::request_id.eq_any(
                import_lines::table
                    .filter(import_lines::sku.eq(sku.clone()))
                    .select(import_lines::request_id),
            ),
        );
    }
    if let Some(from) = f.from {
        q = q.filter(imports::created_at.ge(from));
    }
    if let Some(until) = f.until {
        q = q.filter(imports::created_at.lt(until));
    }
    if let Some(before) = f.before {
        q = q.filter(imports::request_id.lt(before));
    }
    q.order(imports::request_id.desc()).limit(limit).load(conn)
}

/// The header of request `request_id`'s import report, if it has one.
pub fn report_header(
    conn: &mut DbConnection,
    request_id: i64,
) -> QueryResult<Option<ReportHeader>> {
    imports::table
        .find(request_id)
        .select(HEADER_COLUMNS)
        .first(conn)
        .optional()
}

/// One import line in full, as the console shows it (with its adjustments and what it is about).
#[derive(Debug, Clone, Queryable)]
pub struct ReportLine {
    /// The request.
    pub request_id: i64,
    /// Position in the request.
    pub line_no: i32,
    /// Sequence id of the line.
    pub seq: Option<i64>,
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units the warehouse reported.
    pub units_received: i32,
    /// Units subtracted for orders the warehouse had not seen.
    pub units_adjusted_orders: i32,
    /// Units subtracted for active carts.
    pub units_adjusted_quotes: i32,
    /// Quantity stored after the line.
    pub stored_qty: Option<i32>,
    /// What became of the line.
    #[diesel(deserialize_as = String)]
    pub result: LineOutcome,
    /// What happened.
    pub message: String,
    /// When.
    pub created_at: chrono::NaiveDateTime,
    /// The order number, for shipments.
    pub reference: Option<String>,
}

type LineColumns = (
    import_lines::request_id,
    import_lines::line_no,
    import_lines::seq,
    import_lines::sku,
    import_lines::source,
    import_lines::units_received,
    import_lines::units_adjusted_orders,
    import_lines::units_adjusted_quotes,
    import_lines::stored_qty,
    import_lines::result,
    import_lines::message,
    import_lines::created_at,
    import_lines::reference,
);

const LINE_COLUMNS: LineColumns = (
    import_lines::request_id,
    import_lines::line_no,
    import_lines::seq,
    import_lines::sku,
    import_lines::source,
    import_lines::units_received,
    import_lines::units_adjusted_orders,
    import_lines::units_adjusted_quotes,
    import_lines::stored_qty,
    import_lines::result,
    import_lines::message,
    import_lines::created_at,
    import_lines::reference,
);

/// Which lines of one report to show.
#[derive(Debug, Clone, Default)]
pub struct LineFilter {
    /// Only lines with this outcome.
    pub result: Option<LineOutcome>,
    /// Only lines for this SKU.
    pub sku: Option<String>,
    /// Keyset: only lines after this position.
    pub after: Option<i32>,
}

/// Up to `limit` lines of request `request_id`'s report matching `f`, in line order.
pub fn report_lines(
    conn: &mut DbConnection,
    request_id: i64,
    f: &LineFilter,
    limit: i64,
) -> QueryResult<Vec<ReportLine>> {
    let mut q = import_lines::table
        .filter(import_lines::request_id.eq(request_id))
        .select(LINE_COLUMNS)
        .into_boxed();
    if let Some(result) = f.result {
        q = q.filter(import_lines::result.eq(result.as_str()));
    }
    if let Some(sku) = &f.sku {
        q = q.filter(import_lines::sku.eq(sku.clone()));
    }
    if let Some(after) = f.after {
        q = q.filter(import_lines::line_no.gt(after));
    }
    q.order(import_lines::line_no).limit(limit).load(conn)
}

/// A position in a SKU's history: (request id, line number).
pub type LinePosition = (i64, i32);

/// Up to `limit` import lines for `sku` (at `source`, or any), newest first, before `before`:
/// every line that touched the SKU, with its request's operation.
pub fn sku_history(
    conn: &mut DbConnection,
    sku: &str,
    source: Option<&str>,
    before: Option<LinePosition>,
    limit: i64,
) -> QueryResult<Vec<(ReportLine, String)>> {
    let mut q = import_lines::table
        .inner_join(imports::table)
        .filter(import_lines::sku.eq(sku.to_string()))
        .select((LINE_COLUMNS, imports::operation))
        .into_boxed();
    if let Some(source) = source {
        q = q.filter(import_lines::source.eq(source.to_string()));
    }
    if let Some((request_id, line_no)) = before {
        q = q.filter(
            import_lines::request_id
                .lt(request_id)
                .or(import_lines::request_id
                    .eq(request_id)
                    .and(import_lines::line_no.lt(line_no))),
        );
    }
    q.order((
        import_lines::request_id.desc(),
        import_lines::line_no.desc(),
    ))
    .limit(limit)
    .load(conn)
}

/// Import reports with failed lines made after `since` (all of them without `since`): what a
/// console user has not seen yet (the partial index `imports_failed_created`).
pub fn failed_since(
    conn: &mut DbConnection,
    since: Option<chrono::NaiveDateTime>,
) -> QueryResult<i64> {
    // Literal SQL for the partial index's predicate (see `unseen_failures`).
    let mut q = imports::table
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "imports.failures > 0",
        ))
        .into_boxed();
    if let Some(since) = since {
        q = q.filter(imports::created_at.gt(since));
    }
    q.count().get_result(conn)
}

/// Marks every import report with failed lines made up to `until` and not yet seen as seen at
/// `now` (a console user's "mark as seen"; the alert monitor then resolves `imports.failed`).
/// Returns how many.
pub fn mark_failures_viewed(
    conn: &mut DbConnection,
    until: chrono::NaiveDateTime,
    now: chrono::NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        imports::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "imports.failures > 0 AND imports.viewed_at IS NULL",
            ))
            .filter(imports::created_at.le(until)),
    )
    .set(imports::viewed_at.eq(Some(now)))
    .execute(conn)
}
