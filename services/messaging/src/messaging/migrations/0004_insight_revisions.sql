-- depends: 0003_outbox_trace_context
-- An operator may ask for a fresh insight ("Regenerate"): each analysis is a revision, and
-- only the completion of the current revision is stored. request_id makes a redelivered
-- request a no-op; trace_id links the insight to the trace of the analysis that made it.
ALTER TABLE ai_insights
    ADD COLUMN revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1),
    ADD COLUMN request_id uuid,
    ADD COLUMN requested_by text,
    ADD COLUMN trace_id text;
