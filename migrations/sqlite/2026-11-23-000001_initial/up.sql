-- API users (warehouse SOAP callers); passwords are argon2id PHC strings.
CREATE TABLE api_users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Bearer tokens for the storefront API; only a SHA-256 of each token is kept.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);

-- Magento 1 style login sessions; only a SHA-256 of each session id is kept.
CREATE TABLE soap_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP
);

-- Every accepted SOAP message, whole, and its place in the queue.
CREATE TABLE requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operation TEXT NOT NULL,
    message_seq_id BIGINT NOT NULL,
    caller TEXT NOT NULL,
    body TEXT,
    body_hash TEXT NOT NULL,
    line_count INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    next_attempt_at TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL,
    processed_at TIMESTAMP,
    last_error TEXT,
    receipts INTEGER NOT NULL,
    conflict BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX requests_idempotency ON requests (operation, message_seq_id, body_hash);
CREATE INDEX requests_due ON requests (state, next_attempt_at, id);

CREATE TABLE request_lines (
    request_id BIGINT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    line_no INTEGER NOT NULL,
    sku TEXT NOT NULL,
    source TEXT NOT NULL,
    qty INTEGER NOT NULL,
    seq BIGINT,
    last_order_exported TIMESTAMP,
    PRIMARY KEY (request_id, line_no)
);

-- Stock per (SKU, source) with the high-water mark of applied sequence ids.
CREATE TABLE stock (
    sku TEXT NOT NULL,
    source TEXT NOT NULL,
    qty INTEGER NOT NULL,
    last_seq BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (sku, source)
);

-- One import report per applied request, written in the transaction that applies it.
CREATE TABLE imports (
    request_id BIGINT PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
    operation TEXT NOT NULL,
    message_seq_id BIGINT NOT NULL,
    successes INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    superseded INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE import_lines (
    request_id BIGINT NOT NULL REFERENCES imports (request_id) ON DELETE CASCADE,
    line_no INTEGER NOT NULL,
    seq BIGINT,
    sku TEXT NOT NULL,
    source TEXT NOT NULL,
    units_received INTEGER NOT NULL,
    units_adjusted_orders INTEGER NOT NULL,
    units_adjusted_quotes INTEGER NOT NULL,
    stored_qty INTEGER,
    result TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (request_id, line_no)
);

-- Messages refused at receipt, so support can see what the warehouse sent and why it was refused.
CREATE TABLE rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TIMESTAMP NOT NULL,
    caller TEXT,
    operation TEXT,
    reason TEXT NOT NULL,
    body_excerpt TEXT NOT NULL
);
CREATE INDEX rejections_received ON rejections (received_at);
