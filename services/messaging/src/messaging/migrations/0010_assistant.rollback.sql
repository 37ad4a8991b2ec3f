ALTER TABLE conversation_events DROP CONSTRAINT conversation_events_kind_check;
DELETE FROM conversation_events WHERE kind = 'handoff';
ALTER TABLE conversation_events ADD CONSTRAINT conversation_events_kind_check
    CHECK (kind IN ('message', 'insight', 'status', 'assignment', 'summary'));
ALTER TABLE conversations DROP COLUMN handoff_reason, DROP COLUMN assistant;
ALTER TABLE messages DROP CONSTRAINT messages_author_role_check;
DELETE FROM messages WHERE author_role = 'assistant';
ALTER TABLE messages ADD CONSTRAINT messages_author_role_check
    CHECK (author_role IN ('customer', 'operator'));
