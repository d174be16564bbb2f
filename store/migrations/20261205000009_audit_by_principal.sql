-- no-transaction
-- A source's last day of deliveries (the console's sources page) without reading the source's
-- whole retention. Built concurrently: the audit writer keeps appending meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_by_principal_and_time ON audit_log (principal, at);
