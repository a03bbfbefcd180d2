//! PLACEHOLDER (foundation branch only; replaced by the channel's implementation before merge).

use chrono::NaiveDateTime;

use super::sync::Pusher;

/// Sends this channel's due tasks and reads its due tickets.
pub async fn run(_p: &Pusher, _now: NaiveDateTime) -> anyhow::Result<()> {
    Ok(())
}
