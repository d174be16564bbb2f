-- The operator console (`/ui/`): the sessions API keys are exchanged for, and what it shows of
-- each dispatch.

-- A signed-in browser holds a random token in an HttpOnly cookie; only its SHA-256 is stored,
-- so reading this table gives no one a session. The session names the API key by the key's
-- own digest (as `api_keys` and configured keys do): a revoked or rotated key ends its
-- sessions, because the ingress no longer finds an owner for that digest (and revoking a
-- managed key deletes them outright).
CREATE TABLE console_sessions (
    digest bytea PRIMARY KEY,
    key_digest bytea NOT NULL,
    -- Sent back by the page in `X-CSRF-Token` with every action.
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_by_key ON console_sessions (key_digest);

-- A provider webhook's route and delivery id, and the request that brought any dispatch: the
-- console filters by route and finds a delivery by the provider's id (indexed in the next
-- migration, built without blocking writes).
ALTER TABLE dispatches
    ADD COLUMN route text,
    ADD COLUMN delivery_id text,
    ADD COLUMN request_id text;

-- Each step of a dispatch's timeline names the attempt it belongs to.
ALTER TABLE dispatch_events ADD COLUMN attempts integer;

CREATE OR REPLACE FUNCTION dispatch_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.flyte_phase IS DISTINCT FROM OLD.flyte_phase THEN
        INSERT INTO dispatch_events (dispatch_id, status, flyte_phase, attempts)
            VALUES (NEW.id, NEW.status, NEW.flyte_phase, NEW.attempts);
        IF NEW.awaited THEN
            PERFORM pg_notify('flyhook_dispatches', NEW.id);
        END IF;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
