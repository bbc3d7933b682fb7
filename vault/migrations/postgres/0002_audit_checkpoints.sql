-- Signed checkpoints of the audit chain (vault/src/checkpoint/): `jws` is the compact JWS,
-- RS256 by vault's audit key, over {seq, hash, iat}; the other columns repeat its payload so
-- that the newest can be found without parsing. At most one per record: replicas that sign
-- the same head store the first (INSERT … ON CONFLICT DO NOTHING) and drop the rest.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY NOT NULL,
    hash      TEXT   NOT NULL,
    signed_at BIGINT NOT NULL,
    kid       TEXT   NOT NULL,
    jws       TEXT   NOT NULL
);
