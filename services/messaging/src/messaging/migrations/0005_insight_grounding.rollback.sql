ALTER TABLE ai_insights
    DROP COLUMN articles,
    DROP COLUMN strategy;
