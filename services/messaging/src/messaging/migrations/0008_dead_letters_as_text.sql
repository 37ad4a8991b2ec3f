-- depends: 0007_conversation_search
-- A dead letter is kept whatever its data holds. jsonb refuses a NUL (\u0000) and a lone
-- surrogate escape (\ud800), and such an event is exactly what ends in a dead-letter topic:
-- its data is then kept as JSON text, ASCII with \u escapes (data_text), and data is NULL.
ALTER TABLE dead_letters
    ALTER COLUMN data DROP NOT NULL,
    ADD COLUMN data_text text,
    ADD CONSTRAINT dead_letters_data_kept CHECK ((data IS NULL) <> (data_text IS NULL));
