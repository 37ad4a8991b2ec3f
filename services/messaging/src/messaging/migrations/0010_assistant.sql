-- depends: 0009_insight_redelivery
-- The AI assistant answering customers itself (a chat widget channel in `answer` mode): its
-- messages are stored beside the customer's and the operators', and a conversation records
-- whether the assistant still answers it (`answering`) or handed it to a person
-- (`handed_off`, with the reason), which it never takes back. NULL: the assistant only
-- suggests replies to operators, as on every other channel.
ALTER TABLE messages DROP CONSTRAINT messages_author_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_author_role_check
    CHECK (author_role IN ('customer', 'operator', 'assistant'));
ALTER TABLE conversations
    ADD COLUMN assistant text CHECK (assistant IN ('answering', 'handed_off')),
    ADD COLUMN handoff_reason text;
ALTER TABLE conversation_events DROP CONSTRAINT conversation_events_kind_check;
ALTER TABLE conversation_events ADD CONSTRAINT conversation_events_kind_check
    CHECK (kind IN ('message', 'insight', 'status', 'assignment', 'summary', 'handoff'));
