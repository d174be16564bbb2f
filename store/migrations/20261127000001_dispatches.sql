-- One row per dispatch, written by workers (the ingress never writes: intake does not depend on
-- PostgreSQL). A dispatch with no row yet is `queued`; see common/src/dispatch.rs.
CREATE TABLE dispatches (
    id           text PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('queued', 'starting', 'running', 'succeeded',
                     'failed', 'aborted', 'timed_out', 'ignored', 'rejected', 'dead_lettered')),
    project      text NOT NULL,
    domain       text NOT NULL,
    task_name    text NOT NULL,
    task_version text NOT NULL,
    api_key      text NOT NULL,
    run_name     text NOT NULL,
    run_url      text,
    -- Deliveries a worker started processing.
    attempts     integer NOT NULL DEFAULT 0,
    error        text,
    received_at  timestamptz NOT NULL,
    -- When the Flyte run was created.
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dispatches_newest_first ON dispatches (received_at DESC, id DESC);
