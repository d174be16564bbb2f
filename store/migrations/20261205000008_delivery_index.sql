-- no-transaction
-- (One statement: CONCURRENTLY cannot run in a transaction. A build that fails part way, e.g.
-- a killed migration job, leaves an INVALID index behind under this name, and running the
-- migration again then fails on it rather than passing it by: drop it with `DROP INDEX
-- CONCURRENTLY <name>` and migrate again.)
-- Finding a provider delivery by its id. Built concurrently, so workers go on writing
-- dispatches while it is built on a large table; only provider deliveries carry an id, so the
-- index holds only them.
CREATE INDEX CONCURRENTLY dispatches_by_delivery ON dispatches (delivery_id)
    WHERE delivery_id IS NOT NULL;
