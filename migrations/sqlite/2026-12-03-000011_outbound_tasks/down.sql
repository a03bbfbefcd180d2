-- Back to the export columns, order_cancellations and order_export_actions, from the tasks.
ALTER TABLE orders ADD COLUMN export_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN export_next_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN export_lease_owner TEXT;
ALTER TABLE orders ADD COLUMN export_lease_expires_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN export_error TEXT;
ALTER TABLE orders ADD COLUMN export_handled_by TEXT;
ALTER TABLE orders ADD COLUMN export_handled_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN export_note TEXT;
UPDATE orders SET
    export_attempts = t.attempts, export_next_at = t.run_after, export_lease_owner = t.lease_owner,
    export_lease_expires_at = t.lease_expires_at, export_error = t.last_error,
    export_handled_by = t.handled_by, export_handled_at = t.handled_at, export_note = t.note
    FROM outbound_tasks t
    WHERE t.channel = 'warehouse' AND t.action = 'order.insert' AND t.subject = orders.increment_id;

ALTER TABLE products ADD COLUMN export_pending BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE products ADD COLUMN export_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN export_next_at TIMESTAMP;
ALTER TABLE products ADD COLUMN export_lease_owner TEXT;
ALTER TABLE products ADD COLUMN export_lease_expires_at TIMESTAMP;
ALTER TABLE products ADD COLUMN export_error TEXT;
UPDATE products SET
    export_pending = TRUE, export_attempts = t.attempts, export_next_at = t.run_after,
    export_lease_owner = t.lease_owner, export_lease_expires_at = t.lease_expires_at,
    export_error = t.last_error
    FROM outbound_tasks t
    WHERE t.channel = 'warehouse' AND t.action = 'product.merge' AND t.subject = products.sku
      AND t.state IN ('pending', 'failed', 'lost');

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
INSERT INTO order_cancellations (order_id, state, attempts, next_at, lease_owner, lease_expires_at,
        error, sent_at, handled_by, handled_at, note, updated_at)
    SELECT o.id, CASE t.state WHEN 'done' THEN 'sent' ELSE t.state END, t.attempts, t.run_after,
           t.lease_owner, t.lease_expires_at, t.last_error, t.done_at, t.handled_by, t.handled_at,
           t.note, t.updated_at
    FROM outbound_tasks t JOIN orders o ON o.increment_id = t.subject
    WHERE t.channel = 'warehouse' AND t.action = 'order.cancel';

CREATE TABLE order_export_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    at TIMESTAMP NOT NULL
);
INSERT INTO order_export_actions (order_id, action, actor, reason, at)
    SELECT o.id,
           CASE WHEN t.action = 'order.cancel' THEN a.action || '_cancellation' ELSE a.action END,
           a.actor, a.reason, a.at
    FROM outbound_task_actions a
    JOIN outbound_tasks t ON t.id = a.task_id
    JOIN orders o ON o.increment_id = t.subject
    WHERE t.channel = 'warehouse' AND t.action IN ('order.insert', 'order.cancel')
    ORDER BY a.id;

DROP TABLE outbound_task_actions;
DROP TABLE outbound_tasks;
