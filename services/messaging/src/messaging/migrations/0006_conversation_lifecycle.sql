-- depends: 0005_insight_grounding
-- Conversation lifecycle: a status and an assignee per conversation, an event log of every
-- change, and an AI summary made each time a conversation is resolved.
ALTER TABLE conversations
    ADD COLUMN status text NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'pending', 'resolved')),
    ADD COLUMN assignee text,
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolution integer NOT NULL DEFAULT 0 CHECK (resolution >= 0);

-- Each operator change is applied once: a redelivered conversation.changed finds its row.
CREATE TABLE conversation_changes (
    request_id      uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every message, insight, status change, assignment and summary, in the order stored; each
-- row is written in the transaction of the change it records.
CREATE TABLE conversation_events (
    id              bigserial PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations,
    kind            text NOT NULL
        CHECK (kind IN ('message', 'insight', 'status', 'assignment', 'summary')),
    actor           text,
    data            jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_events_by_conversation ON conversation_events (conversation_id, id);

-- One summary per resolve (conversations.resolution counts them); only the current one is
-- completed, so a late answer for an earlier resolve is ignored.
CREATE TABLE resolution_summaries (
    conversation_id uuid NOT NULL REFERENCES conversations,
    resolution      integer NOT NULL CHECK (resolution >= 1),
    status          text NOT NULL CHECK (status IN ('processing', 'available', 'unavailable')),
    summary         text,
    error           text,
    model           text,
    duration_ms     integer,
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (conversation_id, resolution)
);
