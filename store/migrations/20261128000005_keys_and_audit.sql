-- API keys managed with `flyhook keys`, and the audit log of every invocation.

-- Only the SHA-256 of a key is stored; `prefix` (the key's first characters) is what listings
-- show so an operator can tell keys apart. Names are never reused, so the audit log's key names
-- stay unambiguous: rotating a key is creating a new one and revoking the old.
CREATE TABLE api_keys (
    name text PRIMARY KEY,
    prefix text NOT NULL,
    digest bytea NOT NULL UNIQUE,
    -- `*`, `project`, `project/domain` or `project/domain/task`.
    scopes text[] NOT NULL,
    rate_per_second integer CHECK (rate_per_second > 0),
    rate_burst integer CHECK (rate_burst > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Ingress replicas keep the keys in memory and reload them when told.
CREATE FUNCTION api_keys_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('flyhook_api_keys', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed();

-- Append-only: rows are inserted by the ingress and removed only by retention.
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    request_id text NOT NULL,
    -- The API key's name, `source:<name>` for provider webhooks, NULL when nobody was identified.
    principal text,
    method text NOT NULL,
    -- The route's pattern (`/run-task/{project}/{domain}/{name}/{version}`); `path` is the URL's.
    route text NOT NULL,
    path text NOT NULL,
    status smallint NOT NULL,
    -- `accepted`, `ok`, or the error code of the answer.
    outcome text NOT NULL,
    dispatch_ids text[] NOT NULL DEFAULT '{}',
    client_addr text
);

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_principal ON audit_log (principal, id);
CREATE INDEX audit_log_dispatch_ids ON audit_log USING gin (dispatch_ids);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
