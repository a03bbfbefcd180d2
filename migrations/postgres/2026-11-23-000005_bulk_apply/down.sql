ALTER TABLE stock RESET (fillfactor);
ALTER TABLE import_lines ADD CONSTRAINT import_lines_request_id_fkey
    FOREIGN KEY (request_id) REFERENCES imports (request_id) ON DELETE CASCADE;
