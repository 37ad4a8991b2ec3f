-- depends: 0011_assistant_off
-- The inbox's order (newest activity first, then id), so a page deep in a large inbox is read
-- from the index rather than by sorting every conversation.
CREATE INDEX conversations_inbox_order ON conversations (last_activity_at DESC, conversation_id)
    WHERE message_count > 0;
