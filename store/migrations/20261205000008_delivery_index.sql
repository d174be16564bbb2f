-- no-transaction
-- Finding a provider delivery by its id. Built concurrently, so workers go on writing
-- dispatches while it is built on a large table; only provider deliveries carry an id, so the
-- index holds only them.
CREATE INDEX CONCURRENTLY IF NOT EXISTS dispatches_by_delivery ON dispatches (delivery_id)
    WHERE delivery_id IS NOT NULL;
