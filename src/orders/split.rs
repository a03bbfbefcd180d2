//! Splitting an order into child orders (`POST /api/v1/orders/{increment_id}/split`), all in one
//! transaction with the parent locked (as a PUT locks it):
//!
//! - The parent must still be open: not cancelled, not complete, not already split into children
//!   that took all of it, and the warehouse must not have it (exported, or being exported right
//!   now): the warehouse would ship it as it received it.
//! - Each child is a new order (its number must be unused) with the parent's document — status,
//!   source (and so channel), currency, addresses, methods, coupon, note, when the customer ordered —
//!   and only the lines it takes. It gets its own export task, and is sent to the warehouse as an
//!   order of its own.
//! - Children take units that have not shipped, per SKU, from the parent's lines of that SKU in
//!   line order. Shipped units stay on the parent.
//! - The parent keeps the rest: its lines are reduced, and a line fully taken is removed. If it
//!   keeps nothing its status becomes `split` and its export is skipped (the children are exported
//!   instead); if all it keeps has shipped it is `complete`, as a shipment would have made it.
//! - Before the commit, the units of every SKU (ordered and shipped), over the parent and its new
//!   children, are checked to equal the parent's before the split; if they ever did not, nothing
//!   is stored and the call fails as an internal error.
//! - The feed gets `order.split`; the parent's channel (if one claims its source) hears `split`.
//!
//! Amounts. Unit prices are copied. A line's row totals (net, gross, tax) are shared out in
//! proportion to the units, rounded to the amount's own decimals (at least cents), so that the
//! shares of a line add up to exactly its row total: with `k` of the line's `q` units taken before
//! and `n` now, a share is `round(row × (k+n)/q) − round(row × k/q)`; the parent keeps what remains.
//! A child's totals are the sums of its lines (subtotal = net, tax = row tax, grand total = gross),
//! with no shipping and no discount: those were charged once, on the order the customer placed, and
//! stay with the parent, whose subtotal, tax and grand total are the original's less what the
//! children took (never below zero). The storefront may PUT a child with other amounts until the
//! warehouse has it.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::export::{self as tasks, ExportStatus, SHIPPED_BEFORE_EXPORT};
use super::payloads::{OrderSplit, OrderSplitChild};
use super::sync::{self, Change};
use super::update::{self, Refusal, RefusalCode, Stored};
use super::{
    COMPLETE, MAX_LINES, OrderError, OrderInput, OrderLineInput, OrderLineView, SPLIT, Totals,
};
use crate::config::ChannelSettings;
use crate::db::schema::{order_lines, orders};
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::outbound;
use crate::validate::{Invalid, check_key, check_sku};

/// Most child orders one split makes.
pub const MAX_CHILDREN: usize = 100;

/// How to split an order: the child orders to make and what each takes of it. What no child takes
/// stays on the order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitInput {
    /// The child orders, 1 to 100, made in this order.
    pub children: Vec<SplitChildInput>,
}

/// One child order of a split.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitChildInput {
    /// Its order number: a new one (1–64 characters), used by no order yet.
    pub increment_id: String,
    /// What it takes of the parent: one line per SKU (1 to 1000 lines).
    pub lines: Vec<SplitLine>,
}

/// Units of one SKU.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitLine {
    /// SKU (one of the parent's).
    pub sku: String,
    /// Units (> 0).
    pub qty: i32,
}

impl SplitInput {
    /// Checks what can be checked without the parent; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.children.is_empty() || self.children.len() > MAX_CHILDREN {
            return Err(Invalid::new(
                "children",
                format!("give 1 to {MAX_CHILDREN} child orders"),
            ));
        }
        let mut numbers: HashMap<&str, usize> = HashMap::new();
        for (i, child) in self.children.iter().enumerate() {
            let field = format!("children[{i}].increment_id");
            check_key(&field, &child.increment_id)?;
            if let Some(first) = numbers.insert(&child.increment_id, i) {
                return Err(Invalid::new(
                    field,
                    format!(
                        "{:?} is the number of children[{first}] already; give each child its own \
                         order number",
                        child.increment_id
                    ),
                ));
            }
            child.validate(i)?;
        }
        Ok(())
    }
}

