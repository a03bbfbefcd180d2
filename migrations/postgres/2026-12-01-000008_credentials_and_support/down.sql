DROP TABLE credential_scrub;
DROP TABLE request_errors;
DROP TABLE replaced_import_lines;
DROP TABLE request_actions;
