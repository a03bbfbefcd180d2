DROP TABLE background_runs;