impl SplitChildInput {
    fn validate(&self, i: usize) -> Result<(), Invalid> {
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(Invalid::new(
                format!("children[{i}].lines"),
                format!("give 1 to {MAX_LINES} lines"),
            ));
        }
        let mut skus: HashMap<&str, usize> = HashMap::new();
        for (j, l) in self.lines.iter().enumerate() {
            let field = format!("children[{i}].lines[{j}]");
            check_sku(&format!("{field}.sku"), &l.sku)?;
            if let Some(first) = skus.insert(&l.sku, j) {
                return Err(Invalid::new(
                    format!("{field}.sku"),
                    format!(
                        "SKU {:?} is on children[{i}].lines[{first}] already; give one line per SKU",
                        l.sku
                    ),
                ));
            }
            if l.qty <= 0 {
                return Err(Invalid::new(
                    format!("{field}.qty"),
                    format!("{} is not a quantity above 0", l.qty),
                ));
            }
        }
        Ok(())
    }
}

/// Splits order `increment_id` as `input` says, under the rules of the module doc. The parent's
/// channel (of `channels`) hears of it; exporters and feed readers are woken after the commit.
pub fn split(
    conn: &mut DbConnection,
    increment_id: &str,
    input: &SplitInput,
    channels: &[ChannelSettings],
) -> Result<(), OrderError> {
    check_key("increment_id", increment_id)?;
    input.validate()?;
    db::write_tx(conn, |conn| {
        let now = db::now();
        let parent = update::lock(conn, increment_id)?
            .ok_or_else(|| OrderError::NotFound(increment_id.to_string()))?;
        refuse(increment_id, &parent)?;
        let before = super::lines_of(conn, parent.id, &parent.document)?;
        let plan = plan(increment_id, &parent, &before, input)?;
        let mut ids = vec![parent.id];
        for (i, (child, document)) in input.children.iter().zip(&plan.children).enumerate() {
            ids.push(create_child(
                conn,
                &parent,
                i,
                &child.increment_id,
                document,
                channels,
                now,
            )?);
        }
        let mut events = keep(conn, increment_id, &parent, &plan, input, channels, now)?;
        check_units(conn, increment_id, &before, &ids)?;
        let source = &parent.document.source;
        sync::changed(conn, channels, increment_id, source, Change::Split, now)?;
        events.push(split_event(increment_id, input, &plan.kept)?);
        feed::append(conn, &events)?;
        Ok::<(), OrderError>(())
    })?;
    outbound::wake_exporters();
    feed::wake_readers();
    Ok(())
}

/// Why the parent cannot be split, if it cannot.
fn refuse(increment_id: &str, parent: &Stored) -> Result<(), Refusal> {
    let refusal = |code, detail| Refusal {
        code,
        detail,
        fields: Vec::new(),
    };
    if update::is_canceled(&parent.status) {
        return Err(refusal(
            RefusalCode::Canceled,
            format!(
                "order {increment_id} is cancelled, so there is nothing to split; place new orders \
                 instead"
            ),
        ));
    }
    if parent.status == COMPLETE {
        return Err(refusal(
            RefusalCode::Complete,
            format!("order {increment_id} has shipped completely; nothing of it is left to split"),
        ));
    }
    if parent.status == SPLIT {
        return Err(update::split_empty_refusal(
            increment_id,
            parent,
            Vec::new(),
        ));
    }
    if let Some(reason) = update::lock_reason(parent) {
        return Err(refusal(
            RefusalCode::Locked,
            format!(
                "order {increment_id} {reason}, and the warehouse ships it as it received it, so it \
                 can no longer be split. To ship it differently, cancel it (POST \
                 /api/v1/orders/{increment_id}/cancel) and place new orders."
            ),
        ));
    }
    Ok(())
}

/// A line of the parent while the children take from it.
struct ParentLine {
    line: OrderLineInput,
    shipped: i32,
    /// Units the children took so far.
    taken: i32,
}

impl ParentLine {
    /// Units still there to take: not shipped, not taken.
    fn left(&self) -> i64 {
        i64::from(self.line.qty) - i64::from(self.shipped) - i64::from(self.taken)
    }
}

