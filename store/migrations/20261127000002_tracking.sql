-- Following runs to their end: Flyte's phase, outputs and error, leases that share the polling
-- among workers, a history of status changes, and a notification on every change (the ingress
-- wakes run-and-wait requests with it).

-- A dispatch cancelled before any worker saw it is recorded without its task.
ALTER TABLE dispatches
    ALTER COLUMN project DROP NOT NULL,
    ALTER COLUMN domain DROP NOT NULL,
    ALTER COLUMN task_name DROP NOT NULL,
    ALTER COLUMN task_version DROP NOT NULL,
    ALTER COLUMN api_key DROP NOT NULL,
    ADD COLUMN flyte_phase      text,
    ADD COLUMN error_kind       text,
    ADD COLUMN outputs          jsonb,
    -- Tracking: when to look at the run next, how often we have, and who holds it now.
    ADD COLUMN next_poll_at     timestamptz,
    ADD COLUMN polls            integer NOT NULL DEFAULT 0,
    ADD COLUMN lease_owner      text,
    ADD COLUMN lease_expires_at timestamptz;

CREATE INDEX dispatches_due_for_polling ON dispatches (next_poll_at) WHERE status = 'running';
CREATE INDEX dispatches_by_status ON dispatches (status, received_at DESC, id DESC);

CREATE TABLE dispatch_events (
    dispatch_id text NOT NULL REFERENCES dispatches (id) ON DELETE CASCADE,
    status      text NOT NULL,
    flyte_phase text,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX dispatch_events_by_dispatch ON dispatch_events (dispatch_id, at);

CREATE FUNCTION dispatch_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.flyte_phase IS DISTINCT FROM OLD.flyte_phase THEN
        INSERT INTO dispatch_events (dispatch_id, status, flyte_phase)
            VALUES (NEW.id, NEW.status, NEW.flyte_phase);
        PERFORM pg_notify('flyhook_dispatches', NEW.id);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER dispatch_changed AFTER INSERT OR UPDATE ON dispatches
    FOR EACH ROW EXECUTE FUNCTION dispatch_changed();
