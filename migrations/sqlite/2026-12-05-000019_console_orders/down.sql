DROP INDEX imports_failed_created;
DROP INDEX request_errors_at;
DROP INDEX audit_log_action;
DROP INDEX audit_log_actor;
