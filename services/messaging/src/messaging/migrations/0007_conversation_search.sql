-- depends: 0006_conversation_lifecycle
-- Full-text search over conversations: a tsvector of every message body and of every subject
-- (the `english` configuration: stemmed, stop words dropped). Generated columns, so PostgreSQL
-- keeps them in the transaction that writes the text; GIN indexes answer `@@`.
ALTER TABLE messages
    ADD COLUMN search tsvector
        GENERATED ALWAYS AS (to_tsvector('english', body)) STORED;
CREATE INDEX messages_search ON messages USING gin (search);

ALTER TABLE conversations
    ADD COLUMN search tsvector
        GENERATED ALWAYS AS (to_tsvector('english', coalesce(subject, ''))) STORED;
CREATE INDEX conversations_search ON conversations USING gin (search);
