DROP INDEX outbound_tasks_finished;
DROP INDEX exports_finished;
DROP INDEX requests_bodies;
DROP INDEX requests_finished;
-- Fails while a shipment's request has been deleted: such a shipment cannot go back.
CREATE TABLE shipments_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id BIGINT NOT NULL UNIQUE REFERENCES requests (id),
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
