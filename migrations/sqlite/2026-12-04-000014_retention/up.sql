-- Retention deletes finished requests; the shipments they created stay (an order's shipment
-- history, and the (order, messageSeqId) duplicate check), so a shipment's request may be gone.
-- SQLite cannot alter a foreign key, so shipments is rebuilt; its lines and tracking numbers are
-- rebuilt with it, because dropping shipments while they still point at it would delete them
-- (ON DELETE CASCADE; a migration runs in a transaction, where foreign keys cannot be turned off).
-- Renaming shipments_new to shipments rewrites the references of the new child tables.
CREATE TABLE shipments_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id BIGINT UNIQUE REFERENCES requests (id) ON DELETE SET NULL,
    order_id BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    message_seq_id BIGINT NOT NULL,
    courier_name TEXT,
    service_name TEXT,
    comment TEXT,
    notify_customer BOOLEAN NOT NULL,
    include_comment BOOLEAN NOT NULL,
    date_shipped TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE shipment_lines_new (
    shipment_id BIGINT NOT NULL REFERENCES shipments_new (id) ON DELETE CASCADE,
    line_no INTEGER NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    PRIMARY KEY (shipment_id, line_no)
);
CREATE TABLE shipment_tracking_new (
    shipment_id BIGINT NOT NULL REFERENCES shipments_new (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    tracking_number TEXT NOT NULL,
    PRIMARY KEY (shipment_id, position)
);
INSERT INTO shipments_new
    SELECT id, request_id, order_id, message_seq_id, courier_name, service_name, comment,
           notify_customer, include_comment, date_shipped, created_at
    FROM shipments;
INSERT INTO shipment_lines_new SELECT shipment_id, line_no, sku, qty FROM shipment_lines;
INSERT INTO shipment_tracking_new SELECT shipment_id, position, tracking_number FROM shipment_tracking;
DROP TABLE shipment_tracking;
DROP TABLE shipment_lines;
DROP TABLE shipments;
ALTER TABLE shipments_new RENAME TO shipments;
ALTER TABLE shipment_lines_new RENAME TO shipment_lines;
ALTER TABLE shipment_tracking_new RENAME TO shipment_tracking;
CREATE UNIQUE INDEX shipments_order_message ON shipments (order_id, message_seq_id);

-- The cleaner selects by state and age; without these it would scan whole tables every run.
CREATE INDEX requests_finished ON requests (state, processed_at, id);
-- Bodies still stored, so dropping old bodies does not walk the rows already dropped.
CREATE INDEX requests_bodies ON requests (state, processed_at, id) WHERE body IS NOT NULL;
CREATE INDEX exports_finished ON exports (finished_at, id);
CREATE INDEX outbound_tasks_finished ON outbound_tasks (state, updated_at, id);
