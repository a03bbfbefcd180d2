-- Cancellations of exported orders at the warehouse, retried like exports: pending -> sent |
-- failed (retried after a backoff) -> lost (after max_attempts); support resends (back to pending)
-- or dismisses (handled by hand). One row per order, added by the exporter when it finds an
-- exported order cancelled; it replaces orders.cancel_sent_at, and its error no longer overwrites
-- the export's own error in orders.export_error.
CREATE TABLE order_cancellations (
    order_id BIGINT PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TIMESTAMP,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    error TEXT,
    sent_at TIMESTAMP,
    handled_by TEXT,
    handled_at TIMESTAMP,
    note TEXT,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX order_cancellations_due ON order_cancellations (state, next_at);

-- Carry over the cancellations already confirmed, and those still due with the error their last
-- try left on the order (an exported order's export_error can only have come from a cancellation).
INSERT INTO order_cancellations (order_id, state, sent_at, updated_at)
    SELECT id, 'sent', cancel_sent_at, cancel_sent_at FROM orders WHERE cancel_sent_at IS NOT NULL;
INSERT INTO order_cancellations (order_id, state, attempts, error, updated_at)
    SELECT id,
           CASE WHEN export_error IS NULL THEN 'pending' ELSE 'failed' END,
           CASE WHEN export_error IS NULL THEN 0 ELSE 1 END,
           export_error, updated_at
    FROM orders
    WHERE status IN ('canceled', 'cancelled') AND export_status = 'exported'
      AND cancel_sent_at IS NULL;
UPDATE orders SET export_error = NULL WHERE export_status = 'exported' AND export_error IS NOT NULL;
ALTER TABLE orders DROP COLUMN cancel_sent_at;

-- The export log keeps how many items an exchange carried, so a batch that could not be sent
-- still says how many it held; its outcome is the exchange's alone (was it answered?), and the
-- items' verdicts are in the counts.
ALTER TABLE exports ADD COLUMN items INTEGER NOT NULL DEFAULT 0;
UPDATE exports SET items = successes + duplicates + failures;
-- Cancellations were logged as 'failure' whatever went wrong: tell the exchange's fate apart from
-- the warehouse refusing the cancellation.
UPDATE exports SET items = 1,
    outcome = CASE
        WHEN http_status IS NULL THEN 'transport_error'
        WHEN http_status <> 200 THEN 'http_error'
        WHEN error LIKE '%No cancel operation performed%' THEN 'ok'
        WHEN error LIKE 'the warehouse reported an exception%' THEN 'exception'
        ELSE 'bad_answer'
    END
    WHERE kind = 'cancel' AND outcome = 'failure';
UPDATE exports SET failures = 0 WHERE kind = 'cancel' AND outcome <> 'ok';
