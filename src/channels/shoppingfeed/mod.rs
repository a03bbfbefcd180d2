//! The Shopping Feed–style channel (`kind = "shoppingfeed"`): marketplace orders that came
//! through a feed service hear back when they ship, are cancelled or refunded.
//!
//! Each run of the channel's runner ([`crate::channels::sync`]):
//!
//! 1. does nothing while the channel's breaker is open;
//! 2. reads the tickets due ([`tickets`]): `GET {base}/v1/store/{storeId}/ticket?batchId=…`, one
//!    read per batch. A ticket `succeed`ed → done; `scheduled`/`running` → read again later (the
//!    k-th read waits k × `ticket_poll_secs`, at most ten times that); `failed` → sent again after
//!    a backoff, lost at `max_attempts`; `canceled` (the API refused it for good) → dead. A ticket
//!    that does not turn up, or has not settled `ticket_deadline_secs` after the push, is sent
//!    again too, counted as a refusal so that it cannot go round for ever;
//! 3. pushes what is due ([`push`]): per action, batches of up to `batch_size` (at most 100)
//!    orders, built from each order as it is now ([`body`]), `POST
//!    {base}/v1/store/{storeId}/order/{operation}`; 202 with a batch id → awaiting its ticket.
//!    429 → due again after `Retry-After`; 5xx, a timeout or no connection → due again after a
//!    backoff, counted by the breaker; 401/403 → the same, telling the operator to check the
//!    token; another 4xx → refused (counted).
//!
//! Every exchange goes in the exchange log (kind = the channel's name, operation = the action or
//! `ticket`), every settled task in [`PUSHES`]. Every write is guarded by the lease of the run's
//! claim ([`settle`]); what a run claimed and did not settle (a database error half-way) is let go.

mod body;
mod client;
mod push;
mod settle;
mod tickets;

use chrono::NaiveDateTime;

use super::sync::Pusher;
use crate::config::ChannelAction;

pub use crate::metrics::CHANNEL_PUSHES as PUSHES;

/// Most orders one request may carry (the API's limit).
pub const MAX_ORDERS: usize = 100;

/// The order operations of the API that wharf sends: the action word is the operation's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Ship,
    Cancel,
    Refund,
}

impl Operation {
    /// The operation of `action`, if the API has one.
    fn of(action: ChannelAction) -> Option<Operation> {
        match action {
            ChannelAction::Ship => Some(Operation::Ship),
            ChannelAction::Cancel => Some(Operation::Cancel),
            ChannelAction::Refund => Some(Operation::Refund),
            _ => None,
        }
    }

    fn action(self) -> ChannelAction {
        match self {
            Operation::Ship => ChannelAction::Ship,
            Operation::Cancel => ChannelAction::Cancel,
            Operation::Refund => ChannelAction::Refund,
        }
    }

    /// The word in the URL, the task's action and the exchange log's operation.
    fn word(self) -> &'static str {
        self.action().as_str()
    }
}

/// Whether a run goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The API answered: go on.
    Go,
    /// The API did not answer (or asked to slow down): the rest waits for the next run.
    Stop,
}

/// Sends this channel's due tasks and reads its due tickets (see the module's documentation).
pub async fn run(p: &Pusher, now: NaiveDateTime) -> anyhow::Result<()> {
    if let Some(b) = p.paused(now).await? {
        tracing::debug!(channel = p.name, paused_until = ?b.paused_until,
            "channel {} is paused by its breaker; nothing is sent", p.name);
        return Ok(());
    }
    let operations: Vec<Operation> = p.actions().into_iter().filter_map(Operation::of).collect();
    for &op in &operations {
        if tickets::read_due(p, op, now).await? == Flow::Stop {
            return Ok(());
        }
    }
    for &op in &operations {
        if push::send_due(p, op, now).await? == Flow::Stop {
            return Ok(());
        }
    }
    Ok(())
}
