-- Retention deletes finished requests; the shipments they created stay (an order's shipment
-- history, and the (order, messageSeqId) duplicate check), so a shipment's request may be gone.
ALTER TABLE shipments ALTER COLUMN request_id DROP NOT NULL;
ALTER TABLE shipments DROP CONSTRAINT shipments_request_id_fkey;
ALTER TABLE shipments ADD CONSTRAINT shipments_request_id_fkey
    FOREIGN KEY (request_id) REFERENCES requests (id) ON DELETE SET NULL;

-- The cleaner selects by state and age; without these it would scan whole tables every run.
CREATE INDEX requests_finished ON requests (state, processed_at, id);
-- Bodies still stored, so dropping old bodies does not walk the rows already dropped.
CREATE INDEX requests_bodies ON requests (state, processed_at, id) WHERE body IS NOT NULL;
CREATE INDEX exports_finished ON exports (finished_at, id);
CREATE INDEX outbound_tasks_finished ON outbound_tasks (state, updated_at, id);
