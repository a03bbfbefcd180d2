-- Order channels (issue 15): marketplaces and affiliates hear about their orders.

-- A push that was answered with a ticket waits in state 'awaiting' with the ids the other side gave
-- (batch and ticket), polled until the ticket settles; sent_at starts the ticket's deadline.
-- sequence is the order's push number the task carries (per order, increasing), kept across
-- retries so a resend is the same push.
ALTER TABLE outbound_tasks ADD COLUMN batch_id TEXT;
ALTER TABLE outbound_tasks ADD COLUMN ticket_id TEXT;
ALTER TABLE outbound_tasks ADD COLUMN sequence BIGINT;
ALTER TABLE outbound_tasks ADD COLUMN sent_at TIMESTAMP;

-- 'dead' (refused for good by the other side) waits for support like 'lost': still open.
DROP INDEX outbound_tasks_open;
CREATE UNIQUE INDEX outbound_tasks_open ON outbound_tasks (channel, action, subject)
    WHERE state IN ('pending', 'failed', 'lost', 'dead');

-- A split order's children link to their parent; push numbers per order.
ALTER TABLE orders ADD COLUMN parent_id BIGINT REFERENCES orders (id);
ALTER TABLE orders ADD COLUMN push_sequence BIGINT NOT NULL DEFAULT 0;
CREATE INDEX orders_parent ON orders (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX orders_source ON orders (source, updated_at, id);