/// What the split writes: each child's document, and the parent's with what it keeps.
struct Plan {
    children: Vec<OrderInput>,
    kept: OrderInput,
    /// Units shipped of each line the parent keeps.
    kept_shipped: Vec<i32>,
}

/// Decides what each child takes and what the parent keeps, or names the field that asks for
/// what the parent does not have. Writes nothing.
fn plan(
    increment_id: &str,
    parent: &Stored,
    before: &[OrderLineView],
    input: &SplitInput,
) -> Result<Plan, OrderError> {
    let mut lines: Vec<ParentLine> = before
        .iter()
        .map(|l| ParentLine {
            line: l.line.clone(),
            shipped: l.qty_shipped,
            taken: 0,
        })
        .collect();
    let mut children = Vec::with_capacity(input.children.len());
    for (i, child) in input.children.iter().enumerate() {
        let mut taken = Vec::new();
        for (j, want) in child.lines.iter().enumerate() {
            let field = format!("children[{i}].lines[{j}]");
            take(increment_id, &mut lines, want, &field, &mut taken)?;
        }
        let document = child_document(parent, taken)
            .ok_or_else(|| too_large(increment_id, &format!("children[{i}]")))?;
        children.push(document);
    }
    let (kept, kept_shipped) = kept_document(&parent.document, &lines, &children)
        .ok_or_else(|| too_large(increment_id, "children"))?;
    Ok(Plan {
        children,
        kept,
        kept_shipped,
    })
}

fn too_large(increment_id: &str, field: &str) -> OrderError {
    Invalid::new(
        field,
        format!(
            "the amounts of order {increment_id} are too large to share out between orders; \
             PUT the order with amounts wharf can count, then split it"
        ),
    )
    .into()
}

/// Takes `want` from the parent's lines of its SKU, in line order, adding a line per portion to
/// `out`. `field` is the JSON path of `want`.
fn take(
    increment_id: &str,
    lines: &mut [ParentLine],
    want: &SplitLine,
    field: &str,
    out: &mut Vec<OrderLineInput>,
) -> Result<(), OrderError> {
    let of_sku = || lines.iter().filter(|l| l.line.sku == want.sku);
    if of_sku().next().is_none() {
        return Err(Invalid::new(
            format!("{field}.sku"),
            format!(
                "order {increment_id} has no line of SKU {:?}; a child can take only what its \
                 parent holds",
                want.sku
            ),
        )
        .into());
    }
    let left: i64 = of_sku().map(ParentLine::left).sum();
    if i64::from(want.qty) > left {
        let ordered: i64 = of_sku().map(|l| i64::from(l.line.qty)).sum();
        let shipped: i64 = of_sku().map(|l| i64::from(l.shipped)).sum();
        let taken: i64 = of_sku().map(|l| i64::from(l.taken)).sum();
        return Err(Invalid::new(
            format!("{field}.qty"),
            format!(
                "{} × {:?} is more than order {increment_id} has left to give: {left} ({ordered} \
                 ordered, {shipped} shipped, {taken} taken by the children before this line); \
                 shipped units stay on the order",
                want.qty, want.sku
            ),
        )
        .into());
    }
    let mut need = want.qty;
    for l in lines.iter_mut().filter(|l| l.line.sku == want.sku) {
        // At most `need`, so it fits an i32.
        let n = i32::try_from(l.left().min(i64::from(need))).unwrap_or(need);
        if n == 0 {
            continue;
        }
        let portion =
            portion(&l.line, l.taken, l.taken + n).ok_or_else(|| too_large(increment_id, field))?;
        out.push(portion);
        l.taken += n;
        need -= n;
        if need == 0 {
            break;
        }
    }
    Ok(())
}

/// Units `from..to` of `line`, with their share of its row totals.
fn portion(line: &OrderLineInput, from: i32, to: i32) -> Option<OrderLineInput> {
    let q = line.qty;
    Some(OrderLineInput {
        qty: to - from,
        row_total_net: share(line.row_total_net, q, from, to)?,
        row_total_gross: share(line.row_total_gross, q, from, to)?,
        row_tax: share(line.row_tax, q, from, to)?,
        ..line.clone()
    })
}

