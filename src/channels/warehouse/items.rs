//! Orders and products as export items: claiming a batch of their tasks under a lease, building
//! the import document from the current order or product, and settling the batch — per item from
//! the import report, or as a whole when the batch got no usable answer.
//!
//! One path serves both kinds; only where the subject lives differs (`claim_*`, `load_*`,
//! `record_*`). Every task write is guarded by the lease owner (compare-and-set), so an exporter
//! whose lease ran out leaves the item to the exporter that holds it now instead of overwriting its
//! result, and the rest of its batch is still settled and logged.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::report::ReportLine;
use super::{backoff_of, document};
use crate::config::{ExportSettings, WarehouseSettings};
use crate::db::lease::Lease;
use crate::db::schema::{orders, outbound_tasks, products};
use crate::db::{self, DbConnection, text_enum};
use crate::imports::LineOutcome;
use crate::orders::OrderInput;
use crate::orders::export::{self as tasks, ExportStatus, ORDER_INSERT};
use crate::outbound::breaker::{self, BreakerState};
use crate::outbound::{self, Outcome, Task, TaskState};
use crate::products::ProductInput;
use crate::products::export::PRODUCT_MERGE;

/// Orders or products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Orders,
    Products,
}

impl Kind {
    /// The word for one item, also the breaker's and the log's kind.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Orders => "order",
            Kind::Products => "product",
        }
    }

    /// The outbound task kind its items are.
    pub fn task_kind(self) -> outbound::TaskKind {
        match self {
            Kind::Orders => ORDER_INSERT,
            Kind::Products => PRODUCT_MERGE,
        }
    }

    /// The runner's name in the log.
    pub fn runner(self) -> &'static str {
        match self {
            Kind::Orders => "warehouse orders",
            Kind::Products => "warehouse products",
        }
    }

    /// The task kinds its schedule sends: orders with their cancellations, or products.
    pub fn scheduled(self) -> &'static [outbound::TaskKind] {
        match self {
            Kind::Orders => &[ORDER_INSERT, tasks::ORDER_CANCEL],
            Kind::Products => &[PRODUCT_MERGE],
        }
    }

    pub fn settings(self, w: &WarehouseSettings) -> &ExportSettings {
        match self {
            Kind::Orders => &w.orders,
            Kind::Products => &w.products,
        }
    }

    pub fn resource(self) -> &'static str {
        match self {
            Kind::Orders => "remoteorder/imports/importitems.xml",
            Kind::Products => "remotewarehouse/imports/importitems.xml",
        }
    }

    pub fn operation(self) -> &'static str {
        match self {
            Kind::Orders => "insert",
            Kind::Products => "merge",
        }
    }
}

/// A claimed order or product (file channels claim orders the same way, see
/// `crate::channels::sftp::export`).
pub(crate) struct Item {
    pub task: Task,
    /// The order's id (0 for a product).
    pub order_id: i64,
    /// Its stored document (JSON), read when claimed.
    document: Option<String>,
    /// The order's export status when claimed.
    pub previous_status: Option<ExportStatus>,
    /// The product's `updated_at` when claimed: a change made while it is being sent is sent again.
    pub version: NaiveDateTime,
}

impl Item {
    pub fn reference(&self) -> &str {
        &self.task.subject
    }
}

pub(super) enum Claim {
    Paused(BreakerState),
    Items(Vec<Item>),
}

/// Takes up to `batch_size` due items under `lease`, unless the breaker is open.
pub(super) fn claim(
    conn: &mut DbConnection,
    kind: Kind,
    lease: &Lease,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
) -> anyhow::Result<Claim> {
    let mut paused = None;
    let tasks = outbound::claim(conn, lease, |conn| {
        if let Some(b) = breaker::open_at(conn, kind.noun(), lease.now)? {
            paused = Some(b);
            return Ok(Vec::new());
        }
        match kind {
            Kind::Orders => claim_orders(conn, ORDER_INSERT, cfg, due_at, lease.now),
            Kind::Products => claim_products(conn, cfg, due_at, lease.now),
        }
    })?;
    if let Some(b) = paused {
        return Ok(Claim::Paused(b));
    }
    if tasks.is_empty() {
        return Ok(Claim::Items(Vec::new()));
    }
    // Read after the claim committed: what is sent is the subject as it is now.
    Ok(Claim::Items(match kind {
        Kind::Orders => load_orders(conn, tasks, cfg, lease)?,
        Kind::Products => load_products(conn, tasks)?,
    }))
}

