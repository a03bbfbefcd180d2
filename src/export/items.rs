//! Orders and products as export items: claiming a batch under a lease, and settling it — per item
//! from the import report, or as a whole when the batch got no usable answer.
//!
//! One path serves both kinds; only the table each item lives in differs (`record_*`, `release_*`,
//! `claim_*`). Every write is guarded by the lease owner (compare-and-set), so an exporter whose
//! lease ran out leaves the item to the exporter that holds it now instead of overwriting its
//! result, and the rest of its batch is still settled and logged.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::breaker::{self, BreakerState};
use super::exchange::{self, Answered, BatchError, Counts, ExchangeLog, LogLine};
use super::report::{ReportLine, Verdict};
use super::{BatchOutcome, backoff, document, status};
use crate::config::{ExportSettings, WarehouseSettings};
use crate::db::schema::{orders, products};
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::orders::OrderInput;
use crate::products::ProductInput;
use crate::telemetry::Escaped;

/// Orders or products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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

/// A claimed order or product.
pub(super) struct Item {
    id: i64,
    pub reference: String,
    document: String,
    attempts: i32,
    /// The order's export status when claimed.
    previous_status: String,
    /// The product's `updated_at` when claimed: a change made while it is being sent is sent again.
    version: NaiveDateTime,
}

pub(super) enum Claim {
    Paused(BreakerState),
    Items(Vec<Item>),
}

/// Takes up to `batch_size` due items under a lease, unless the breaker is open.
pub(super) fn claim(
    conn: &mut DbConnection,
    kind: Kind,
    owner: &str,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
) -> anyhow::Result<Claim> {
    let now = db::now();
    let lease_until = now + TimeDelta::seconds(cfg.lease_secs);
    db::write_tx(conn, |conn| {
        if let Some(b) = breaker::open_at(conn, kind.noun(), now)? {
            return Ok(Claim::Paused(b));
        }
        Ok(Claim::Items(match kind {
            Kind::Orders => claim_orders(conn, owner, cfg, due_at, now, lease_until)?,
            Kind::Products => claim_products(conn, owner, cfg, due_at, now, lease_until)?,
        }))
    })
}

fn claim_orders(
    conn: &mut DbConnection,
    owner: &str,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<Item>> {
    let min_date = cfg
        .min_order_date
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        // No setting: any date both backends can store.
        .unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc());
    let due = orders::status
        .eq_any(&cfg.exportable_statuses)
        .and(orders::is_virtual.eq(false))
        .and(orders::export_status.eq_any([status::PENDING, status::FAILED]))
        .and(
            orders::export_next_at
                .is_null()
                .or(orders::export_next_at.le(due_at)),
        )
        .and(
            orders::export_lease_expires_at
                .is_null()
                .or(orders::export_lease_expires_at.lt(now)),
        )
        .and(orders::ordered_at.ge(min_date));
    let ids: Vec<i64> = crate::load_skip_locked!(
        conn,
        orders::table
            .filter(due)
            .order(orders::id)
            .limit(cfg.batch_size)
            .select(orders::id)
    )?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(orders::table.filter(orders::id.eq_any(&ids)))
        .set((
            orders::export_lease_owner.eq(owner),
            orders::export_lease_expires_at.eq(lease_until),
        ))
        .execute(conn)?;
    let rows: Vec<(i64, String, String, i32, String, NaiveDateTime)> = orders::table
        .filter(orders::id.eq_any(&ids))
        .order(orders::id)
        .select((
            orders::id,
            orders::increment_id,
            orders::document,
            orders::export_attempts,
            orders::export_status,
            orders::updated_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, reference, document, attempts, previous_status, version)| Item {
                id,
                reference,
                document,
                attempts,
                previous_status,
                version,
            },
        )
        .collect())
}

