DROP TABLE outbox;
DROP TABLE ai_insights;
DROP TABLE messages;
DROP TABLE conversations;
