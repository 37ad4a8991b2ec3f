ALTER TABLE ai_insights
    DROP COLUMN trace_id,
    DROP COLUMN requested_by,
    DROP COLUMN request_id,
    DROP COLUMN revision;
