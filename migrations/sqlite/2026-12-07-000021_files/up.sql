-- SFTP file channels (issue 16): every order file written and every shipment file read.
--
-- direction 'out' (an order file): writing (claimed, document built, being uploaded under its
-- temporary name) → uploaded (complete under the temporary name) → sent (renamed to its final
-- name, its orders marked exported). A run that died is taken over once its lease runs out: from
-- 'writing' it uploads again, from 'uploaded' it renames (or finds the final name there already).
-- direction 'in' (a shipment file): claimed (renamed into processing/) → applied | repeat (stored
-- as a shipment request, then deleted or archived) | failed (moved to failed/, never deleted).
CREATE TABLE file_exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    direction TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    size BIGINT,
    hash TEXT,
    orders INTEGER NOT NULL DEFAULT 0,
    request_id BIGINT,
    order_increment_id TEXT,
    body TEXT,
    error TEXT,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    runs INTEGER NOT NULL DEFAULT 0,
    seen_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
-- One unfinished exchange per file: a second poller that finds a file claimed leaves it.
CREATE UNIQUE INDEX file_exchanges_open ON file_exchanges (channel, direction, name)
    WHERE state IN ('writing', 'uploaded', 'claimed');
CREATE INDEX file_exchanges_channel ON file_exchanges (channel, id);
CREATE INDEX file_exchanges_state ON file_exchanges (state, channel, id);
CREATE INDEX file_exchanges_request ON file_exchanges (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX file_exchanges_finished ON file_exchanges (finished_at) WHERE finished_at IS NOT NULL;

-- The host key a trust-on-first-use channel saw first; any other key is refused from then on.
CREATE TABLE sftp_host_keys (
    channel TEXT PRIMARY KEY NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    first_seen_at TIMESTAMP NOT NULL
);

-- What is wrong with a file channel right now (connection, host key, folder, export), as its last
-- run found it, whichever process ran it; cleared by the next run that gets past it. The alert
-- monitor opens and resolves incidents from these rows.
CREATE TABLE channel_troubles (
    channel TEXT NOT NULL,
    trouble TEXT NOT NULL,
    detail TEXT NOT NULL,
    since TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (channel, trouble)
);
