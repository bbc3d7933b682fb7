-- vault's schema on PostgreSQL (the SQLite migrations reach the same shape in three steps).
CREATE TABLE secrets (
    key_id     TEXT   PRIMARY KEY NOT NULL,
    user_id    TEXT   NOT NULL,
    envelope   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    reads_left BIGINT,
    -- the wrapping key the content key is wrapped to now; NULL: the header's kid
    wrap_kid   TEXT
);
CREATE INDEX secrets_expires_at ON secrets (expires_at);

CREATE TABLE revoked_tokens (
    jti        TEXT   PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);

-- seq is assigned by vault (last + 1) under a transaction-scoped advisory lock, in the
-- same transaction as the state change; each hash covers the previous record.
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY NOT NULL,
    at        BIGINT NOT NULL,
    event     TEXT   NOT NULL,
    key_id    TEXT,
    user_id   TEXT,
    jti       TEXT,
    client    TEXT,
    outcome   TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);
