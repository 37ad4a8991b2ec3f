-- depends: 0012_inbox_order
-- Operators' intent corrections: each a labelled example (the message's text and its right
-- intent, with who and when) the ai-worker's intent step learns from. The latest correction
-- of a message wins; request_id makes a redelivered correction a no-op.
CREATE TABLE intent_corrections (
    message_id   uuid PRIMARY KEY REFERENCES messages,
    intent       text NOT NULL,
    corrected_by text NOT NULL,
    corrected_at timestamptz NOT NULL,
    request_id   uuid NOT NULL UNIQUE,
    version      bigint NOT NULL
);
CREATE SEQUENCE intent_corrections_version;
