-- The highest feed id retention deleted: a cursor below it has missed events (410 cursor_expired).
-- Its own row, not a column of feed_counter: the cleaner must not lock the row every applying
-- transaction bumps.
CREATE TABLE feed_pruned (
    id INTEGER PRIMARY KEY NOT NULL,
    through_id BIGINT NOT NULL
);
INSERT INTO feed_pruned (id, through_id) VALUES (1, 0);
