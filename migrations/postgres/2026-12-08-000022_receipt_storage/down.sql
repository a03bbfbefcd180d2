ALTER TABLE requests ALTER COLUMN body SET COMPRESSION default;
DELETE FROM request_lines l WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = l.request_id);
ALTER TABLE request_lines ADD CONSTRAINT request_lines_request_id_fkey
  FOREIGN KEY (request_id) REFERENCES requests(id) ON DELETE CASCADE;
