//! An order's tasks for the channel it came from (a marketplace, an affiliate system): which change
//! becomes which task, enqueued in the transaction of the change. The channel that claims the
//! order's source hears about it, and only for the actions it maps; an order of a source no channel
//! claims (`web`) pushes nothing. What is pushed is built when it is sent, from the order as it is
//! then (`crate::channels::sync`), so the latest state wins.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::result::QueryResult;

use crate::config::{ChannelAction, ChannelSettings};
use crate::db::DbConnection;
use crate::outbound::{self, TaskKind};

/// What happened to an order that its channel may want to hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A shipment (part of the order or the rest of it) was applied.
    Shipped,
    /// Everything has shipped: the order is `complete`.
    Completed,
    /// The order was cancelled.
    Cancelled,
    /// The order was refunded (status `refunded` or `closed`).
    Refunded,
    /// Its status changed otherwise.
    StatusChanged,
    /// What it holds changed (lines, addresses, totals).
    Edited,
    /// It was split into child orders.
    Split,
}

impl Change {
    /// The action of the task it makes.
    pub fn action(self) -> ChannelAction {
        match self {
            Change::Shipped => ChannelAction::Ship,
            Change::Completed | Change::StatusChanged => ChannelAction::Status,
            Change::Cancelled => ChannelAction::Cancel,
            Change::Refunded => ChannelAction::Refund,
            Change::Edited => ChannelAction::Edit,
            Change::Split => ChannelAction::Split,
        }
    }

    /// The change a new storefront status makes: cancelled, refunded, or just another status.
    pub fn of_status(status: &str) -> Change {
        match status {
            "canceled" | "cancelled" => Change::Cancelled,
            s if super::REFUND_STATUSES.contains(&s) => Change::Refunded,
            _ => Change::StatusChanged,
        }
    }
}

/// What an `unsent ship` becomes when its order is cancelled first.
pub const CANCELLED_BEFORE_PUSH: &str = "the order was cancelled before its shipment was pushed";

/// The channel that claims orders of `source`, if any.
pub fn channel_for<'a>(
    channels: &'a [ChannelSettings],
    source: &str,
) -> Option<&'a ChannelSettings> {
    channels
        .iter()
        .filter(|c| !c.is_files())
        .find(|c| c.sources.iter().any(|s| s == source))
}

/// The task kind of `action` on channel `name`.
pub fn task_kind(name: &str, action: ChannelAction) -> TaskKind {
    TaskKind {
        channel: outbound::intern(name),
        action: action.as_str(),
    }
}

/// Enqueues what `change` of order `increment_id` (of `source`) means for its channel, in the
/// caller's transaction, and tells the channel's runner (after commit: the caller wakes it, or it
/// finds the task when it falls due). A `ship` waits `ship_delay_secs`, and another shipment
/// before it went starts the wait again (one push then carries both); a cancel drops an unsent
/// ship. Returns whether a channel is told.
pub fn changed(
    conn: &mut DbConnection,
    channels: &[ChannelSettings],
    increment_id: &str,
    source: &str,
    change: Change,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let Some(c) = channel_for(channels, source) else {
        return Ok(false);
    };
    if change == Change::Cancelled {
        // Whether or not the channel hears of cancels, it must not hear of a shipment of an order
        // that is cancelled now.
        let ship = task_kind(&c.name, ChannelAction::Ship);
        outbound::skip(conn, ship, increment_id, CANCELLED_BEFORE_PUSH, now)?;
    }
    let action = change.action();
    if !c.wants(action) {
        return Ok(false);
    }
    let kind = task_kind(&c.name, action);
    match change {
        Change::Shipped => {
            let delay = i64::try_from(c.ship_delay_secs).unwrap_or(i64::MAX / 2);
            let at = now + TimeDelta::seconds(delay);
            if !outbound::enqueue_at(conn, kind, increment_id, at, now)? {
                outbound::postpone(conn, kind, increment_id, at, now)?;
            }
        }
        _ => {
            outbound::enqueue(conn, kind, &[increment_id], now)?;
        }
    }
    outbound::announce(conn)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_changes_and_changes_to_actions() {
        assert_eq!(Change::of_status("canceled"), Change::Cancelled);
        assert_eq!(Change::of_status("closed"), Change::Refunded);
        assert_eq!(Change::of_status("processing"), Change::StatusChanged);
        assert_eq!(Change::Completed.action(), ChannelAction::Status);
        assert_eq!(Change::Shipped.action(), ChannelAction::Ship);
    }

    #[test]
    fn only_the_channel_that_claims_the_source_is_told() {
        let channels = vec![ChannelSettings {
            name: "amazon".into(),
            sources: vec!["marketplace:amazon".into()],
            ..ChannelSettings::default()
        }];
        assert!(channel_for(&channels, "web").is_none());
        assert_eq!(
            channel_for(&channels, "marketplace:amazon").map(|c| c.name.as_str()),
            Some("amazon")
        );
    }
}
