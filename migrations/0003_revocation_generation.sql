-- rocket_tessera schema, version 3: a revocation generation per user.
--
-- Written for the default table name `sessions`; the fairing applies it with
-- the configured name substituted (and, for a schema-qualified table, with
-- that schema first on the search path). Idempotent: it can run again with
-- psql.

-- Each "log out everywhere" adds one. A sealed cookie (cookie mode) carries
-- the generation of its user at the time it was sealed, and stops opening
-- once the stored generation has moved past it: exact, whatever the clocks
-- of the application and the database say.
ALTER TABLE sessions_revocations
    ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 0;

-- The user's generation when a stored session was created or given its
-- user: a stored session behind its user's generation is void too, so that
-- a session stored by a request that was in flight during a "log out
-- everywhere" does not survive it.
ALTER TABLE sessions
    ADD COLUMN IF NOT EXISTS user_generation bigint NOT NULL DEFAULT 0;
