-- Everything wharf sends out is a task of one queue: channel, action, subject (an order number, a
-- SKU), state, attempts, when it is due again, its lease, its last error and who handled it by hand.
-- States: pending -> done | failed (retried after a backoff) -> lost (after max_attempts, waits for
-- support) -> pending again (resend) or dismissed (handled by hand); skipped: not needed any more
-- (an order shipped before it was exported). A task being sent keeps its state and holds a lease.
-- The warehouse's order export, product export and cancellations are the channel 'warehouse' with
-- the actions 'order.insert', 'product.merge' and 'order.cancel'; they replace the export columns
-- of orders and products and the table order_cancellations. orders.export_status and exported_at
-- stay, as the summary the settle step writes for the API and the feed.
CREATE TABLE outbound_tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after TIMESTAMP,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    last_error TEXT,
    done_at TIMESTAMP,
    handled_by TEXT,
    handled_at TIMESTAMP,
    note TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- At most one open task (to send, or waiting for support) per channel, action and subject: an
-- enqueue that finds one adds nothing (INSERT … ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX outbound_tasks_open ON outbound_tasks (channel, action, subject)
    WHERE state IN ('pending', 'failed', 'lost');
CREATE INDEX outbound_tasks_subject ON outbound_tasks (subject, channel, action);
CREATE INDEX outbound_tasks_due ON outbound_tasks (channel, action, state, id);

-- Who resent or dismissed which task, when and why.
CREATE TABLE outbound_task_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id BIGINT NOT NULL REFERENCES outbound_tasks (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    at TIMESTAMP NOT NULL
);
CREATE INDEX outbound_task_actions_task ON outbound_task_actions (task_id);

-- Every order has had its export state since it was stored: one task each, in the same state.
INSERT INTO outbound_tasks (channel, action, subject, state, attempts, run_after, lease_owner,
        lease_expires_at, last_error, done_at, handled_by, handled_at, note, created_at, updated_at)
    SELECT 'warehouse', 'order.insert', increment_id,
           CASE export_status WHEN 'exported' THEN 'done' ELSE export_status END,
           export_attempts, export_next_at, export_lease_owner, export_lease_expires_at,
           export_error, exported_at, export_handled_by, export_handled_at, export_note,
           received_at, updated_at
    FROM orders ORDER BY id;

-- Cancellations, in the same state; and those the exporter had not discovered yet (an exported
-- order cancelled, no row yet), pending.
INSERT INTO outbound_tasks (channel, action, subject, state, attempts, run_after, lease_owner,
        lease_expires_at, last_error, done_at, handled_by, handled_at, note, created_at, updated_at)
    SELECT 'warehouse', 'order.cancel', o.increment_id,
           CASE c.state WHEN 'sent' THEN 'done' ELSE c.state END,
           c.attempts, c.next_at, c.lease_owner, c.lease_expires_at, c.error, c.sent_at,
           c.handled_by, c.handled_at, c.note, c.updated_at, c.updated_at
    FROM order_cancellations c JOIN orders o ON o.id = c.order_id ORDER BY c.order_id;
INSERT INTO outbound_tasks (channel, action, subject, state, created_at, updated_at)
    SELECT 'warehouse', 'order.cancel', increment_id, 'pending', updated_at, updated_at
    FROM orders
    WHERE status IN ('canceled', 'cancelled') AND export_status = 'exported'
      AND id NOT IN (SELECT order_id FROM order_cancellations)
    ORDER BY id;

-- Products pending export (a refused one has its attempts and error; one refused max_attempts
-- times is not claimed again, as before).
INSERT INTO outbound_tasks (channel, action, subject, state, attempts, run_after, lease_owner,
        lease_expires_at, last_error, created_at, updated_at)
    SELECT 'warehouse', 'product.merge', sku,
           CASE WHEN export_attempts = 0 THEN 'pending' ELSE 'failed' END,
           export_attempts, export_next_at, export_lease_owner, export_lease_expires_at,
           export_error, updated_at, updated_at
    FROM products WHERE export_pending = TRUE ORDER BY updated_at, sku;

-- Support's actions, on the task they were about.
INSERT INTO outbound_task_actions (task_id, action, actor, reason, at)
    SELECT t.id,
           CASE WHEN a.action LIKE 'resend%' THEN 'resend' ELSE 'dismiss' END,
           a.actor, a.reason, a.at
    FROM order_export_actions a
    JOIN orders o ON o.id = a.order_id
    JOIN outbound_tasks t ON t.channel = 'warehouse' AND t.subject = o.increment_id
        AND t.action = CASE WHEN a.action LIKE '%cancellation' THEN 'order.cancel'
                            ELSE 'order.insert' END
    ORDER BY a.id;

DROP TABLE order_export_actions;
DROP TABLE order_cancellations;
ALTER TABLE orders DROP COLUMN export_attempts;
ALTER TABLE orders DROP COLUMN export_next_at;
ALTER TABLE orders DROP COLUMN export_lease_owner;
ALTER TABLE orders DROP COLUMN export_lease_expires_at;
ALTER TABLE orders DROP COLUMN export_error;
ALTER TABLE orders DROP COLUMN export_handled_by;
ALTER TABLE orders DROP COLUMN export_handled_at;
ALTER TABLE orders DROP COLUMN export_note;
ALTER TABLE products DROP COLUMN export_pending;
ALTER TABLE products DROP COLUMN export_attempts;
ALTER TABLE products DROP COLUMN export_next_at;
ALTER TABLE products DROP COLUMN export_lease_owner;
ALTER TABLE products DROP COLUMN export_lease_expires_at;
ALTER TABLE products DROP COLUMN export_error;
