UPDATE exports SET outcome = 'failure', failures = 1
    WHERE kind = 'cancel' AND (outcome <> 'ok' OR failures > 0);
ALTER TABLE exports DROP COLUMN items;
ALTER TABLE orders ADD COLUMN cancel_sent_at TIMESTAMP;
UPDATE orders SET cancel_sent_at = (
    SELECT c.sent_at FROM order_cancellations c WHERE c.order_id = orders.id AND c.state = 'sent');
UPDATE orders SET export_error = (
    SELECT c.error FROM order_cancellations c WHERE c.order_id = orders.id AND c.state <> 'sent')
    WHERE export_error IS NULL AND export_status = 'exported';
DROP TABLE order_cancellations;
