-- A conversation without AI goes back to getting suggestions (NULL).
ALTER TABLE conversations DROP CONSTRAINT conversations_assistant_check;
UPDATE conversations SET assistant = NULL WHERE assistant = 'off';
ALTER TABLE conversations ADD CONSTRAINT conversations_assistant_check
    CHECK (assistant IN ('answering', 'handed_off'));
