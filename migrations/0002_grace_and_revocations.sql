-- rocket_tessera schema, version 2: the regenerate grace window and the
-- per-user revocation instant.
--
-- Written for the default table name `sessions`; the fairing applies it with
-- the configured name substituted (and, for a schema-qualified table, with
-- that schema first on the search path). Idempotent: it can run again with
-- psql.

-- The hash of the id a session had before its last regenerate, and until
-- when that id may still read it (`regenerate_grace`). Both stay NULL while
-- the grace window is off.
ALTER TABLE sessions
    ADD COLUMN IF NOT EXISTS previous_id_hash bytea
        CHECK (octet_length(previous_id_hash) = 32);
ALTER TABLE sessions
    ADD COLUMN IF NOT EXISTS previous_valid_until timestamptz;

-- Loading by a previous id.
CREATE INDEX IF NOT EXISTS sessions_previous_id_hash_idx
    ON sessions (previous_id_hash) WHERE previous_id_hash IS NOT NULL;

-- One row per user whose sessions were all ended ("log out everywhere"):
-- every session of that user made before `valid_after` is void. The stored
-- sessions themselves are deleted at that instant; the row is for sessions
-- kept elsewhere (sealed cookies), which the database cannot delete.
CREATE TABLE IF NOT EXISTS sessions_revocations (
    user_id     text        PRIMARY KEY,
    valid_after timestamptz NOT NULL
);
