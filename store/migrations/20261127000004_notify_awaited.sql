-- Notify only for dispatches someone waits on.
--
-- PostgreSQL serialises the commits of all transactions that NOTIFY (one lock, held through the
-- commit's WAL flush), so a notification on every status change of every dispatch capped the
-- whole pipeline near 600 dispatches/s on a 2-core machine (bench/: the `workers` scenario, with
-- 49 sessions waiting on that lock). Run-and-wait requests mark their dispatch `awaited` before
-- they read it; the trigger notifies for marked dispatches only. The mark and a status change
-- take the same row lock, so a change either sees the mark (and notifies) or commits before
-- the waiter reads the row (and the waiter sees it): no wake-up is lost.

ALTER TABLE dispatches ADD COLUMN awaited boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION dispatch_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.flyte_phase IS DISTINCT FROM OLD.flyte_phase THEN
        INSERT INTO dispatch_events (dispatch_id, status, flyte_phase)
            VALUES (NEW.id, NEW.status, NEW.flyte_phase);
        IF NEW.awaited THEN
            PERFORM pg_notify('flyhook_dispatches', NEW.id);
        END IF;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