/// The share of `amount` (the row total of `qty` units) that units `from..to` carry (see the module
/// doc: cumulative rounding, so the shares of a row add up to it exactly).
fn share(amount: Decimal, qty: i32, from: i32, to: i32) -> Option<Decimal> {
    cut(amount, qty, to)?.checked_sub(cut(amount, qty, from)?)
}

/// `amount × k / qty`, rounded to the amount's decimals (at least cents); exact at 0 and `qty`.
fn cut(amount: Decimal, qty: i32, k: i32) -> Option<Decimal> {
    if k == 0 {
        return Some(Decimal::ZERO);
    }
    if k >= qty {
        return Some(amount);
    }
    let (k, q) = (Decimal::from(k), Decimal::from(qty));
    // Multiplying first keeps every digit; dividing first only for amounts too large for that.
    let exact = amount
        .checked_mul(k)
        .and_then(|p| p.checked_div(q))
        .or_else(|| amount.checked_div(q)?.checked_mul(k))?;
    Some(exact.round_dp_with_strategy(
        amount.scale().max(2),
        RoundingStrategy::MidpointAwayFromZero,
    ))
}

fn sum(amounts: impl IntoIterator<Item = Decimal>) -> Option<Decimal> {
    amounts
        .into_iter()
        .try_fold(Decimal::ZERO, Decimal::checked_add)
}

/// A child's document: the parent's, with `lines` and their totals (no shipping, no discount).
fn child_document(parent: &Stored, lines: Vec<OrderLineInput>) -> Option<OrderInput> {
    let totals = Totals {
        subtotal: sum(lines.iter().map(|l| l.row_total_net))?,
        shipping: Decimal::ZERO,
        shipping_tax: Decimal::ZERO,
        discount: Decimal::ZERO,
        tax: sum(lines.iter().map(|l| l.row_tax))?,
        grand_total: sum(lines.iter().map(|l| l.row_total_gross))?,
    };
    Some(OrderInput {
        // When the customer ordered, as the parent has it (also when its PUT left it out).
        created_at: Some(parent.ordered_at.and_utc()),
        totals,
        lines,
        ..parent.document.clone()
    })
}

/// The parent's document with what no child took, and what has shipped of each line it keeps.
fn kept_document(
    document: &OrderInput,
    lines: &[ParentLine],
    children: &[OrderInput],
) -> Option<(OrderInput, Vec<i32>)> {
    let mut kept = Vec::new();
    let mut shipped = Vec::new();
    for l in lines.iter().filter(|l| l.taken < l.line.qty) {
        kept.push(portion(&l.line, l.taken, l.line.qty)?);
        shipped.push(l.shipped);
    }
    let took = |f: fn(&Totals) -> Decimal| sum(children.iter().map(|c| f(&c.totals)));
    let rest = |total: Decimal, took: Decimal| Some(total.checked_sub(took)?.max(Decimal::ZERO));
    let t = &document.totals;
    let totals = Totals {
        subtotal: rest(t.subtotal, took(|t| t.subtotal)?)?,
        tax: rest(t.tax, took(|t| t.tax)?)?,
        grand_total: rest(t.grand_total, took(|t| t.grand_total)?)?,
        ..t.clone()
    };
    let document = OrderInput {
        totals,
        lines: kept,
        ..document.clone()
    };
    Some((document, shipped))
}

/// Stores child `index` (number `increment_id`) of `parent` as a new order, like a storefront PUT
/// creating it, linked to its parent. Returns its id.
fn create_child(
    conn: &mut DbConnection,
    parent: &Stored,
    index: usize,
    increment_id: &str,
    document: &OrderInput,
    channels: &[ChannelSettings],
    now: NaiveDateTime,
) -> Result<i64, OrderError> {
    let Some(id) = update::insert(conn, increment_id, document, now)? else {
        return Err(Refusal {
            code: RefusalCode::Exists,
            detail: format!(
                "order {increment_id} exists already; a child of a split is a new order: give \
                 children[{index}] a number no order has"
            ),
            fields: vec![format!("children[{index}].increment_id")],
        }
        .into());
    };
    diesel::update(orders::table.find(id))
        .set(orders::parent_id.eq(Some(parent.id)))
        .execute(conn)?;
    update::replace_lines(conn, id, increment_id, document)?;
    tasks::order_stored(conn, increment_id, &document.source, channels, now)?;
    // Shipments that arrived first for this number and wait for its order need not wait longer.
    crate::queue::wake_shipments_for(conn, increment_id)?;
    Ok(id)
}

