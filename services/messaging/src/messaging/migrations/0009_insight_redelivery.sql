-- depends: 0008_dead_letters_as_text
-- An analysis can be lost between messaging and the ai-worker (a broker switched under
-- running pods, an event acknowledged and dropped): messaging asks again for insights left
-- `processing` too long. requested_at is when the current revision was last asked for;
-- redeliveries counts how often it was asked again (the watchdog backs off and gives up on
-- it). Rows already processing start their clock now, so they are re-requested after one wait.
ALTER TABLE ai_insights
    ADD COLUMN requested_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN redeliveries integer NOT NULL DEFAULT 0 CHECK (redeliveries >= 0);
CREATE INDEX ai_insights_processing ON ai_insights (requested_at) WHERE status = 'processing';
