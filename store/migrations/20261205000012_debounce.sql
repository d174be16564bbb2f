-- Debounce: deliveries of one key close together make one run. A burst is a window per key
-- (at most one open at a time), its members the dispatches that joined it; the first worker
-- to look at a member after the window's time picks the member that runs, under an advisory
-- lock of the key, and the others end `coalesced`, naming it.
ALTER TABLE dispatches DROP CONSTRAINT dispatches_status_check;
-- NOT VALID: every existing row satisfies the narrower check this replaces.
ALTER TABLE dispatches ADD CONSTRAINT dispatches_status_check CHECK (status IN ('queued',
    'starting', 'running', 'succeeded', 'failed', 'aborted', 'timed_out', 'ignored', 'rejected',
    'dead_lettered', 'skipped', 'coalesced')) NOT VALID;
-- The dispatch that ran for a coalesced one.
ALTER TABLE dispatches ADD COLUMN coalesced_into text;

CREATE TABLE debounce_windows (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope     text NOT NULL,
    value     text NOT NULL,
    -- The first and latest members' arrivals, and when the window closes for them.
    opened_at timestamptz NOT NULL,
    last_at   timestamptz NOT NULL,
    fires_at  timestamptz NOT NULL,
    closed_at timestamptz,
    winner    text
);
CREATE UNIQUE INDEX debounce_windows_open ON debounce_windows (scope, value) WHERE closed_at IS NULL;
-- A late member looks for the closed window it arrived within; old closed windows are swept.
CREATE INDEX debounce_windows_closed ON debounce_windows (scope, value, fires_at) WHERE closed_at IS NOT NULL;
CREATE INDEX debounce_windows_closed_at ON debounce_windows (closed_at) WHERE closed_at IS NOT NULL;

CREATE TABLE debounce_members (
    dispatch_id text PRIMARY KEY,
    window_id   bigint NOT NULL REFERENCES debounce_windows (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL
);
CREATE INDEX debounce_members_by_window ON debounce_members (window_id, received_at);

-- A coalesced dispatch has ended too: its callback goes out, its slot (if any) is freed.
DROP TRIGGER dispatch_ended_on_insert ON dispatches;
DROP TRIGGER dispatch_ended_on_update ON dispatches;
CREATE TRIGGER dispatch_ended_on_insert BEFORE INSERT ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'skipped', 'coalesced'))
    EXECUTE FUNCTION dispatch_ended();
CREATE TRIGGER dispatch_ended_on_update BEFORE UPDATE ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'skipped', 'coalesced')
          AND (NEW.status IS DISTINCT FROM OLD.status
               OR (OLD.callback IS NULL AND NEW.callback IS NOT NULL)))
    EXECUTE FUNCTION dispatch_ended();
DROP TRIGGER concurrency_slot_freed_on_insert ON dispatches;
DROP TRIGGER concurrency_slot_freed_on_update ON dispatches;
CREATE TRIGGER concurrency_slot_freed_on_insert AFTER INSERT ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'rejected', 'skipped', 'coalesced'))
    EXECUTE FUNCTION concurrency_slot_freed();
CREATE TRIGGER concurrency_slot_freed_on_update AFTER UPDATE ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered',
                         'ignored', 'rejected', 'skipped', 'coalesced')
          AND NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION concurrency_slot_freed();
