DROP INDEX outbound_tasks_state;
DROP INDEX imports_unseen_failures;
ALTER TABLE imports DROP COLUMN viewed_at;
DROP TABLE alert_mails;
DROP TABLE incidents;