/// Writes what the parent keeps: its document and lines, and its status when the split leaves it
/// nothing to ship (`split`: nothing kept; `complete`: all it kept has shipped), its export then
/// skipped. Returns the feed events that makes.
fn keep(
    conn: &mut DbConnection,
    increment_id: &str,
    parent: &Stored,
    plan: &Plan,
    input: &SplitInput,
    channels: &[ChannelSettings],
    now: NaiveDateTime,
) -> Result<Vec<NewEvent>, OrderError> {
    let kept = &plan.kept;
    let all_shipped = kept
        .lines
        .iter()
        .zip(&plan.kept_shipped)
        .all(|(l, shipped)| *shipped >= l.qty);
    let names: Vec<&str> = input
        .children
        .iter()
        .map(|c| c.increment_id.as_str())
        .collect();
    let note = format!("split into {}", names.join(", "));
    let (status, note) = match (kept.lines.is_empty(), all_shipped) {
        (true, _) => (SPLIT, Some(note)),
        (false, true) => (COMPLETE, Some(SHIPPED_BEFORE_EXPORT.to_string())),
        (false, false) => (parent.status.as_str(), None),
    };
    diesel::update(orders::table.find(parent.id))
        .set((
            orders::status.eq(status),
            orders::document.eq(update::to_document(kept)?),
            orders::updated_at.eq(now),
        ))
        .execute(conn)?;
    write_kept_lines(conn, parent.id, kept, &plan.kept_shipped)?;
    let mut events = Vec::new();
    if status == COMPLETE {
        events.push(NewEvent {
            kind: feed::ORDER_COMPLETED,
            payload: serde_json::json!({ "order": increment_id }),
        });
        let source = &parent.document.source;
        sync::changed(conn, channels, increment_id, source, Change::Completed, now)?;
    }
    if let Some(note) = note {
        let previous: ExportStatus = parent.export_status;
        events.extend(tasks::skip_export(
            conn,
            parent.id,
            increment_id,
            previous,
            &note,
        )?);
    }
    Ok(events)
}

/// Replaces the parent's line rows with the lines it keeps, numbered anew, each keeping what has
/// shipped of it.
fn write_kept_lines(
    conn: &mut DbConnection,
    order_id: i64,
    kept: &OrderInput,
    shipped: &[i32],
) -> QueryResult<()> {
    diesel::delete(order_lines::table.filter(order_lines::order_id.eq(order_id))).execute(conn)?;
    if kept.lines.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = kept
        .lines
        .iter()
        .zip(shipped)
        .enumerate()
        .map(|(i, (l, shipped))| {
            (
                order_lines::order_id.eq(order_id),
                order_lines::line_no.eq(i32::try_from(i + 1).unwrap_or(i32::MAX)),
                order_lines::sku.eq(&l.sku),
                order_lines::name.eq(&l.name),
                order_lines::qty.eq(l.qty),
                order_lines::qty_shipped.eq(*shipped),
            )
        })
        .collect();
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(order_lines::table)
        .values(&rows)
        .execute(c))?;
    Ok(())
}

/// Units per SKU: (ordered, shipped).
type Units = BTreeMap<String, (i64, i64)>;

