DROP TABLE access_tokens;
DROP TABLE request_tracking;
DROP TABLE request_shipments;
