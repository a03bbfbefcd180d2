-- Import lines are written only by the worker, in the transaction that writes their import header,
-- and thousands at a time; the foreign key to imports cost a lookup per line. The code that writes
-- headers writes their lines, and whatever deletes a header deletes its lines in the same
-- transaction. SQLite cannot drop a constraint, so the table is rebuilt without it.
CREATE TABLE import_lines_new (
    request_id BIGINT NOT NULL,
    line_no INTEGER NOT NULL,
    seq BIGINT,
    sku TEXT NOT NULL,
    source TEXT NOT NULL,
    units_received INTEGER NOT NULL,
    units_adjusted_orders INTEGER NOT NULL,
    units_adjusted_quotes INTEGER NOT NULL,
    stored_qty INTEGER,
    result TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    reference TEXT,
    PRIMARY KEY (request_id, line_no)
);
INSERT INTO import_lines_new
    SELECT request_id, line_no, seq, sku, source, units_received, units_adjusted_orders,
           units_adjusted_quotes, stored_qty, result, message, created_at, reference
    FROM import_lines;
DROP TABLE import_lines;
ALTER TABLE import_lines_new RENAME TO import_lines;
