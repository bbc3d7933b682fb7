-- Sealed secrets: vault stores only JWE envelopes, never plaintext.
CREATE TABLE secrets (
    key_id     TEXT    PRIMARY KEY NOT NULL,
    user_id    TEXT    NOT NULL,
    envelope   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