fn claim_products(
    conn: &mut DbConnection,
    owner: &str,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<Item>> {
    let due = products::export_pending
        .eq(true)
        .and(products::export_attempts.lt(cfg.max_attempts))
        .and(
            products::export_next_at
                .is_null()
                .or(products::export_next_at.le(due_at)),
        )
        .and(
            products::export_lease_expires_at
                .is_null()
                .or(products::export_lease_expires_at.lt(now)),
        );
    let skus: Vec<String> = crate::load_skip_locked!(
        conn,
        products::table
            .filter(due)
            .order(products::updated_at)
            .limit(cfg.batch_size)
            .select(products::sku)
    )?;
    if skus.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(products::table.filter(products::sku.eq_any(&skus)))
        .set((
            products::export_lease_owner.eq(owner),
            products::export_lease_expires_at.eq(lease_until),
        ))
        .execute(conn)?;
    let rows: Vec<(String, String, i32, NaiveDateTime)> = products::table
        .filter(products::sku.eq_any(&skus))
        .order(products::updated_at)
        .select((
            products::sku,
            products::document,
            products::export_attempts,
            products::updated_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(sku, document, attempts, version)| Item {
            id: 0,
            reference: sku,
            document,
            attempts,
            previous_status: String::new(),
            version,
        })
        .collect())
}

/// The import document for a batch.
pub(super) fn document(
    kind: Kind,
    batch: &[Item],
    started: NaiveDateTime,
) -> anyhow::Result<String> {
    fn parse<T: serde::de::DeserializeOwned>(i: &Item) -> anyhow::Result<(String, T)> {
        let doc = serde_json::from_str(&i.document).map_err(|e| {
            anyhow::anyhow!(
                "the stored document of {} cannot be read ({e}); put it again through the API",
                i.reference
            )
        })?;
        Ok((i.reference.clone(), doc))
    }
    Ok(match kind {
        Kind::Orders => {
            let docs: Vec<(String, OrderInput)> =
                batch.iter().map(parse).collect::<Result<_, _>>()?;
            document::orders_document(&docs, started)
        }
        Kind::Products => {
            let docs: Vec<(String, ProductInput)> =
                batch.iter().map(parse).collect::<Result<_, _>>()?;
            document::products_document(&docs)
        }
    })
}

/// What the report says about one item, and what follows for it.
struct Decision {
    verdict: Verdict,
    message: String,
    detail: Option<String>,
    attempts: i32,
    lost: bool,
    next_at: Option<NaiveDateTime>,
    /// The error kept with the item (`None` when accepted).
    error: Option<String>,
}

impl Decision {
    fn accepted(&self) -> bool {
        self.verdict != Verdict::Failure
    }
}

fn decide(item: &Item, lines: &[ReportLine], cfg: &ExportSettings, now: NaiveDateTime) -> Decision {
    // A reference with any success is a success; then duplicate; then failure.
    let mine: Vec<&ReportLine> = lines
        .iter()
        .filter(|l| l.reference == item.reference)
        .collect();
    let best = [Verdict::Success, Verdict::Duplicate, Verdict::Failure]
        .into_iter()
        .find_map(|v| mine.iter().find(|l| l.verdict == v).copied());
    let (verdict, message, detail) = match best {
        Some(l) => (l.verdict, l.message.clone(), l.detail.clone()),
        None => (Verdict::Failure, "not in import report".to_string(), None),
    };
    if verdict != Verdict::Failure {
        return Decision {
            verdict,
            message,
            detail,
            attempts: item.attempts,
            lost: false,
            next_at: None,
            error: None,
        };
    }
    let attempts = item.attempts + 1;
    let lost = attempts >= cfg.max_attempts;
    Decision {
        error: Some(match &detail {
            Some(d) => format!("{message} ({d})"),
            None => message.clone(),
        }),
        verdict,
        message,
        detail,
        attempts,
        lost,
        next_at: (!lost).then(|| now + backoff(cfg, attempts)),
    }
}

/// Settles a batch the warehouse answered with an import report.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle_items(
    conn: &mut DbConnection,
    kind: Kind,
    batch: &[Item],
    lines: &[ReportLine],
    cfg: &ExportSettings,
    owner: &str,
    log: &ExchangeLog,
    body: &str,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let mut outcome = BatchOutcome {
        items: batch.len(),
        ..BatchOutcome::default()
    };
    let mut counts = Counts::default();
    let mut log_lines = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    let mut last_refusal = None;
    for item in batch {
        let d = decide(item, lines, cfg, now);
        if d.error.is_some() {
            last_refusal.clone_from(&d.error);
        }
        match d.verdict {
            Verdict::Success => counts.successes += 1,
            Verdict::Duplicate => counts.duplicates += 1,
            Verdict::Failure => counts.failures += 1,
        }
        let recorded = match kind {
            Kind::Orders => record_order(conn, item, &d, owner, now)?,
            Kind::Products => Recorded::from_held(record_product(conn, item, &d, owner, now)?),
        };
        match recorded {
            Recorded::Written => {
                outcome.count(&d);
                tell(kind, item, &d, &mut events);
            }
            Recorded::ShippedMeanwhile => {
                tracing::info!(kind = kind.noun(), item = %item.reference,
                "order {}: the warehouse refused it, but it shipped completely while it was being \
                 sent, so it stays skipped and is not sent again", item.reference)
            }
            Recorded::NotHeld => tracing::warn!(kind = kind.noun(), item = %item.reference,
                "{} {}: another exporter took it over while this one waited for the warehouse; \
                 its result is left to that exporter", kind.noun(), item.reference),
        }
        log_lines.push(LogLine {
            reference: item.reference.clone(),
            result: d.verdict.as_str(),
            message: d.message,
            detail: d.detail,
        });
    }
    exchange::log_answered(
        conn,
        log,
        Answered {
            items: batch.len(),
            counts,
            refusal: last_refusal.as_deref(),
            response: body,
        },
        &log_lines,
    )?;
    breaker::reset(conn, kind.noun())?;
    feed::append(conn, &events)?;
    Ok(outcome)
}

