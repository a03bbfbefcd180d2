-- Export state of orders: pending -> exported | failed (retried with backoff) -> lost (after
-- max_attempts) -> back to pending when support resends, or dismissed when handled by hand.
ALTER TABLE orders ADD COLUMN export_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN export_next_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN export_lease_owner TEXT;
ALTER TABLE orders ADD COLUMN export_lease_expires_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN export_error TEXT;
ALTER TABLE orders ADD COLUMN export_handled_by TEXT;
ALTER TABLE orders ADD COLUMN export_handled_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN export_note TEXT;
ALTER TABLE orders ADD COLUMN cancel_sent_at TIMESTAMP;
CREATE INDEX orders_export ON orders (export_status, id);

ALTER TABLE products ADD COLUMN export_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN export_next_at TIMESTAMP;
ALTER TABLE products ADD COLUMN export_lease_owner TEXT;
ALTER TABLE products ADD COLUMN export_lease_expires_at TIMESTAMP;
ALTER TABLE products ADD COLUMN export_error TEXT;

-- Every batch sent to the warehouse, with what was sent and what came back.
CREATE TABLE exports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    operation TEXT NOT NULL,
    url TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    successes INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    request_xml TEXT,
    response_body TEXT,
    http_status INTEGER
);
CREATE TABLE export_lines (
    export_id BIGINT NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    line_no INTEGER NOT NULL,
    reference TEXT NOT NULL,
    result TEXT NOT NULL,
    message TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (export_id, line_no)
);

-- Consecutive failed batches per export kind; at the threshold exports pause until paused_until.
CREATE TABLE export_breakers (
    kind TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    paused_until TIMESTAMP
);

-- Who resent or dismissed which lost order, and when.
CREATE TABLE order_export_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    at TIMESTAMP NOT NULL
);
