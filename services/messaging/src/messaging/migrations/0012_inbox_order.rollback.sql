DROP INDEX conversations_inbox_order;
