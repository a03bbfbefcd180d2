-- Incidents: a condition an operator must hear of (a request gone dead, an order lost, exports
-- paused by the breaker, import failures nobody has seen, a backlog), under a stable key. It opens
-- once and resolves once, whatever the number of processes: every change is a compare-and-set on
-- the row, and the mail it causes is an outbound task on channel 'smtp' enqueued in the same
-- transaction. States: open -> resolved. An open incident whose condition cleared has
-- clear_since set; it resolves once the condition stayed clear for the quiet time, and a
-- condition back before that clears clear_since again (no mail).
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    summary TEXT NOT NULL,
    count BIGINT NOT NULL,
    first_error TEXT,
    items TEXT NOT NULL,
    opened_at TIMESTAMP NOT NULL,
    clear_since TIMESTAMP,
    resolved_at TIMESTAMP,
    message_id TEXT,
    updated_at TIMESTAMP NOT NULL
);
-- At most one unresolved incident per key: an open that finds one adds nothing.
CREATE UNIQUE INDEX incidents_open ON incidents (key) WHERE state = 'open';
CREATE INDEX incidents_opened ON incidents (opened_at);

-- Alert mails sent (a slot is taken before the send and given back when it fails), to keep to
-- max_mails_per_hour across every process.
CREATE TABLE alert_mails (
    id BIGSERIAL PRIMARY KEY,
    sent_at TIMESTAMP NOT NULL,
    subject TEXT NOT NULL
);
CREATE INDEX alert_mails_sent ON alert_mails (sent_at);

-- When support first looked at an import report (the console, `wharf requests show`): import
-- failures not yet seen open an incident. Reports stored before alerts existed count as seen.
ALTER TABLE imports ADD COLUMN viewed_at TIMESTAMP;
UPDATE imports SET viewed_at = created_at;
-- The monitor looks for unseen failures every check_interval_secs in every process: without this
-- it would read the whole imports table each time (one row per applied request).
CREATE INDEX imports_unseen_failures ON imports (request_id) WHERE failures > 0 AND viewed_at IS NULL;
-- /metrics counts open tasks by state at every scrape; finished (done) tasks are most of the table.
CREATE INDEX outbound_tasks_state ON outbound_tasks (state, channel, action);
