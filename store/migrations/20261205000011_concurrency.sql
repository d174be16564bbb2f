-- Concurrency keys: at most `limit` runs in flight per key value, fleet-wide. A worker takes a
-- slot (under an advisory lock of the key) before it starts a run; a dispatch whose key is
-- full waits in line (by arrival), or ends `skipped`. A slot is freed by the transaction that
-- ends its dispatch, however it ends.
ALTER TABLE dispatches DROP CONSTRAINT dispatches_status_check;
-- NOT VALID: every existing row satisfies the narrower check this replaces.
ALTER TABLE dispatches ADD CONSTRAINT dispatches_status_check CHECK (status IN ('queued',
    'starting', 'running', 'succeeded', 'failed', 'aborted', 'timed_out', 'ignored', 'rejected',
    'dead_lettered', 'skipped')) NOT VALID;

CREATE TABLE concurrency_slots (
    dispatch_id text PRIMARY KEY,
    -- Where the policy is configured (`route:github/deploy`, `task:p/d/n/v`) and the key.
    scope       text NOT NULL,
    value       text NOT NULL,
    -- In flight (holding a slot), or waiting in line.
    holding     boolean NOT NULL DEFAULT false,
    -- The dispatch's arrival: its place in line.
    since       timestamptz NOT NULL
);
CREATE INDEX concurrency_slots_by_key ON concurrency_slots (scope, value, since, dispatch_id);

-- After the row is written (an upsert that came to nothing ends nothing).
CREATE FUNCTION concurrency_slot_freed() RETURNS trigger AS $$
BEGIN
    DELETE FROM concurrency_slots WHERE dispatch_id = NEW.id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER concurrency_slot_freed_on_insert AFTER INSERT ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'rejected', 'skipped'))
    EXECUTE FUNCTION concurrency_slot_freed();
CREATE TRIGGER concurrency_slot_freed_on_update AFTER UPDATE ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'rejected', 'skipped')
          AND NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION concurrency_slot_freed();

-- A skipped dispatch has ended too: its callback goes out.
DROP TRIGGER dispatch_ended_on_insert ON dispatches;
DROP TRIGGER dispatch_ended_on_update ON dispatches;
CREATE TRIGGER dispatch_ended_on_insert BEFORE INSERT ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'skipped'))
    EXECUTE FUNCTION dispatch_ended();
CREATE TRIGGER dispatch_ended_on_update BEFORE UPDATE ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'skipped')
          AND (NEW.status IS DISTINCT FROM OLD.status
               OR (OLD.callback IS NULL AND NEW.callback IS NOT NULL)))
    EXECUTE FUNCTION dispatch_ended();
