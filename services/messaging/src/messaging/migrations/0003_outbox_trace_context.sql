-- depends: 0002_dead_letters
-- The W3C traceparent of the change an outbox row announces, so that the relay publishes the
-- event in the same trace (the relay runs later, outside the request that wrote the row).
ALTER TABLE outbox ADD COLUMN traceparent text;
