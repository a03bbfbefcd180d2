DROP INDEX orders_source;
DROP INDEX orders_parent;
ALTER TABLE orders DROP COLUMN push_sequence;
ALTER TABLE orders DROP COLUMN parent_id;
DROP INDEX outbound_tasks_open;
CREATE UNIQUE INDEX outbound_tasks_open ON outbound_tasks (channel, action, subject)
    WHERE state IN ('pending', 'failed', 'lost');
ALTER TABLE outbound_tasks DROP COLUMN sent_at;
ALTER TABLE outbound_tasks DROP COLUMN sequence;
ALTER TABLE outbound_tasks DROP COLUMN ticket_id;
ALTER TABLE outbound_tasks DROP COLUMN batch_id;
