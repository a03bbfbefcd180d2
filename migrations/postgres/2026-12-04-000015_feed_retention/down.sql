DROP TABLE feed_pruned;
