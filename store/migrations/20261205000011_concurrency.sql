-- Concurrency keys: at most `limit` runs in flight per key value, fleet-wide. A worker takes a
-- slot (under an advisory lock of the key) before it starts a run; a dispatch whose key is
-- full waits in line (by arrival), or ends `skipped`. A slot is freed by the transaction that
-- ends its dispatch; one whose dispatch ended in a race with the taking, or was never
-- recorded and stopped asking, is dropped by the next worker that takes a slot of the key.
ALTER TABLE dispatches DROP CONSTRAINT dispatches_status_check;
-- NOT VALID: every existing row satisfies the narrower check this replaces.
ALTER TABLE dispatches ADD CONSTRAINT dispatches_status_check CHECK (status IN ('queued',
    'starting', 'running', 'succeeded', 'failed', 'aborted', 'timed_out', 'ignored', 'rejected',
    'dead_lettered', 'skipped')) NOT VALID;

-- The key a dispatch was started under, so a replay is held to it too.
ALTER TABLE dispatches ADD COLUMN concurrency_key jsonb;

CREATE TABLE concurrency_slots (
    dispatch_id text PRIMARY KEY,
    -- Where the policy is configured (`route:github/deploy`, `task:p/d/n/v`) and the key.
    scope       text NOT NULL,
    value       text NOT NULL,
    -- In flight (holding a slot), or waiting in line.
    holding     boolean NOT NULL DEFAULT false,
    -- The dispatch's arrival: its place in line.
    since       timestamptz NOT NULL,
    -- When its dispatch last asked: a waiter whose message is gone (and that no worker
    -- recorded) stops asking, and its row is dropped after a while.
    seen_at     timestamptz NOT NULL DEFAULT now()
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
