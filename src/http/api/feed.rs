//! `/api/v1/feed` and `/api/v1/feed/head`: the change feed.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::query::ApiQuery;
use super::{ApiError, Problem, on_pool};
use crate::feed::{self, Event};
use crate::http::AppState;
use crate::validate::Invalid;

#[derive(Deserialize)]
pub(super) struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
    wait: Option<u64>,
}

/// A page of the feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    /// Events after the cursor, oldest first.
    pub events: Vec<Event>,
    /// The cursor to pass as `after` next time (the last id returned, or the one given).
    pub last_id: i64,
}

/// Events after `after` in commit order. Store `last_id` and pass it back as `after`: nothing is missed
/// or repeated. With `wait=<seconds>` (at most 60) an empty answer waits until an event arrives. A
/// cursor beyond the newest event is refused (`409 cursor_ahead`, with `head`): this wharf's feed is
/// older than the client's (its database was restored from a backup), so the client must reconcile.
/// A cursor older than what retention kept (`retention.feed_days`) is refused too (`410
/// cursor_expired`, with `head`): reconcile, then follow from `head`.
#[utoipa::path(get, path = "/api/v1/feed", tag = "feed",
    params(("after" = Option<i64>, Query, description = "last id seen (default 0)"),
        ("limit" = Option<i64>, Query, description = "most events to return, 1–1000 (default 100)"),
        ("wait" = Option<u64>, Query, description = "seconds to wait for an event when there is none (default 0, at most 60)")),
    responses((status = 200, description = "Events after the cursor, oldest first", body = FeedPage),
        (status = 409, description = "The cursor is beyond the newest event (`cursor_ahead`; `head` is the newest id)", body = Problem),
        (status = 410, description = "Events after the cursor were deleted by retention (`cursor_expired`; reconcile, then follow from `head`)", body = Problem),
        (status = 422, description = "A parameter is out of range (`invalid_field`)", body = Problem)),
    security(("bearer" = [])))]
pub(super) async fn get_feed(
    query: ApiQuery<FeedQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if after < 0 {
        return Err(Invalid::new("after", "must be 0 or a feed id").into());
    }
    if !(1..=1000).contains(&limit) {
        return Err(Invalid::new("limit", "must be between 1 and 1000").into());
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    if wait > Duration::from_secs(60) {
        return Err(Invalid::new("wait", "must be at most 60 seconds").into());
    }
    let deadline = Instant::now() + wait;
    // Commits wake the poll (see `db::wake`); reading again after the worker's poll interval only
    // covers a wake-up that could not arrive (SQLite written by another process, a listener
    // reconnecting).
    let fallback = Duration::from_millis(state.settings.worker.poll_interval_ms.max(10));
    loop {
        // Register interest before reading, so an event committed in between still wakes us.
        let notified = feed::notifier().notified();
        let events = on_pool(&state, move |conn| read_feed(conn, after, limit)).await?;
        let now = Instant::now();
        // A stopping server answers at once, so an open poll never holds the shutdown up.
        if !events.is_empty() || now >= deadline || state.shutdown.is_stopping() {
            let last_id = events.last().map(|e| e.id).unwrap_or(after);
            return Ok(HttpResponse::Ok().json(FeedPage { events, last_id }));
        }
        let nap = fallback.min(deadline - now);
        tokio::select! {
            _ = tokio::time::timeout(nap, notified) => {}
            _ = state.shutdown.stopping() => {}
        }
    }
}

/// Events after `after`; refused when events after it were deleted by retention, or (when there
/// are none) when `after` is beyond the head.
fn read_feed(
    conn: &mut crate::db::DbConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, ApiError> {
    let through = feed::store::pruned_through(conn)?;
    if after < through {
        let head = feed::head(conn)?;
        return Err(ApiError::CursorExpired {
            after,
            through,
            head,
        });
    }
    let events = feed::read(conn, after, limit)?;
    if events.is_empty() {
        let head = feed::head(conn)?;
        if after > head {
            return Err(ApiError::CursorAhead { after, head });
        }
    }
    Ok(events)
}

/// The newest feed id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedHead {
    /// Id of the newest event (0 while the feed is empty). Start following the feed from here to
    /// get only what happens from now on.
    pub head: i64,
}

/// The id of the newest event.
#[utoipa::path(get, path = "/api/v1/feed/head", tag = "feed",
    responses((status = 200, description = "The newest id", body = FeedHead)),
    security(("bearer" = [])))]
pub(super) async fn get_feed_head(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let head = on_pool(&state, |conn| Ok(feed::head(conn)?)).await?;
    Ok(HttpResponse::Ok().json(FeedHead { head }))
}
