-- The operator console (`/ui/`): the sessions API keys are exchanged for, and what it finds and
-- groups dispatches by.

-- A signed-in browser holds a random token in an HttpOnly cookie; only its SHA-256 is stored,
-- so reading this table gives no one a session. The session names the API key by the key's
-- own digest (as `api_keys` and configured keys do): a revoked or rotated key ends its
-- sessions at once, because the ingress no longer finds an owner for that digest.
CREATE TABLE console_sessions (
    digest bytea PRIMARY KEY,
    key_digest bytea NOT NULL,
    -- Sent back by the page in `X-CSRF-Token` with every action.
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- A provider webhook's route and delivery id, and the request that brought any dispatch: the
-- console filters by route and finds a delivery by the provider's id. Only provider
-- deliveries carry a delivery id, so the index holds only them.
ALTER TABLE dispatches
    ADD COLUMN route text,
    ADD COLUMN delivery_id text,
    ADD COLUMN request_id text;
CREATE INDEX dispatches_by_delivery ON dispatches (delivery_id) WHERE delivery_id IS NOT NULL;