/// The earliest order date exported (`min_order_date`), or any date both backends can store.
fn min_order_date(cfg: &ExportSettings) -> NaiveDateTime {
    cfg.min_order_date
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc())
}

/// Due order tasks of `task` (the warehouse's `order.insert`, or a file channel's) whose order is
/// exportable now: an exportable status (a cancelled order is not, so an order cancelled before
/// export is never sent), not virtual, placed on or after `min_order_date`. A task that already
/// went into an order file still being written (its `batch_id` names the file) is not taken: that
/// file's run, or the one that takes it over, settles it.
pub(crate) fn claim_orders(
    conn: &mut DbConnection,
    task: outbound::TaskKind,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<Vec<i64>> {
    use outbound_tasks as t;
    let min_date = min_order_date(cfg);
    // Correlated on the order's unique number: an `IN (SELECT …)` of every exportable order made
    // SQLite build that whole list again for each batch's claim.
    let exportable = orders::table
        .filter(orders::increment_id.eq(t::subject))
        .filter(orders::status.eq_any(&cfg.exportable_statuses))
        .filter(orders::is_virtual.eq(false))
        .filter(orders::ordered_at.ge(min_date));
    crate::load_skip_locked!(
        conn,
        t::table
            .filter(crate::outbound_due!(task, due_at, now))
            .filter(t::batch_id.is_null())
            .filter(diesel::dsl::exists(exportable))
            .order(t::id)
            .limit(cfg.batch_size)
            .select(t::id)
    )
}

/// Due product tasks (one refused `max_attempts` times is not taken again).
fn claim_products(
    conn: &mut DbConnection,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<Vec<i64>> {
    use outbound_tasks as t;
    crate::load_skip_locked!(
        conn,
        t::table
            .filter(crate::outbound_due!(PRODUCT_MERGE, due_at, now))
            .filter(t::attempts.lt(cfg.max_attempts))
            .order(t::id)
            .limit(cfg.batch_size)
            .select(t::id)
    )
}

/// An order as read for sending, with what decides whether it is still exportable.
#[derive(Queryable)]
struct OrderToSend {
    increment_id: String,
    id: i64,
    document: String,
    export_status: String,
    updated_at: NaiveDateTime,
    status: String,
    is_virtual: bool,
    ordered_at: NaiveDateTime,
}

impl OrderToSend {
    fn exportable(&self, cfg: &ExportSettings) -> bool {
        cfg.exportable_statuses.contains(&self.status)
            && !self.is_virtual
            && self.ordered_at >= min_order_date(cfg)
    }
}

/// The claimed orders as they are now. One that stopped being exportable between the claim's
/// look at it and this read (a storefront cancel committing meanwhile) is not sent: its task is let
/// go as it was, without counting an attempt.
pub(crate) fn load_orders(
    conn: &mut DbConnection,
    tasks: Vec<Task>,
    cfg: &ExportSettings,
    lease: &Lease,
) -> QueryResult<Vec<Item>> {
    let refs: Vec<&str> = tasks.iter().map(|t| t.subject.as_str()).collect();
    let query = orders::table
        .filter(orders::increment_id.eq_any(&refs))
        // Locked in id order, as every writer of orders locks them, so no two wait for each other.
        .order(orders::id)
        .select((
            orders::increment_id,
            orders::id,
            orders::document,
            orders::export_status,
            orders::updated_at,
            orders::status,
            orders::is_virtual,
            orders::ordered_at,
        ));
    // On PostgreSQL the read waits for a storefront update that holds an order's row: that update
    // checked the lease before this claim took it, so its change is what must be sent (a later
    // update finds the lease and is refused). SQLite's writers never overlap this read that way.
    let rows: Vec<OrderToSend> = match conn {
        DbConnection::Postgresql(c) => query.for_share().load(c)?,
        DbConnection::Sqlite(c) => query.load(c)?,
    };
    let mut by_ref: HashMap<String, OrderToSend> = rows
        .into_iter()
        .map(|r| (r.increment_id.clone(), r))
        .collect();
    let mut items = Vec::with_capacity(tasks.len());
    let mut not_exportable = Vec::new();
    for task in tasks {
        let row = by_ref.remove(&task.subject);
        if row.as_ref().is_some_and(|r| !r.exportable(cfg)) {
            not_exportable.push(task.id);
            continue;
        }
        let (order_id, document, status, version) = match row {
            Some(r) => (r.id, Some(r.document), Some(r.export_status), r.updated_at),
            None => (0, None, None, db::now()),
        };
        items.push(Item {
            task,
            order_id,
            document,
            previous_status: status.map(|s| text_enum::read(&s)).transpose()?,
            version,
        });
    }
    if !not_exportable.is_empty() {
        outbound::release(conn, &not_exportable, &lease.owner, None)?;
    }
    Ok(items)
}

fn load_products(conn: &mut DbConnection, tasks: Vec<Task>) -> QueryResult<Vec<Item>> {
    let skus: Vec<&str> = tasks.iter().map(|t| t.subject.as_str()).collect();
    let rows: Vec<(String, String, NaiveDateTime)> = products::table
        .filter(products::sku.eq_any(&skus))
        .select((products::sku, products::document, products::updated_at))
        .load(conn)?;
    let mut by_sku: HashMap<String, (String, NaiveDateTime)> = rows
        .into_iter()
        .map(|(sku, doc, at)| (sku, (doc, at)))
        .collect();
    Ok(tasks
        .into_iter()
        .map(|task| {
            let (document, version) = match by_sku.remove(&task.subject) {
                Some((doc, at)) => (Some(doc), at),
                None => (None, db::now()),
            };
            Item {
                task,
                order_id: 0,
                document,
                previous_status: None,
                version,
            }
        })
        .collect())
}

/// The import document for the items whose stored document reads, and the items whose does not,
/// each with why (they fail on their own; the others are sent).
pub(super) fn document(
    kind: Kind,
    batch: Vec<Item>,
    started: NaiveDateTime,
) -> (Option<String>, Vec<Item>, Vec<(Item, String)>) {
    let mut sent = Vec::with_capacity(batch.len());
    let mut unreadable = Vec::new();
    let xml = match kind {
        Kind::Orders => {
            let docs: Vec<(String, OrderInput)> = readable(batch, &mut sent, &mut unreadable);
            (!docs.is_empty()).then(|| document::orders_document(&docs, started))
        }
        Kind::Products => {
            let docs: Vec<(String, ProductInput)> = readable(batch, &mut sent, &mut unreadable);
            (!docs.is_empty()).then(|| document::products_document(&docs))
        }
    };
    (xml, sent, unreadable)
}

/// The stored documents of `batch` that read, by reference; the items they belong to go to
/// `sent`, the others with why to `unreadable`.
pub(crate) fn readable<T: serde::de::DeserializeOwned>(
    batch: Vec<Item>,
    sent: &mut Vec<Item>,
    unreadable: &mut Vec<(Item, String)>,
) -> Vec<(String, T)> {
    let mut docs = Vec::with_capacity(batch.len());
    for i in batch {
        match parse(&i) {
            Ok(d) => {
                docs.push((i.reference().to_string(), d));
                sent.push(i);
            }
            Err(e) => unreadable.push((i, e)),
        }
    }
    docs
}

/// An item's stored document, or why it cannot be read.
fn parse<T: serde::de::DeserializeOwned>(i: &Item) -> Result<T, String> {
    let Some(doc) = &i.document else {
        return Err(format!("{} is no longer stored", i.reference()));
    };
    serde_json::from_str(doc).map_err(|e| {
        format!(
            "the stored document of {} cannot be read ({e}); put it again through the API",
            i.reference()
        )
    })
}

/// What the report says about one item, and what follows for it.
pub(super) struct Decision {
    pub verdict: LineOutcome,
    pub message: String,
    pub detail: Option<String>,
    pub attempts: i32,
    pub lost: bool,
    pub next_at: Option<NaiveDateTime>,
    /// The error kept with the item (`None` when accepted).
    pub error: Option<String>,
}

impl Decision {
    pub fn accepted(&self) -> bool {
        self.verdict.is_accepted()
    }

    /// A refusal with `message` (and `detail`): an attempt counted, lost at `max_attempts`.
    pub fn refused(
        item: &Item,
        message: String,
        detail: Option<String>,
        cfg: &ExportSettings,
        now: NaiveDateTime,
    ) -> Decision {
        let error = match &detail {
            Some(d) => format!("{message} ({d})"),
            None => message.clone(),
        };
        let outcome = Outcome::refused(
            item.task.attempts,
            cfg.max_attempts,
            backoff_of(cfg),
            error.clone(),
            now,
        );
        let (attempts, next_at) = outcome.attempts_and_due();
        Decision {
            error: Some(error),
            verdict: LineOutcome::Failure,
            message,
            detail,
            attempts,
            lost: matches!(outcome, Outcome::Lost { .. }),
            next_at,
        }
    }

    /// How the task is settled when refused.
    fn outcome(&self) -> Outcome {
        let error = self.error.clone().unwrap_or_default();
        match self.next_at {
            Some(run_after) if !self.lost => Outcome::Failed {
                attempts: self.attempts,
                run_after,
                error,
            },
            _ => Outcome::Lost {
                attempts: self.attempts,
                error,
            },
        }
    }

    /// The order's export status this decision leads to.
    pub fn order_status(&self) -> ExportStatus {
        if self.accepted() {
            ExportStatus::Exported
        } else if self.lost {
            ExportStatus::Lost
        } else {
            ExportStatus::Failed
        }
    }
}

pub(super) fn decide(
    item: &Item,
    lines: &[ReportLine],
    cfg: &ExportSettings,
    now: NaiveDateTime,
) -> Decision {
    // A reference with any success is a success; then duplicate; then failure.
    let mine: Vec<&ReportLine> = lines
        .iter()
        .filter(|l| l.reference == item.reference())
        .collect();
    let best = [
        LineOutcome::Success,
        LineOutcome::Duplicate,
        LineOutcome::Failure,
    ]
    .into_iter()
    .find_map(|v| mine.iter().find(|l| l.verdict == v).copied());
    let (verdict, message, detail) = match best {
        Some(l) => (l.verdict, l.message.clone(), l.detail.clone()),
        None => (
            LineOutcome::Failure,
            "not in import report".to_string(),
            None,
        ),
    };
    if verdict == LineOutcome::Failure {
        return Decision::refused(item, message, detail, cfg, now);
    }
    Decision {
        verdict,
        message,
        detail,
        attempts: item.task.attempts,
        lost: false,
        next_at: None,
        error: None,
    }
}

/// What became of an item's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recorded {
    /// Written: this exporter still held the item.
    Written,
    /// Not written: the order was refused, but a shipment completed it while it was being sent
    /// (`skipped`), so it must not turn into one to retry; its lease is released.
    ShippedMeanwhile,
    /// Not written: another exporter took the item over.
    NotHeld,
}

/// Writes the verdicts of a batch, as far as this exporter still holds its items.
pub(super) fn record(
    conn: &mut DbConnection,
    kind: Kind,
    batch: &[Item],
    decisions: &[Decision],
    owner: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<Recorded>> {
    match kind {
        Kind::Orders => record_orders(conn, batch, decisions, owner, now),
        Kind::Products => batch
            .iter()
            .zip(decisions)
            .map(|(i, d)| record_product(conn, i, d, owner, now))
            .collect(),
    }
}

/// Orders: the accepted ones in one statement each for their tasks and their export status (an
/// acceptance wins even over `skipped`, since the warehouse has the order then), the refused ones
/// one by one (a refusal never overwrites `skipped`). An accepted order cancelled while it was
/// being sent gets its cancellation now, in this transaction.
fn record_orders(
    conn: &mut DbConnection,
    batch: &[Item],
    decisions: &[Decision],
    owner: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<Recorded>> {
    let ids: Vec<i64> = batch.iter().map(|i| i.order_id).collect();
    tasks::lock_orders(conn, &ids)?;
    let accepted: Vec<i64> = batch
        .iter()
        .zip(decisions)
        .filter(|(_, d)| d.accepted())
        .map(|(i, _)| i.task.id)
        .collect();
    let done: std::collections::HashSet<String> =
        outbound::settle_done(conn, &accepted, owner, now)?
            .into_iter()
            .collect();
    let done_orders: Vec<i64> = batch
        .iter()
        .filter(|i| done.contains(i.reference()))
        .map(|i| i.order_id)
        .collect();
    tasks::set_export_status(conn, &done_orders, ExportStatus::Exported, Some(now))?;
    super::cancel::enqueue_cancelled(conn, &done_orders, now)?;
    let mut recorded = Vec::with_capacity(batch.len());
    for (item, d) in batch.iter().zip(decisions) {
        recorded.push(if d.accepted() {
            if done.contains(item.reference()) {
                Recorded::Written
            } else {
                Recorded::NotHeld
            }
        } else {
            record_refused_order(conn, item, d, owner, now)?
        });
    }
    Ok(recorded)
}

fn record_refused_order(
    conn: &mut DbConnection,
    item: &Item,
    d: &Decision,
    owner: &str,
    now: NaiveDateTime,
) -> QueryResult<Recorded> {
    let id = item.task.id;
    if outbound::settle(conn, id, owner, &d.outcome(), Some(TaskState::Skipped), now)? {
        tasks::set_export_status(conn, &[item.order_id], d.order_status(), None)?;
        return Ok(Recorded::Written);
    }
    let released = outbound::release(conn, &[id], owner, Some(TaskState::Skipped))?;
    Ok(if released == 1 {
        Recorded::ShippedMeanwhile
    } else {
        Recorded::NotHeld
    })
}

/// Writes a product's verdict if this exporter still holds it. Done only if the product is still
/// the one sent; a change stored meanwhile keeps the task pending, due from now (in the next run,
/// as a run only takes what was due when it started).
fn record_product(
    conn: &mut DbConnection,
    item: &Item,
    d: &Decision,
    owner: &str,
    now: NaiveDateTime,
) -> QueryResult<Recorded> {
    let id = item.task.id;
    let written = if !d.accepted() {
        outbound::settle(conn, id, owner, &d.outcome(), None, now)?
    } else {
        // Compared under the product's row lock (a no-op write takes it), so the storefront's
        // change either came before (then the task stays pending) or waits for this commit (then it
        // finds the task done and adds a new one).
        let unchanged =
            crate::products::export::lock_if_unchanged(conn, item.reference(), item.version)?;
        let written = if unchanged {
            outbound::settle_done(conn, &[id], owner, now)?.len() == 1
        } else {
            outbound::settle(
                conn,
                id,
                owner,
                &Outcome::Again { run_after: now },
                None,
                now,
            )?
        };
        if written {
            crate::products::export::exported(conn, item.reference(), now)?;
        }
        written
    };
    Ok(if written {
        Recorded::Written
    } else {
        Recorded::NotHeld
    })
}
