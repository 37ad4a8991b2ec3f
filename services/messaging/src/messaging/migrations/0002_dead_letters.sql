-- depends: 0001_initial
-- Events that ended in a dead-letter topic, kept for inspection and replay. The reason is in
-- the log of the service that dropped the event (same event_id).
CREATE TABLE dead_letters (
    event_id    text NOT NULL,
    topic       text NOT NULL,
    data        jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, event_id)
);
