-- Receipt storage at the database's limit (issue 14).
--
-- A request's lines are inserted in the transaction that inserts the request, so the foreign key
-- from request_lines to requests checked nothing a receipt could get wrong, and its check (a
-- look-up and a row lock of the request for every line) was half the cost of storing a line. The
-- retention that deletes requests deletes their lines itself (queue::store::clean), as it already
-- does for import lines.
ALTER TABLE request_lines DROP CONSTRAINT request_lines_request_id_fkey;

-- Message bodies are kept whole and are larger than TOAST's threshold: lz4 compresses them several
-- times faster than the default pglz. A server built without lz4 keeps pglz (nothing else changes),
-- which is why any error here is ignored.
DO $$
BEGIN
  ALTER TABLE requests ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'request bodies stay compressed with pglz: %', SQLERRM;
END
$$;
