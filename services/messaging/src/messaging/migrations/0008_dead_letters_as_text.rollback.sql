-- Dead letters kept only as text cannot go back into a NOT NULL jsonb column: they are lost.
DELETE FROM dead_letters WHERE data IS NULL;
ALTER TABLE dead_letters
    DROP CONSTRAINT dead_letters_data_kept,
    DROP COLUMN data_text,
    ALTER COLUMN data SET NOT NULL;
