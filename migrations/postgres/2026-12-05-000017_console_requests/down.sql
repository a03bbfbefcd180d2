DROP INDEX imports_failures;
DROP INDEX request_lines_sku;
DROP INDEX requests_received;
DROP INDEX requests_seq;
DROP INDEX requests_conflict_id;
DROP INDEX requests_caller_id;
DROP INDEX requests_operation_id;
DROP INDEX requests_state_id;
