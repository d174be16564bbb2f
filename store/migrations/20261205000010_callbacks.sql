-- Completion callbacks. A dispatch keeps the destination chosen at intake; each time it ends
-- (a replay ends it again) a row goes into callback_outbox in the same transaction as the
-- status, and workers move it from there to the callback queue, deleting it only once the
-- broker has confirmed the message: a crash in between loses no callback.
ALTER TABLE dispatches
    ADD COLUMN callback          text,
    -- How many times it has ended: with the id, what names one ending's event (webhook-id).
    ADD COLUMN endings           integer NOT NULL DEFAULT 0,
    ADD COLUMN callback_state    text,
    ADD COLUMN callback_attempts integer NOT NULL DEFAULT 0,
    -- The receiver's last answer (`503 Service Unavailable: …`), or why none came.
    ADD COLUMN callback_answer   text,
    ADD COLUMN callback_at       timestamptz;
-- NOT VALID: every existing row has no state, so there is nothing to check (and no table scan
-- under an exclusive lock); new rows are checked.
ALTER TABLE dispatches ADD CONSTRAINT dispatches_callback_state_check
    CHECK (callback_state IN ('pending', 'retrying', 'delivered', 'failed')) NOT VALID;

CREATE TABLE callback_outbox (
    dispatch_id text NOT NULL REFERENCES dispatches (id) ON DELETE CASCADE,
    ending      integer NOT NULL,
    -- The dispatch's row as this ending left it (without its inputs): the event is built from
    -- it, so a replay that moves the dispatch on before the event is queued changes nothing.
    snapshot    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (dispatch_id, ending)
);
CREATE INDEX callback_outbox_oldest ON callback_outbox (created_at);

-- Before an ending is written: count it, and mark its callback pending. Also when the
-- destination is learnt after the ending (a dispatch cancelled before any worker saw it).
-- A transaction that only puts a dispatch back where it was (a replay whose publish failed)
-- says so with `flyhook.restoring`: that is no new ending.
CREATE FUNCTION dispatch_ended() RETURNS trigger AS $$
BEGIN
    IF current_setting('flyhook.restoring', true) = 'on' THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        NEW.endings := NEW.endings + 1;
    END IF;
    IF NEW.callback IS NOT NULL THEN
        NEW.callback_state := 'pending';
        NEW.callback_attempts := 0;
        NEW.callback_answer := NULL;
        NEW.callback_at := NULL;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER dispatch_ended_on_insert BEFORE INSERT ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered', 'ignored'))
    EXECUTE FUNCTION dispatch_ended();
CREATE TRIGGER dispatch_ended_on_update BEFORE UPDATE ON dispatches
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'aborted', 'timed_out', 'dead_lettered', 'ignored')
          AND (NEW.status IS DISTINCT FROM OLD.status
               OR (OLD.callback IS NULL AND NEW.callback IS NOT NULL)))
    EXECUTE FUNCTION dispatch_ended();

-- After a row is really written (an upsert that turned into nothing writes no event).
CREATE FUNCTION callback_due() RETURNS trigger AS $$
BEGIN
    INSERT INTO callback_outbox (dispatch_id, ending, snapshot)
        VALUES (NEW.id, NEW.endings, to_jsonb(NEW) - 'inputs')
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER callback_due_on_insert AFTER INSERT ON dispatches
    FOR EACH ROW WHEN (NEW.callback_state = 'pending')
    EXECUTE FUNCTION callback_due();
-- Also when an operator asks for it again (`flyhook replay --callbacks`): pending anew.
CREATE TRIGGER callback_due_on_update AFTER UPDATE ON dispatches
    FOR EACH ROW WHEN (NEW.callback_state = 'pending'
                       AND (OLD.callback_state IS DISTINCT FROM 'pending'
                            OR NEW.endings <> OLD.endings))
    EXECUTE FUNCTION callback_due();