/// The invariant of a split, read back from what is about to be committed: per SKU, the units
/// ordered and shipped over the parent and its children (their line rows, and their documents)
/// equal the parent's before. Anything else is a bug, and nothing is stored.
fn check_units(
    conn: &mut DbConnection,
    increment_id: &str,
    before: &[OrderLineView],
    ids: &[i64],
) -> Result<(), OrderError> {
    let mut want = Units::new();
    for l in before {
        let e = want.entry(l.line.sku.clone()).or_default();
        e.0 += i64::from(l.line.qty);
        e.1 += i64::from(l.qty_shipped);
    }
    let rows: Vec<(String, i32, i32)> = order_lines::table
        .filter(order_lines::order_id.eq_any(ids))
        .select((order_lines::sku, order_lines::qty, order_lines::qty_shipped))
        .load(conn)?;
    let mut stored = Units::new();
    for (sku, qty, shipped) in rows {
        let e = stored.entry(sku).or_default();
        e.0 += i64::from(qty);
        e.1 += i64::from(shipped);
    }
    let documents: Vec<String> = orders::table
        .filter(orders::id.eq_any(ids))
        .select(orders::document)
        .load(conn)?;
    let mut in_documents: BTreeMap<String, i64> = BTreeMap::new();
    for d in documents {
        let d: OrderInput = serde_json::from_str(&d)
            .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
        for l in d.lines {
            *in_documents.entry(l.sku).or_default() += i64::from(l.qty);
        }
    }
    let ordered: BTreeMap<String, i64> = want.iter().map(|(s, u)| (s.clone(), u.0)).collect();
    if stored == want && in_documents == ordered {
        return Ok(());
    }
    Err(OrderError::Inconsistent(format!(
        "splitting order {increment_id} would not keep its units (SKU: ordered, shipped): before \
         {want:?}, after {stored:?} in the lines and {in_documents:?} in the documents; nothing \
         was stored"
    )))
}

/// The `order.split` event.
fn split_event(
    increment_id: &str,
    input: &SplitInput,
    kept: &OrderInput,
) -> Result<NewEvent, OrderError> {
    let data = OrderSplit {
        order: increment_id.to_string(),
        children: input
            .children
            .iter()
            .map(|c| OrderSplitChild {
                order: c.increment_id.clone(),
                lines: c.lines.clone(),
            })
            .collect(),
        kept: kept
            .lines
            .iter()
            .map(|l| SplitLine {
                sku: l.sku.clone(),
                qty: l.qty,
            })
            .collect(),
    };
    let payload = serde_json::to_value(&data)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    Ok(NewEvent {
        kind: feed::ORDER_SPLIT,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn shares_of_a_row_add_up_to_it_exactly() {
        // 20.00 over 3 units taken one by one: 6.67, 6.66, 6.67.
        let shares: Vec<Decimal> = (0..3)
            .map(|k| share(d("20.00"), 3, k, k + 1).unwrap())
            .collect();
        assert_eq!(shares, vec![d("6.67"), d("6.66"), d("6.67")]);
        assert_eq!(sum(shares).unwrap(), d("20.00"));
        assert_eq!(share(d("20"), 2, 0, 1).unwrap(), d("10.00"));
        assert_eq!(share(d("16.675"), 5, 0, 2).unwrap(), d("6.670"));
    }

    #[test]
    fn amounts_too_large_to_share_are_none_not_a_panic() {
        assert_eq!(share(Decimal::MAX, 7, 0, 3).map(|_| ()), Some(()));
        assert_eq!(sum([Decimal::MAX, Decimal::MAX]), None);
    }

    #[test]
    fn a_split_names_the_first_field_at_fault() {
        let line = |sku: &str, qty| SplitLine {
            sku: sku.into(),
            qty,
        };
        let child = |no: &str, lines| SplitChildInput {
            increment_id: no.into(),
            lines,
        };
        let field = |children| SplitInput { children }.validate().unwrap_err().field;
        assert_eq!(field(vec![]), "children");
        assert_eq!(
            field(vec![
                child("A", vec![line("X", 1)]),
                child("A", vec![line("X", 1)])
            ]),
            "children[1].increment_id"
        );
        assert_eq!(
            field(vec![child("A", vec![line("X", 1), line("Y", 0)])]),
            "children[0].lines[1].qty"
        );
        assert_eq!(
            field(vec![child("A", vec![line("X", 1), line("X", 2)])]),
            "children[0].lines[1].sku"
        );
        assert_eq!(field(vec![child("A", vec![])]), "children[0].lines");
    }
}
