-- The header of a received shipment message (its lines are request_lines with no seq).
CREATE TABLE request_shipments (
    request_id BIGINT PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
    order_increment_id TEXT NOT NULL,
    comment TEXT,
    notify_customer BOOLEAN NOT NULL,
    include_comment BOOLEAN NOT NULL,
    courier_name TEXT,
    service_name TEXT,
    date_shipped TIMESTAMP
);
CREATE INDEX request_shipments_order ON request_shipments (order_increment_id);

-- Tracking numbers of a received shipment (trackingNumber first, then each tracks item).
CREATE TABLE request_tracking (
    request_id BIGINT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    tracking_number TEXT NOT NULL,
    PRIMARY KEY (request_id, position)
);

-- Magento 2 style admin access tokens (integrationAdminTokenServiceV1CreateAdminAccessToken);
-- only a SHA-256 of each token is kept.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
