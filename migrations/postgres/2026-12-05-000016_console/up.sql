-- Console sessions of users with the role viewer or operator. Only the SHA-256 of the cookie value
-- is stored (the CSRF token is derived from the cookie, so it is not stored either). A session
-- ends at logout, after console.session_idle_secs without use, after console.session_max_secs,
-- and when its user's password changes or the user is removed.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- Until when each console user has seen the failures (the dashboard's banner shows what came
-- after).
CREATE TABLE console_seen (
    user_id BIGINT PRIMARY KEY NOT NULL REFERENCES api_users (id) ON DELETE CASCADE,
    seen_at TIMESTAMP NOT NULL
);

-- Every support action, from the console or the CLI: who, when, what, on which records, under
-- which filter, how many.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subjects TEXT NOT NULL,
    filter TEXT,
    count BIGINT NOT NULL,
    note TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
