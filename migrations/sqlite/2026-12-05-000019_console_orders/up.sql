-- The console's dashboard, lost orders, order timeline and audit pages (issue 12).

-- The audit page filters by actor or by action, newest first (keyset on id).
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- An order's timeline reads every export line that named it through export_lines_reference
-- (the console_data migration), and the dashboard's "received in the last 24 hours" through
-- requests_received (console_requests).

-- The dashboard: attempts failed in the last 24 hours, and failed import
-- reports since a user last marked failures seen.
CREATE INDEX request_errors_at ON request_errors (at);
CREATE INDEX imports_failed_created ON imports (created_at) WHERE failures > 0;
