DROP INDEX ai_insights_processing;
ALTER TABLE ai_insights
    DROP COLUMN redeliveries,
    DROP COLUMN requested_at;
