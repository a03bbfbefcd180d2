-- When each background job (the worker, each exporter, the alert monitor, mail delivery, the
-- cleaner) last ran well and last failed, whichever process ran it: the dashboard, `/metrics` and
-- `wharf check` read it, so every process reports the same.
CREATE TABLE background_runs (
    job TEXT PRIMARY KEY NOT NULL,
    last_ok_at TIMESTAMP,
    last_failed_at TIMESTAMP,
    last_error TEXT,
    updated_at TIMESTAMP NOT NULL
);
