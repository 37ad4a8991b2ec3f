DROP TABLE resolution_summaries;
DROP TABLE conversation_events;
DROP TABLE conversation_changes;
ALTER TABLE conversations
    DROP COLUMN resolution,
    DROP COLUMN resolved_at,
    DROP COLUMN assignee,
    DROP COLUMN status;
