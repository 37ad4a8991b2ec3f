-- depends: 0004_insight_revisions
-- How each insight was made: the prompt strategy the routing step chose, and the help articles
-- the model was given through search_knowledge_base (slugs, in the order found).
ALTER TABLE ai_insights
    ADD COLUMN strategy text,
    ADD COLUMN articles text[] NOT NULL DEFAULT '{}';
