-- Orders pushed by the storefront. The full document (addresses, totals, prices) is kept as JSON for
-- export; what rules query is in columns.
CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    increment_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    is_virtual BOOLEAN NOT NULL,
    document TEXT NOT NULL,
    ordered_at TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    exported_at TIMESTAMP,
    export_status TEXT NOT NULL
);
CREATE INDEX orders_status ON orders (status, updated_at);

CREATE TABLE order_lines (
    order_id BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no INTEGER NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    qty INTEGER NOT NULL,
    qty_shipped INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_sku ON order_lines (sku);

-- Products pushed by the storefront; export_pending marks changes not yet sent to the warehouse.
CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    export_pending BOOLEAN NOT NULL,
    exported_at TIMESTAMP
);

-- Active carts (quotes) and what they hold.
CREATE TABLE reservations (
    quote_id TEXT PRIMARY KEY,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE reservation_lines (
    quote_id TEXT NOT NULL REFERENCES reservations (quote_id) ON DELETE CASCADE,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    PRIMARY KEY (quote_id, sku)
);
CREATE INDEX reservation_lines_sku ON reservation_lines (sku);

-- Shipments applied to orders; (order, messageSeqId) identifies a shipment for duplicate detection.
CREATE TABLE shipments (
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
CREATE UNIQUE INDEX shipments_order_message ON shipments (order_id, message_seq_id);
CREATE TABLE shipment_lines (
    shipment_id BIGINT NOT NULL REFERENCES shipments (id) ON DELETE CASCADE,
    line_no INTEGER NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    PRIMARY KEY (shipment_id, line_no)
);
CREATE TABLE shipment_tracking (
    shipment_id BIGINT NOT NULL REFERENCES shipments (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    tracking_number TEXT NOT NULL,
    PRIMARY KEY (shipment_id, position)
);

-- Shipment import lines name the order they are about.
ALTER TABLE import_lines ADD COLUMN reference TEXT;

-- The change feed. Ids are handed out from feed_counter inside the writing transaction, whose row
-- lock is held until commit: ids therefore become visible in increasing order and a reader that
-- remembers the last id it saw never skips one that commits late.
CREATE TABLE feed_events (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE feed_counter (
    id INTEGER PRIMARY KEY,
    last_id BIGINT NOT NULL
);
INSERT INTO feed_counter (id, last_id) VALUES (1, 0);