impl BatchOutcome {
    fn count(&mut self, d: &Decision) {
        if d.accepted() {
            self.exported += 1;
        } else {
            self.failed += 1;
            self.lost += usize::from(d.lost);
            self.refusal = d.error.clone();
        }
    }
}

/// Logs a refused or lost item, and queues the feed event of an order whose export status changed.
fn tell(kind: Kind, item: &Item, d: &Decision, events: &mut Vec<NewEvent>) {
    let noun = kind.noun();
    // The warehouse's words, escaped: its answer is not ours to trust with the log's line breaks.
    let error = Escaped(d.error.as_deref().unwrap_or(""));
    if d.lost {
        tracing::error!(kind = noun, item = %item.reference, attempts = d.attempts, error = %error,
        "{noun} {} is lost: the warehouse refused it {} times ({error}); {}", item.reference,
        d.attempts, match kind {
            Kind::Orders => "fix the cause, then `wharf orders resend` or `wharf orders dismiss` it",
            Kind::Products => "fix the cause and change the product to send it again",
        });
    } else if !d.accepted() {
        let next = d.next_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        tracing::warn!(kind = noun, item = %item.reference, attempts = d.attempts, error = %error,
            next_attempt = next.as_deref().unwrap_or(""),
            "the warehouse refused {noun} {} ({error}); it is sent again at {} UTC",
            item.reference, next.as_deref().unwrap_or("the next run"));
    }
    if kind != Kind::Orders {
        return;
    }
    let new_status = order_status(d);
    if new_status != item.previous_status {
        events.push(NewEvent {
            kind: feed::ORDER_EXPORT_STATUS_CHANGED,
            payload: serde_json::json!({
                "order": item.reference, "status": new_status,
                "previous": item.previous_status, "message": d.message, "attempts": d.attempts,
            }),
        });
    }
}

fn order_status(d: &Decision) -> &'static str {
    if d.accepted() {
        status::EXPORTED
    } else if d.lost {
        status::LOST
    } else {
        status::FAILED
    }
}

/// What became of an item's verdict.
enum Recorded {
    /// Written: this exporter still held the item.
    Written,
    /// Not written: the order was refused, but a shipment completed it while it was being sent
    /// (`skipped`), so it must not turn into one to retry; its lease is released.
    ShippedMeanwhile,
    /// Not written: another exporter took the item over.
    NotHeld,
}

impl Recorded {
    fn from_held(held: bool) -> Recorded {
        if held {
            Recorded::Written
        } else {
            Recorded::NotHeld
        }
    }
}

