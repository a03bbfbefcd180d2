CREATE TABLE import_lines_old (
    request_id BIGINT NOT NULL REFERENCES imports (request_id) ON DELETE CASCADE,
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
INSERT INTO import_lines_old SELECT * FROM import_lines;
DROP TABLE import_lines;
ALTER TABLE import_lines_old RENAME TO import_lines;
