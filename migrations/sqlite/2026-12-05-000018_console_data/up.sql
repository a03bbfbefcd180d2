-- Indexes for the console's imports, exports and stock pages (issue 12). Every list there is
-- keyset-paginated newest first; each filter has an index that yields its rows in that order.

-- A SKU's history (/admin/stock/{sku}) and the imports touching a SKU (/admin/imports?sku=).
CREATE INDEX import_lines_sku ON import_lines (sku, request_id, line_no);
-- /admin/imports?kind=, ?from=&to=, ?result= (the counts of the header say which lines it has;
-- partial indexes for the rare results, matched by the literal predicates in imports::store).
CREATE INDEX imports_operation ON imports (operation, request_id);
CREATE INDEX imports_created ON imports (created_at, request_id);
CREATE INDEX imports_with_failures ON imports (request_id) WHERE failures > 0;
CREATE INDEX imports_with_duplicates ON imports (request_id) WHERE duplicates > 0;
CREATE INDEX imports_with_superseded ON imports (request_id) WHERE superseded > 0;
-- /admin/exports?kind=, ?outcome=, ?ref= (an order number or SKU in the lines).
CREATE INDEX exports_kind ON exports (kind, id);
CREATE INDEX exports_outcome ON exports (outcome, id);
CREATE INDEX export_lines_reference ON export_lines (reference, export_id);
-- SQLite compares text byte-wise: the primary key of stock serves /admin/stock?sku=<prefix>.
