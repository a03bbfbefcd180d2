DROP TABLE audit_log;
DROP TABLE console_seen;
DROP TABLE console_sessions;
