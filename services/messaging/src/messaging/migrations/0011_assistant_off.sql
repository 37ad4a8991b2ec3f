-- depends: 0010_assistant
-- A conversation opened on a channel whose AI is off (`off`, for good): its customer messages
-- get no insight and its resolutions no summary.
ALTER TABLE conversations DROP CONSTRAINT conversations_assistant_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_assistant_check
    CHECK (assistant IN ('answering', 'handed_off', 'off'));
