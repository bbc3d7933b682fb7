-- Read limits, revocations and the tamper-evident audit trail.
ALTER TABLE secrets ADD COLUMN reads_left INTEGER;

CREATE INDEX secrets_expires_at ON secrets (expires_at);

CREATE TABLE revoked_tokens (
    jti        TEXT    PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);

-- seq is assigned by vault (last + 1) inside the same write transaction as the state
-- change, and each hash covers the previous one: see vault/src/audit.rs.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY NOT NULL,
    at        INTEGER NOT NULL,
    event     TEXT    NOT NULL,
    key_id    TEXT,
    user_id   TEXT,
    jti       TEXT,
    client    TEXT,
    outcome   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
