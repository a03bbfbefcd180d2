DROP TABLE ready_probe;
