-- Import lines are written only by the worker, in the transaction that writes their import header,
-- and thousands at a time. The foreign key to imports cost a lookup per line (20 000 lines: 125 ms
-- with it, 45 ms without), more than the lines themselves; the code that writes headers writes
-- their lines, and whatever deletes a header deletes its lines in the same transaction.
ALTER TABLE import_lines DROP CONSTRAINT IF EXISTS import_lines_request_id_fkey;

-- Room on each stock page for the new version of an updated row, so updates stay on the page and
-- skip the primary-key index (HOT updates).
ALTER TABLE stock SET (fillfactor = 80);