/// Writes an order's verdict if this exporter still holds it. A refusal never overwrites `skipped`
/// (set by a shipment that completed the order meanwhile); an acceptance still wins, since the
/// warehouse has the order then.
fn record_order(
    conn: &mut DbConnection,
    item: &Item,
    d: &Decision,
    owner: &str,
    now: NaiveDateTime,
) -> QueryResult<Recorded> {
    let mine = orders::table
        .find(item.id)
        .filter(orders::export_lease_owner.eq(owner));
    let writable = mine.filter(
        orders::export_status
            .ne(status::SKIPPED)
            .or(d.accepted().into_sql::<diesel::sql_types::Bool>()),
    );
    let n = diesel::update(writable)
        .set((
            orders::export_status.eq(order_status(d)),
            orders::export_attempts.eq(d.attempts),
            orders::exported_at.eq(d.accepted().then_some(now)),
            orders::export_next_at.eq(d.next_at),
            orders::export_error.eq(&d.error),
            orders::export_lease_owner.eq(None::<String>),
            orders::export_lease_expires_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    if n == 1 {
        return Ok(Recorded::Written);
    }
    let released = diesel::update(mine.filter(orders::export_status.eq(status::SKIPPED)))
        .set((
            orders::export_lease_owner.eq(None::<String>),
            orders::export_lease_expires_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(if released == 1 {
        Recorded::ShippedMeanwhile
    } else {
        Recorded::NotHeld
    })
}

/// Writes a product's verdict if this exporter still holds it. Returns whether it did.
fn record_product(
    conn: &mut DbConnection,
    item: &Item,
    d: &Decision,
    owner: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let mine = products::table
        .find(&item.reference)
        .filter(products::export_lease_owner.eq(owner));
    let release = || {
        (
            products::export_lease_owner.eq(None::<String>),
            products::export_lease_expires_at.eq(None::<NaiveDateTime>),
        )
    };
    if !d.accepted() {
        let n = diesel::update(mine)
            .set((
                products::export_attempts.eq(d.attempts),
                products::export_next_at.eq(d.next_at),
                products::export_error.eq(&d.error),
                release(),
            ))
            .execute(conn)?;
        return Ok(n == 1);
    }
    // Done only if the product is still the one sent; a change stored meanwhile stays pending and
    // goes in the next batch (the compare on updated_at is atomic with the storefront's update).
    let n = diesel::update(mine.filter(products::updated_at.eq(item.version)))
        .set((
            products::export_pending.eq(false),
            products::export_attempts.eq(0),
            products::exported_at.eq(Some(now)),
            products::export_next_at.eq(None::<NaiveDateTime>),
            products::export_error.eq(None::<String>),
            release(),
        ))
        .execute(conn)?;
    if n == 1 {
        return Ok(true);
    }
    // Due from now: in the next run, as a run only takes what was due when it started.
    let n = diesel::update(mine)
        .set((
            products::export_attempts.eq(0),
            products::exported_at.eq(Some(now)),
            products::export_next_at.eq(Some(now)),
            products::export_error.eq(None::<String>),
            release(),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Settles a batch that got no usable answer: the breaker counts it, the items go back due after a
/// backoff (their attempts are not counted against them), and the log keeps the exchange.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle_failed_batch(
    conn: &mut DbConnection,
    kind: Kind,
    batch: &[Item],
    e: &BatchError,
    cfg: &ExportSettings,
    owner: &str,
    log: &ExchangeLog,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let b = breaker::record_failure(conn, kind.noun(), cfg, now)?;
    let retry_at = retry_after_failure(cfg, &b, now);
    let refs: Vec<&str> = batch.iter().map(|i| i.reference.as_str()).collect();
    match kind {
        Kind::Orders => diesel::update(
            orders::table
                .filter(orders::increment_id.eq_any(&refs))
                .filter(orders::export_lease_owner.eq(owner)),
        )
        .set((
            orders::export_next_at.eq(Some(retry_at)),
            orders::export_error.eq(Some(&e.message)),
            orders::export_lease_owner.eq(None::<String>),
            orders::export_lease_expires_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?,
        Kind::Products => diesel::update(
            products::table
                .filter(products::sku.eq_any(&refs))
                .filter(products::export_lease_owner.eq(owner)),
        )
        .set((
            products::export_next_at.eq(Some(retry_at)),
            products::export_error.eq(Some(&e.message)),
            products::export_lease_owner.eq(None::<String>),
            products::export_lease_expires_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?,
    };
    exchange::log_failed(conn, log, batch.len(), e)?;
    breaker::log_failure(kind.noun(), &b, &e.message, now);
    let at = retry_at.format("%Y-%m-%d %H:%M:%S");
    for r in &refs {
        let error = Escaped(&e.message);
        tracing::warn!(kind = kind.noun(), item = %r, error = %error, retry_at = %at,
            "{} {r} not sent: {error}; it is sent again at {at} UTC", kind.noun());
    }
    Ok(BatchOutcome::not_sent(batch.len(), e, retry_at, b, now))
}

/// When items of a batch that got no answer are due again: after the backoff for the breaker's
/// count, and not before the breaker closes.
pub(super) fn retry_after_failure(
    cfg: &ExportSettings,
    b: &BreakerState,
    now: NaiveDateTime,
) -> NaiveDateTime {
    let after_backoff = now + backoff(cfg, b.failures);
    match b.paused_until {
        Some(until) if until > after_backoff => until,
        _ => after_backoff,
    }
}
