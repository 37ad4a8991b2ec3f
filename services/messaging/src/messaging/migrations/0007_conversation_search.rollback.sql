DROP INDEX conversations_search;
ALTER TABLE conversations DROP COLUMN search;
DROP INDEX messages_search;
ALTER TABLE messages DROP COLUMN search;
