-- no-transaction
-- (One statement: CONCURRENTLY cannot run in a transaction. A build that fails part way, e.g.
-- a killed migration job, leaves an INVALID index behind under this name, and running the
-- migration again then fails on it rather than passing it by: drop it with `DROP INDEX
-- CONCURRENTLY <name>` and migrate again.)
-- A source's last day of deliveries (the console's sources page) without reading the source's
-- whole retention. Built concurrently: the audit writer keeps appending meanwhile.
CREATE INDEX CONCURRENTLY audit_log_by_principal_and_time ON audit_log (principal, at);
