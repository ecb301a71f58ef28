-- What the view was built from: the id of the Kafka cluster whose topics it read. Its orders and
-- offsets mean nothing on another cluster, so the API refuses to answer from it there.
CREATE TABLE built_from (
    what TEXT PRIMARY KEY NOT NULL,
    id   TEXT NOT NULL
);
