-- The console's request list (/admin/requests): newest first by id (keyset), each filter with an
-- index it can use, so every filter answers fast with a million requests. The SKU index is on the
-- receipt's busiest table: it costs every inventory message one index entry per line, which is
-- the price of "which requests carried this SKU" without reading every line.
CREATE INDEX requests_state_id ON requests (state, id);
CREATE INDEX requests_operation_id ON requests (operation, id);
CREATE INDEX requests_caller_id ON requests (caller, id);
CREATE INDEX requests_conflict_id ON requests (conflict, id);
CREATE INDEX requests_seq ON requests (message_seq_id);
CREATE INDEX requests_received ON requests (received_at);
CREATE INDEX request_lines_sku ON request_lines (sku);
CREATE INDEX imports_failures ON imports (failures, request_id);
