DROP INDEX outbound_tasks_finished;
DROP INDEX exports_finished;
DROP INDEX requests_bodies;
DROP INDEX requests_finished;
ALTER TABLE shipments DROP CONSTRAINT shipments_request_id_fkey;
-- Fails while a shipment's request has been deleted: such a shipment cannot go back.
ALTER TABLE shipments ALTER COLUMN request_id SET NOT NULL;
ALTER TABLE shipments ADD CONSTRAINT shipments_request_id_fkey
    FOREIGN KEY (request_id) REFERENCES requests (id);
