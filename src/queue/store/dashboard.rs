//! What the console's dashboard reads about requests, each an indexed count over a bounded range.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{request_errors, requests};
use crate::queue::RequestState;

/// Requests received after `since` (index `requests_received`).
pub fn received_since(conn: &mut DbConnection, since: NaiveDateTime) -> QueryResult<i64> {
    requests::table
        .filter(requests::received_at.gt(since))
        .count()
        .get_result(conn)
}

/// Requests processed after `since` (index `requests_finished`).
pub fn processed_since(conn: &mut DbConnection, since: NaiveDateTime) -> QueryResult<i64> {
    requests::table
        .filter(requests::state.eq(RequestState::Processed.as_str()))
        .filter(requests::processed_at.gt(since))
        .count()
        .get_result(conn)
}

/// Requests with a failed attempt after `since` (index `request_errors_at`).
pub fn failed_since(conn: &mut DbConnection, since: NaiveDateTime) -> QueryResult<i64> {
    request_errors::table
        .filter(request_errors::at.gt(since))
        .select(diesel::dsl::count(request_errors::request_id).aggregate_distinct())
        .get_result(conn)
}

/// Dead requests whose last failed attempt came after `since` (every dead one without `since`):
/// what a console user has not seen yet. The dead are few; they are found by `requests_due`.
pub fn dead_since(conn: &mut DbConnection, since: Option<NaiveDateTime>) -> QueryResult<i64> {
    let dead = requests::table.filter(requests::state.eq(RequestState::Dead.as_str()));
    match since {
        None => dead.count().get_result(conn),
        Some(since) => dead
            .filter(
                requests::id.eq_any(
                    request_errors::table
                        .filter(request_errors::at.gt(since))
                        .select(request_errors::request_id),
                ),
            )
            .count()
            .get_result(conn),
    }
}
