ALTER TABLE imports DROP COLUMN viewed_at;
DROP TABLE alert_mails;
DROP TABLE incidents;
