-- Support actions on received requests (`wharf requests requeue|reprocess`): who did what, when,
-- and what the request looked like before.
CREATE TABLE request_actions (
    id BIGSERIAL PRIMARY KEY,
    request_id BIGINT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    previous_state TEXT NOT NULL,
    previous_attempts INTEGER NOT NULL,
    previous_error TEXT,
    note TEXT
);
CREATE INDEX request_actions_request ON request_actions (request_id);

-- The import report a reprocess replaced, kept so the earlier outcome stays visible.
CREATE TABLE replaced_import_lines (
    action_id BIGINT NOT NULL REFERENCES request_actions (id) ON DELETE CASCADE,
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
    reference TEXT,
    PRIMARY KEY (action_id, line_no)
);

-- Every failed attempt at applying a request, with its error (the request keeps only the last).
CREATE TABLE request_errors (
    id BIGSERIAL PRIMARY KEY,
    request_id BIGINT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at TIMESTAMP NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX request_errors_request ON request_errors (request_id);

-- Rows stored before credentials were masked, still to be masked by wharf after migrating
-- (queue::scrub): ids after next_id up to last_id. A row is deleted once its table is done.
CREATE TABLE credential_scrub (
    table_name TEXT PRIMARY KEY,
    next_id BIGINT NOT NULL,
    last_id BIGINT NOT NULL
);
INSERT INTO credential_scrub (table_name, next_id, last_id)
    SELECT 'requests', 0, (SELECT MAX(id) FROM requests) WHERE EXISTS (SELECT 1 FROM requests);
INSERT INTO credential_scrub (table_name, next_id, last_id)
    SELECT 'rejections', 0, (SELECT MAX(id) FROM rejections) WHERE EXISTS (SELECT 1 FROM rejections);
