-- One row that `GET /ready` rewrites to learn whether writes commit. Its own row, so the probe
-- neither waits behind nor holds up the apply transactions that bump the feed counter.
CREATE TABLE ready_probe (
    id INTEGER PRIMARY KEY NOT NULL,
    checked_at TIMESTAMP NOT NULL
);
INSERT INTO ready_probe (id, checked_at) VALUES (1, CURRENT_TIMESTAMP);
