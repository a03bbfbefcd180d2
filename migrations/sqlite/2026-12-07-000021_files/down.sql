DROP TABLE channel_troubles;
DROP TABLE sftp_host_keys;
DROP TABLE file_exchanges;
