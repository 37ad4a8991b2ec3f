-- The system of record: conversations, messages, AI insights, and the transactional outbox.
CREATE TABLE conversations (
    conversation_id  uuid PRIMARY KEY,
    customer_id      text NOT NULL,
    subject          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    message_count    integer NOT NULL DEFAULT 0,
    version          bigint NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_activity ON conversations (last_activity_at DESC);

CREATE TABLE messages (
    message_id      uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations,
    seq             integer NOT NULL,
    author_role     text NOT NULL CHECK (author_role IN ('customer', 'operator')),
    author_id       text NOT NULL,
    body            text NOT NULL,
    submitted_at    timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, seq)
);

CREATE TABLE ai_insights (
    message_id      uuid PRIMARY KEY REFERENCES messages,
    status          text NOT NULL CHECK (status IN ('processing', 'available', 'unavailable')),
    intent          text,
    summary         text,
    suggested_reply text,
    model           text,
    duration_ms     integer,
    error           text,
    completed_at    timestamptz
);

-- Rows are written in the same transaction as the change they announce; the relay publishes
-- them through Dapr and stamps published_at, so no committed change goes unannounced.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
