-- rocket_tessera schema, version 1: the sessions table.
--
-- Written for the default table name `sessions`; the fairing applies it with
-- the configured name substituted. Idempotent: it can run again with psql.

CREATE TABLE IF NOT EXISTS sessions (
    -- SHA-256 of the session id; the id itself is never stored.
    id_hash             bytea       PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    data                jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The user a session belongs to, when the application says so.
    user_id             text,
    -- Counts writes, for optimistic concurrency.
    version             bigint      NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- Last write or touch.
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    -- Idle expiry, never later than the absolute expiry: the session's end.
    idle_expires_at     timestamptz NOT NULL,
    -- Fixed at creation; a new id does not move it.
    absolute_expires_at timestamptz NOT NULL
);

-- Cleanup deletes by expiry.
CREATE INDEX IF NOT EXISTS sessions_idle_expires_at_idx
    ON sessions (idle_expires_at);

-- Listing and ending one user's sessions.
CREATE INDEX IF NOT EXISTS sessions_user_id_idx
    ON sessions (user_id) WHERE user_id IS NOT NULL;
